"""``sentinel.watch()`` and ``Run``: watch any training loop, no framework needed.

    with sentinel.watch(name="resnet50", channels=["phone"]) as run:
        for step in range(steps):
            loss = train_step()
            run.beat(step=step, loss=loss)
        run.expect_pause(900)  # a long evaluation follows: not a stall
        evaluate()
        run.send("eval done")

Leaving the block ends the run: ``finished``, or ``crashed`` with the
traceback for an exception, ``aborted`` for Ctrl-C, and for ``sys.exit(n)``
``finished`` (n = 0) or ``crashed`` with that exit code. Without ``with``,
call ``run.finish()``; a run left open is finished at interpreter exit.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Mapping, Optional, Sequence, Type, Union

from sentinel.formats import spool
from sentinel.training.recorder import Recorder, exit_status_code
from sentinel.training.run_options import run_options


class Run:
    """A watched run. Every method is cheap, never raises, and is a no-op in a
    forked child."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    @property
    def run_id(self) -> str:
        return self._recorder.run_id

    @property
    def path(self) -> Path:
        """The run's spool directory."""
        return self._recorder.paths.dir

    def beat(self, step: Optional[int] = None, **scalars: Any) -> None:
        """Report progress (memory only; the heartbeat thread writes it)."""
        self._recorder.note_progress(step, scalars)

    def expect_pause(self, seconds: float) -> None:
        """Announce that no progress will be reported for ``seconds``
        (a checkpoint, an evaluation): no stall alert before then."""
        self._recorder.expect_pause(seconds)

    def send(self, text: str) -> None:
        """Send ``text`` to the run's channels (queued; never waits on the network)."""
        self._recorder.send(text)

    def finish(self, state: str = "finished", *, error: Optional[str] = None,
               exit_code: Optional[int] = None) -> None:
        """End the run: ``finished`` (default), ``crashed``, ``aborted`` or
        ``terminated``. Only the first end counts."""
        self._recorder.finish(state, error=error, exit_code=exit_code)

    @property
    def ended(self) -> bool:
        return self._recorder.ended

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Literal[False]:
        if exc_type is None:
            self._recorder.finish("finished")
        elif issubclass(exc_type, SystemExit):
            code = exit_status_code(getattr(exc, "code", None))
            if code == 0:
                self._recorder.finish("finished", exit_code=0)
            else:
                self._recorder.finish("crashed", error=f"SystemExit: {exc}", exit_code=code)
        elif issubclass(exc_type, KeyboardInterrupt):
            self._recorder.finish("aborted", error=_format(exc_type, exc, tb), signal_name="SIGINT")
        else:
            self._recorder.finish("crashed", error=_format(exc_type, exc, tb))
        return False  # never swallow the user's exception

    def __repr__(self) -> str:
        return f"<sentinel.Run {self.run_id}>"


def _format(exc_type: Type[BaseException], exc: Optional[BaseException], tb: Optional[TracebackType]) -> str:
    return "".join(traceback.format_exception(exc_type, exc, tb))


def watch(
    name: Optional[str] = None,
    *,
    channels: Optional[Sequence[Union[str, Mapping[str, Any]]]] = None,
    labels: Optional[Mapping[str, Any]] = None,
    stall_timeout: Union[float, str, None] = None,
    heartbeat_interval: Union[float, str, None] = None,
    language: Optional[str] = None,
    spool_dir: Optional[Union[str, os.PathLike]] = None,
    handle_sigterm: bool = True,
    alert_on: Optional[Sequence[str]] = None,
    capture_output: bool = False,
) -> Run:
    """Start watching this process as one run; returns the ``Run`` (also a
    context manager).

    ``channels``: configured channel names and/or inline channel dicts such as
    ``{"type": "bark", "key": "..."}``; empty means the daemon's defaults.
    ``stall_timeout``: how long without ``beat`` before a stall alert, seconds
    or a duration such as ``"10m"`` (None: the daemon's default).
    ``heartbeat_interval``: time between heartbeats (default
    ``$SENTINEL_HEARTBEAT_INTERVAL`` or 10 s). ``spool_dir``: default
    ``$SENTINEL_SPOOL`` / system spool / ``~/.local/state/sentinel/spool``.
    ``alert_on``: the states that alert for this run, e.g. ``["crashed",
    "killed", "lost"]`` (None: the daemon's ``alert_on``).
    ``capture_output``: keep the last lines this process prints (``sys.stdout``
    and ``sys.stderr``) for its ending alerts (``sentinel.training.output_tail``).
    Arguments follow the config file's rules; a bad one raises
    ``sentinel.common.rules.InvalidArgument`` (a ValueError and a TypeError) here.
    """
    # A bad argument is a programming error: said now, by the config's rules.
    options = run_options(
        "sentinel.watch", name=name, channels=channels, labels=labels, stall_timeout=stall_timeout,
        heartbeat_interval=heartbeat_interval, language=language, spool_dir=spool_dir,
        alert_on=alert_on,
        handle_sigterm=handle_sigterm,
        more_problems=[] if isinstance(capture_output, bool) else [
            ("capture_output", f"must be True or False, not {capture_output!r}")],
    )
    recorder = Recorder.open(
        options.spool_dir if options.spool_dir is not None else spool.spool_dir(),
        name=options.name if name is not None else _script_name(),
        labels=options.labels,
        channels=options.channels,
        language=options.language,
        stall_timeout=options.stall_timeout,
        heartbeat_interval=options.heartbeat_interval,
        alert_on=options.alert_on,
        source="watch",
        handle_sigterm=options.handle_sigterm,
        capture_output=capture_output,
    )
    return Run(recorder)


def _script_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return os.path.basename(argv0) if argv0 not in ("", "-c", "-m") else ""
