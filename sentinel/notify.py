"""Drop-in replacements for SwanLab's notification plugins.

Change one import line and keep the rest::

    # from swanlab.plugin.notification import BarkCallback
    from sentinel import BarkCallback

    bark = BarkCallback(key="...", url="https://api.day.app")
    swanlab.init(callbacks=[bark])
    bark.send_msg(content="accuracy above 0.95")

The constructors take SwanLab's arguments. Instead of posting from the
training process when SwanLab calls ``on_stop`` (which never happens on
``kill -9``, an OOM kill or SIGTERM), each callback records its channel in the
run record, and the daemon alerts on every way the run can end, including
the ones the process cannot report. ``send_msg`` queues the message in the
spool; training never waits on the network. With no daemon alive the
process sends by itself, from a background thread, as SwanLab did.

The channel dicts written to ``run.json`` are the inline channel options of
``sentinel.channels`` (``{"type": "bark", "server": ..., "key": ...}``). They
hold the webhook secrets the user passed in, and nothing else of theirs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Optional

from sentinel import spool
from sentinel.recorder import Recorder, report_once
from sentinel.rules import kind
from sentinel.run_options import inline_channel_problems, optional_string
from sentinel.swanlab_adapter import SentinelCallback


class _NotificationCallback(SentinelCallback):
    """A SentinelCallback with one channel of its own, plus ``send_msg``.

    A wrong key or URL is a clear error at construction, not a silent run
    later; problems name the constructor's arguments, all at once."""

    # channel option -> the constructor argument it came from, for messages
    ARGUMENT_OF: ClassVar[Mapping[str, str]] = {}

    def __init__(self, channel: Mapping[str, Any], problems: Optional[list[tuple[str, str]]] = None,
                 **kwargs: Any) -> None:
        self._channel = dict(channel)
        self._own_problems = list(problems or [])
        self._early_messages: list[str] = []
        super().__init__(**kwargs)

    def _argument_problems(self) -> list[tuple[str, str]]:
        found = [(self.ARGUMENT_OF.get(key, key), message)
                 for key, message in inline_channel_problems(self._channel)]
        return self._own_problems + found

    @property
    def channel(self) -> dict[str, Any]:
        """The inline channel this callback records (it holds secrets: don't log it)."""
        return dict(self._channel)

    def _run_channels(self, labels: Mapping[str, Any]) -> list[spool.Channel]:
        return [*self._channels, self._channel]

    def _run_started(self, recorder: Recorder) -> None:
        early, self._early_messages = self._early_messages, []
        for text in early:
            recorder.send(text)

    def send_msg(self, content: str, *args: Any, **kwargs: Any) -> None:
        """Send ``content`` to this callback's channel. Queued; never raises."""
        try:
            text = str(content)
            rec = self._recorder
            if rec is not None:
                rec.send(text)  # after the run ended, sent from the process
            else:
                self._early_messages.append(text)  # before swanlab.init: sent once the run exists
        except Exception as exc:
            report_once("send_msg", f"{type(self).__name__}.send_msg failed ({exc!r})")


class BarkCallback(_NotificationCallback):
    """``BarkCallback(url="https://api.day.app", title="SwanLab", bark_level=None,
    icon=None, group=None, click_jump=True, language=None, key=None, *, sound=None)``

    As SwanLab's: ``url`` is the Bark server, or the URL the Bark app shows
    (``https://api.day.app/<key>``) when ``key`` is not given. ``group`` may be
    ``"exp_name"``, ``"project"`` or ``"workspace"`` (grouped by that run
    label) or any other group name. ``title`` and ``click_jump`` are accepted
    for compatibility: alerts carry their own title, and a tap opens the run
    when SwanLab knows its URL.
    """

    def __init__(
        self,
        url: str = "https://api.day.app",
        title: str = "SwanLab",
        bark_level: Optional[str] = None,
        icon: Optional[str] = None,
        group: Optional[str] = None,
        click_jump: bool = True,
        language: Optional[str] = None,
        key: Optional[str] = None,
        *,
        sound: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        channel: dict[str, Any] = {"type": "bark"}
        if key is not None and key != "":
            channel.update(server=url, key=key)
        else:
            channel["url"] = url  # the app's https://api.day.app/<key>
        optional = {"level": bark_level, "icon": icon, "sound": sound, "language": language}
        for option, value in optional.items():
            if value is not None:
                channel[option] = value
        problems = [("group", message) for _, message in optional_string(group)]
        problems += [("title", message) for _, message in optional_string(title)]
        if not isinstance(click_jump, bool):
            problems.append(("click_jump", f"must be True or False, not {kind(click_jump)}"))
        self._group = group if isinstance(group, str) else None
        if self._group is not None and self._group not in _GROUP_BY_LABEL:
            channel["group"] = self._group
        super().__init__(channel, problems, **kwargs)

    def _run_channels(self, labels: Mapping[str, Any]) -> list[spool.Channel]:
        label = _GROUP_BY_LABEL.get(self._group or "")
        if label and labels.get(label):
            self._channel["group"] = str(labels[label])
        return super()._run_channels(labels)

    def send_msg(self, content: str, title: Optional[str] = None, *args: Any, **kwargs: Any) -> None:
        super().send_msg(f"{title}: {content}" if title else content)


    ARGUMENT_OF = {"server": "url", "level": "bark_level"}


_GROUP_BY_LABEL = {"exp_name": "experiment", "project": "project", "workspace": "workspace"}


class DingTalkCallback(_NotificationCallback):
    """``DingTalkCallback(webhook_url, secret=None, language=None, *, secrets=None)``

    As SwanLab's; ``secrets=`` is accepted too, as SwanLab's docs spell it.
    """

    def __init__(
        self,
        webhook_url: str,
        secret: Optional[str] = None,
        language: Optional[str] = None,
        *,
        secrets: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        channel: dict[str, Any] = {"type": "dingtalk", "webhook_url": webhook_url}
        given = secret if secret is not None else secrets
        if given is not None and given != "":
            channel["secret"] = given
        if language is not None:
            channel["language"] = language
        super().__init__(channel, **kwargs)


class SlackCallback(_NotificationCallback):
    """``SlackCallback(webhook_url, language=None)``, as SwanLab's."""

    def __init__(self, webhook_url: str, language: Optional[str] = None, **kwargs: Any) -> None:
        channel: dict[str, Any] = {"type": "slack", "webhook_url": webhook_url}
        if language is not None:
            channel["language"] = language
        super().__init__(channel, **kwargs)


