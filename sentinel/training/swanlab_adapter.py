"""``SentinelCallback``: one SwanLab callback class for every SwanLab release.

    import swanlab
    from sentinel import SentinelCallback
    swanlab.init(project="demo", callbacks=[SentinelCallback()])

SwanLab has had three callback bases; the one this class derives from is
picked when this module is imported, newest first:

* swanlab >= 0.8: ``swanlab.Callback`` (``on_run_initialized``,
  ``on_scalar_flush``, ``on_run_finished(state, error)``, ``name``);
* swanlab 0.6.5 - 0.7.x: ``swanlab.toolkit.SwanKitCallback`` (``on_init``,
  ``before_init_experiment``, ``on_run``, ``on_log``, ``on_stop``, ``__str__``);
* older: ``swankit.callback.SwanKitCallback``, the same protocol.

The class carries both hook sets and both identity members; each SwanLab
calls only its own. What SwanLab cannot tell us is made up for here:

* Liveness comes from our heartbeat thread, not from SwanLab: the new API's
  ``on_scalar_flush`` arrives batched and late (up to ~100 log periods) and
  not at all while nothing is logged. Its record timestamps still say when
  the user logged, which is what ``last_progress`` holds.
* ``sys.exit(n)`` is reported by SwanLab as a success; the recorder keeps the
  real status. SIGTERM calls no SwanLab hook; the recorder's handler records it.
* ``settings`` holds ``api_key``: only named fields are ever read from it.
* The new API has no synchronous per-log hook: ``swanlab.log`` is wrapped
  for the run's lifetime (``sentinel.training.swanlab_log_hook``) so ``live.bin``
  holds the exact step of the last call.
* The old API lets a hook's exception escape into ``swanlab.log`` and
  ``swanlab.init``, so every hook body here catches everything.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional, Sequence, Union

import swanlab  # type: ignore[import-untyped]

from sentinel.formats import spool
from sentinel.training.recorder import Recorder, report_once
from sentinel.training.run_options import run_options
from sentinel.training.swanlab_log_hook import LogHook


def _resolve_base() -> tuple[type, str]:
    """The newest callback base this SwanLab has, and which API it speaks."""
    base = getattr(swanlab, "Callback", None)
    if isinstance(base, type):
        return base, "callback"
    try:
        from swanlab.toolkit import SwanKitCallback  # type: ignore[import-untyped]

        return SwanKitCallback, "swankit"
    except ImportError:
        from swankit.callback import SwanKitCallback  # type: ignore[import-not-found]

        return SwanKitCallback, "swankit"


CallbackBase, CALLBACK_API = _resolve_base()

# Keys SwanLab's own hardware monitor logs (>= 0.8): not training progress.
_SYSTEM_KEY_PREFIX = "__swanlab__."

# One recorder per SwanLab run, shared by every sentinel callback in it, so a
# SentinelCallback plus a BarkCallback make one run with both channels.
_RUNS_BY_SWANLAB_ID: dict[str, Recorder] = {}

_FINAL_STATE = {"success": "finished", "crashed": "crashed", "aborted": "aborted"}


class _SentinelHooks:
    """Both SwanLab hook sets. Mixed in before the resolved base so these
    methods override the base's no-op hooks."""

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        channels: Optional[Sequence[Union[str, Mapping[str, Any]]]] = None,
        labels: Optional[Mapping[str, Any]] = None,
        stall_timeout: Union[float, str, None] = None,
        heartbeat_interval: Union[float, str, None] = None,
        language: Optional[str] = None,
        spool_dir: Optional[Union[str, Path]] = None,
        handle_sigterm: bool = True,
        alert_on: Optional[Sequence[str]] = None,
    ) -> None:
        # Checked before anything else: a bad argument fails at construction,
        # not silently when SwanLab starts the run.
        options = run_options(
            type(self).__name__, name=name, channels=channels, labels=labels, stall_timeout=stall_timeout,
            heartbeat_interval=heartbeat_interval, language=language, spool_dir=spool_dir,
            handle_sigterm=handle_sigterm, alert_on=alert_on, more_problems=self._argument_problems(),
        )
        with contextlib.suppress(TypeError):  # bases without an __init__ of their own
            super().__init__()
        self._run_name = options.name
        self._channels: list[spool.Channel] = options.channels
        self._extra_labels: dict[str, Any] = dict(options.labels)
        self._stall_timeout = options.stall_timeout
        self._heartbeat_interval = options.heartbeat_interval
        self._language = options.language
        self._spool_dir = options.spool_dir
        self._handle_sigterm = options.handle_sigterm
        self._alert_on = options.alert_on
        self._meta: dict[str, Any] = {}  # labels gathered from the old API's early hooks
        self._recorder: Optional[Recorder] = None
        self._log_hook: Optional[LogHook] = None  # swanlab >= 0.8: swanlab.log wrapped while the run lives

    def _argument_problems(self) -> list[tuple[str, str]]:
        """Problems with a subclass's own arguments, reported with the rest."""
        return []

    # ------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        return f"sentinel.{type(self).__name__}"

    def __str__(self) -> str:
        return f"sentinel.{type(self).__name__}"

    @property
    def run_id(self) -> Optional[str]:
        """The sentinel run id, once SwanLab has started the run."""
        return self._recorder.run_id if self._recorder is not None else None

    @property
    def recorder(self) -> Optional[Recorder]:
        return self._recorder

    # ------------------------------------------------- swanlab >= 0.8 hooks

    def on_run_initialized(self, run_dir: Any = None, path: Optional[str] = None, settings: Any = None,
                           *args: Any, **kwargs: Any) -> None:
        try:
            self._start(labels_from_settings(settings, path))
            if self._recorder is not None:  # the exact step, synchronously (swanlab_log_hook)
                self._log_hook = LogHook.install(swanlab, self._recorder)
        except Exception as exc:
            _hook_failed("on_run_initialized", exc)

    def on_scalar_flush(self, scalar_records: Any = None, *args: Any, **kwargs: Any) -> None:
        rec = self._recorder
        if rec is None or not scalar_records:
            return
        hook = self._log_hook
        if hook is not None and hook.calls:
            return  # swanlab.log told us each step as it was logged; this batch is older news
        try:
            # Newest first, and only until a key repeats: a batch holds up to
            # ~100 records and this runs under the GIL, so reading each one's
            # protobuf fields would cost the training thread about 1.5 µs a record.
            values: dict[str, float] = {}
            newest = None
            for record in reversed(scalar_records):
                key = record.key
                if key.startswith(_SYSTEM_KEY_PREFIX):
                    continue
                if key in values:
                    break
                if newest is None:
                    newest = record
                values[key] = record.value.number
            if newest is not None:
                stamp = newest.timestamp  # when swanlab.log was called, not when flushed
                when = stamp.seconds + stamp.nanos * 1e-9
                rec.note_progress(newest.step, values, when=max(when, rec._last_progress or 0.0))
        except Exception as exc:
            _hook_failed("on_scalar_flush", exc)

    def on_run_finished(self, state: Any = None, error: Optional[str] = None,
                        *args: Any, **kwargs: Any) -> None:
        try:
            if self._log_hook is not None:
                self._log_hook.uninstall()
            final_state = _FINAL_STATE.get(str(state), "crashed" if error else "finished")
            # SwanLab's "aborted" is its SIGINT handler (or a KeyboardInterrupt).
            self._finish(final_state, error, signal_name="SIGINT" if final_state == "aborted" else None)
        except Exception as exc:
            _hook_failed("on_run_finished", exc)

    # ------------------------------------------- swanlab <= 0.7 hooks

    def on_init(self, proj_name: Optional[str] = None, workspace: Optional[str] = None,
                *args: Any, **kwargs: Any) -> None:
        # Not the start: init may still fail after this (cloud mode without network).
        self._meta.update(project=proj_name, workspace=workspace)

    def before_init_experiment(self, run_id: Optional[str] = None, exp_name: Optional[str] = None,
                               description: Optional[str] = None, *args: Any, **kwargs: Any) -> None:
        self._meta.update(swanlab_run_id=run_id, experiment=exp_name, description=description)

    def on_run(self, *args: Any, **kwargs: Any) -> None:
        try:
            self._start({**self._meta, **_old_api_run_labels()})
        except Exception as exc:
            _hook_failed("on_run", exc)

    def on_log(self, data: Any = None, step: Optional[int] = None, *args: Any, **kwargs: Any) -> None:
        # Runs inside every swanlab.log on the training thread: memory only.
        rec = self._recorder
        if rec is not None:
            try:  # noqa: SIM105 -- contextlib.suppress costs more than this whole hook
                rec.note_progress(step, data)
            except Exception:
                pass

    def on_stop(self, error: Optional[str] = None, *args: Any, **kwargs: Any) -> None:
        try:
            if kwargs.get("interrupt"):
                self._finish("aborted", _with_exception_type(error), signal_name="SIGINT")
            else:
                self._finish("crashed" if error is not None else "finished", _with_exception_type(error))
        except Exception as exc:
            _hook_failed("on_stop", exc)

    # ------------------------------------------------------------ common

    def _start(self, labels: Mapping[str, Any]) -> None:
        labels = {**{k: v for k, v in labels.items() if v not in (None, "")}, **self._extra_labels}
        swanlab_id = labels.get("swanlab_run_id")
        shared = _RUNS_BY_SWANLAB_ID.get(str(swanlab_id)) if swanlab_id else None
        if shared is not None and shared.is_owner and not shared.ended:
            shared.add_channels(self._run_channels(labels))
            shared.update_labels(labels)
            self._recorder = shared
        else:
            self._recorder = Recorder.open(
                self._spool_dir,
                name=self._run_name,
                labels=labels,
                channels=self._run_channels(labels),
                language=self._language,
                stall_timeout=self._stall_timeout,
                heartbeat_interval=self._heartbeat_interval,
                alert_on=self._alert_on,
                source="swanlab",
                handle_sigterm=self._handle_sigterm,
                capture_output=True,  # SwanLab keeps the console too: the last lines go in ending alerts
            )
            if swanlab_id:
                _RUNS_BY_SWANLAB_ID[str(swanlab_id)] = self._recorder
        self._run_started(self._recorder)

    def _run_channels(self, labels: Mapping[str, Any]) -> list[spool.Channel]:
        """Where this callback wants alerts to go (drop-ins add their own)."""
        return list(self._channels)

    def _run_started(self, recorder: Recorder) -> None:
        """Hook for subclasses: the run is on disk."""

    def _finish(self, state: str, error: Optional[str], signal_name: Optional[str] = None) -> None:
        rec = self._recorder
        if rec is not None:
            rec.finish(state, error=error, signal_name=signal_name)


class SentinelCallback(_SentinelHooks, CallbackBase):  # type: ignore[misc, valid-type]
    """Watches a SwanLab run: heartbeats, progress, and how it ended.

    ``SentinelCallback(name=None, *, channels=None, labels=None,
    stall_timeout=None, heartbeat_interval=None, language=None,
    spool_dir=None, handle_sigterm=True, alert_on=None)``; ``channels`` are configured
    channel names or inline channel dicts (empty: the daemon's defaults).
    Arguments follow the config file's rules (``stall_timeout="10m"``); a bad
    one raises ``sentinel.common.rules.InvalidArgument`` when the callback is built.
    """


def labels_from_settings(settings: Any, path: Optional[str]) -> dict[str, Any]:
    """Named fields only: ``settings`` also holds the api key."""
    mode = _enum_text(_attr(settings, "mode"))
    labels = {
        "project": _attr(settings, "project", "name"),
        "workspace": _attr(settings, "project", "workspace"),
        "experiment": _attr(settings, "experiment", "name"),
        "description": _attr(settings, "experiment", "description"),
        "swanlab_run_id": _attr(settings, "run", "id"),
        "mode": mode,
    }
    if mode in ("online", "cloud") and path:
        labels["url"] = _run_url(_attr(settings, "web_host"), path)
    return labels


def _run_url(web_host: Any, path: str) -> Optional[str]:
    """``/<user>/<project>/<id>`` -> ``<web_host>/@<user>/<project>/runs/<id>``,
    as SwanLab's own ``Run.url`` builds it."""
    parts = [p for p in PurePosixPath(path).parts if p != "/"]
    if not web_host or len(parts) < 3:
        return None
    user, project, run_id = parts[-3], parts[-2], parts[-1]
    return f"{str(web_host).rstrip('/')}/@{user.lstrip('@')}/{project}/runs/{run_id}"


def _old_api_run_labels() -> dict[str, Any]:
    """Mode and (cloud only) URL; the old API gives neither to callbacks."""
    labels: dict[str, Any] = {}
    try:
        run = swanlab.get_run()
        labels["mode"] = _enum_text(getattr(run, "mode", None))
    except Exception:
        pass
    if labels.get("mode") in ("cloud", "online"):
        with contextlib.suppress(Exception):
            labels["url"] = swanlab.get_url()
    return labels


def _attr(obj: Any, *names: str) -> Any:
    for name in names:
        if obj is None:
            return None
        try:
            obj = getattr(obj, name, None)
        except Exception:
            return None
    return obj if isinstance(obj, (str, int, float)) or obj is None else _enum_text(obj)


def _enum_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    value = getattr(value, "value", value)
    return value if isinstance(value, str) else str(value)


def _with_exception_type(error: Optional[str]) -> Optional[str]:
    """The old API's error is ``format_tb`` + ``str(exc)``: no header, no type.

    It is called from SwanLab's excepthook, and the interpreter sets
    ``sys.last_value`` before calling the hook, so the full traceback can be
    had; only when that exception is the one SwanLab describes.
    """
    if not error:
        return error
    exc = getattr(sys, "last_value", None)
    if not isinstance(exc, BaseException) or str(exc) not in error:
        return error
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _hook_failed(hook: str, exc: BaseException) -> None:
    report_once(f"hook-{hook}", f"SentinelCallback.{hook} failed ({exc!r}); training continues")
