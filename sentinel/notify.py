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

from typing import Any, Mapping, Optional, Union

from sentinel import spool
from sentinel.recorder import Recorder, report_once
from sentinel.render import LANGUAGES, language_of
from sentinel.swanlab_adapter import SentinelCallback


class _NotificationCallback(SentinelCallback):
    """A SentinelCallback with one channel of its own, plus ``send_msg``."""

    def __init__(self, channel: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._channel = dict(channel)
        _validate(self._channel, type(self).__name__)
        self._early_messages: list[str] = []

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
    icon=None, group=None, click_jump=True, language="zh", key=None, *, sound=None)``

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
        language: Optional[str] = "zh",
        key: Optional[str] = None,
        *,
        sound: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        channel: dict[str, Any] = {"type": "bark"}
        if key:
            channel.update(server=url, key=key)
        else:
            channel["url"] = url  # the app's https://api.day.app/<key>
        optional = {"level": bark_level, "icon": icon, "sound": sound, "language": language}
        for option, value in optional.items():
            if value is not None:
                channel[option] = value
        self._group = group
        if group is not None and group not in _GROUP_BY_LABEL:
            channel["group"] = group
        super().__init__(channel, **kwargs)

    def _run_channels(self, labels: Mapping[str, Any]) -> list[spool.Channel]:
        label = _GROUP_BY_LABEL.get(self._group or "")
        if label and labels.get(label):
            self._channel["group"] = str(labels[label])
        return super()._run_channels(labels)

    def send_msg(self, content: str, title: Optional[str] = None, *args: Any, **kwargs: Any) -> None:
        super().send_msg(f"{title}: {content}" if title else content)


_GROUP_BY_LABEL = {"exp_name": "experiment", "project": "project", "workspace": "workspace"}


class DingTalkCallback(_NotificationCallback):
    """``DingTalkCallback(webhook_url, secret=None, language="zh", *, secrets=None)``

    As SwanLab's; ``secrets=`` is accepted too, as SwanLab's docs spell it.
    """

    def __init__(
        self,
        webhook_url: str,
        secret: Optional[str] = None,
        language: Optional[str] = "zh",
        *,
        secrets: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        channel: dict[str, Any] = {"type": "dingtalk", "webhook_url": webhook_url}
        if secret or secrets:
            channel["secret"] = secret or secrets
        if language is not None:
            channel["language"] = language
        super().__init__(channel, **kwargs)


class SlackCallback(_NotificationCallback):
    """``SlackCallback(webhook_url, language="zh")`` as SwanLab >= 0.8's, and
    ``SlackCallback(webhook_url, secret=None, language="zh")`` as 0.5-0.7's
    (Slack webhooks are not signed: the secret was never used)."""

    def __init__(self, webhook_url: str, *args: Optional[str], language: Optional[str] = "zh",
                 secret: Optional[str] = None, **kwargs: Any) -> None:
        _, language = _secret_or_language(type(self).__name__, args, secret, language)
        super().__init__(_webhook_channel("slack", webhook_url, language), **kwargs)


def _validate(channel: Mapping[str, Any], who: str) -> None:
    """A wrong key or URL is a clear error now, not a silent run later."""
    from sentinel.channels import check_channel

    problems = check_channel(channel)
    if problems:
        raise ValueError(f"{who}: " + "; ".join(f"{key}: {message}" for key, message in problems))


# ---------------------------------------------------------------- the other SwanLab plugins


def _secret_or_language(who: str, args: tuple[Optional[str], ...], secret: Optional[str],
                        language: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(secret, language) from the arguments after ``webhook_url``.

    SwanLab 0.5-0.7 spells its webhook classes ``(webhook_url, secret=None,
    language="zh")``, 0.8+ some of them ``(webhook_url, language="zh")``: a
    lone second argument that is a language code is the language."""
    if len(args) > 2:
        raise TypeError(f"{who}() takes at most 3 positional arguments ({len(args) + 1} given)")
    if len(args) == 2:
        if secret is not None or language != "zh":
            raise TypeError(f"{who}() got secret/language both by position and by keyword")
        return args[0], args[1]
    if len(args) == 1:
        if isinstance(args[0], str) and args[0] in LANGUAGES:
            if language != "zh":
                raise TypeError(f"{who}() got multiple values for argument 'language'")
            return secret, args[0]
        if secret is not None:
            raise TypeError(f"{who}() got multiple values for argument 'secret'")
        return args[0], language
    return secret, language


def _webhook_channel(kind: str, webhook_url: str, language: Optional[str], **options: Any) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": kind, "webhook_url": webhook_url}
    channel.update({key: value for key, value in options.items() if value is not None and value != ""})
    if language is not None:
        channel["language"] = language
    return channel


class LarkCallback(_NotificationCallback):
    """``LarkCallback(webhook_url, secret=None, language="zh")``, as SwanLab's
    (every version): a Lark or Feishu custom bot, signed when ``secret`` is given."""

    def __init__(self, webhook_url: str, secret: Optional[str] = None, language: Optional[str] = "zh",
                 **kwargs: Any) -> None:
        super().__init__(_webhook_channel("lark", webhook_url, language, secret=secret), **kwargs)


class WeComCallback(_NotificationCallback):
    """``WeComCallback(webhook_url, language="zh")`` as SwanLab >= 0.8's, and
    ``WXWorkCallback(webhook_url, secret=None, language="zh")`` as 0.5-0.7's
    (WeCom robots are not signed: the secret was never used)."""

    def __init__(self, webhook_url: str, *args: Optional[str], language: Optional[str] = "zh",
                 secret: Optional[str] = None, **kwargs: Any) -> None:
        _, language = _secret_or_language(type(self).__name__, args, secret, language)
        super().__init__(_webhook_channel("wecom", webhook_url, language), **kwargs)


WXWorkCallback = WeComCallback  # SwanLab's old name, kept by SwanLab as an alias too


class DiscordCallback(_NotificationCallback):
    """``DiscordCallback(webhook_url, language="zh")`` as SwanLab >= 0.8's, and
    ``(webhook_url, secret=None, language="zh")`` as 0.5-0.7's (unused secret)."""

    def __init__(self, webhook_url: str, *args: Optional[str], language: Optional[str] = "zh",
                 secret: Optional[str] = None, **kwargs: Any) -> None:
        _, language = _secret_or_language(type(self).__name__, args, secret, language)
        super().__init__(_webhook_channel("discord", webhook_url, language), **kwargs)


class TelegramCallback(_NotificationCallback):
    """``TelegramCallback(bot_token, chat_id, language="zh", notify_on_start=False,
    *, api_url=None)``, as SwanLab's (``notify_on_start`` is 0.7's): ``api_url``
    names a self-hosted Bot API server."""

    def __init__(self, bot_token: str, chat_id: Union[str, int], language: Optional[str] = "zh",
                 notify_on_start: bool = False, *, api_url: Optional[str] = None, **kwargs: Any) -> None:
        channel: dict[str, Any] = {"type": "telegram", "bot_token": bot_token, "chat_id": chat_id}
        if api_url is not None:
            channel["api_url"] = api_url
        if language is not None:
            channel["language"] = language
        if not isinstance(notify_on_start, bool):
            raise ValueError(f"{type(self).__name__}: notify_on_start: must be True or False")
        self._notify_on_start = notify_on_start
        super().__init__(channel, **kwargs)

    def _run_started(self, recorder: Recorder) -> None:
        if self._notify_on_start:
            recorder.send(_STARTED[language_of(self._channel.get("language"))])
        super()._run_started(recorder)


_STARTED = {"en": "🚀 Experiment started", "zh": "🚀 实验开始"}


class EmailCallback(_NotificationCallback):
    """``EmailCallback(sender_email, receiver_email, password, smtp_server="smtp.gmail.com",
    port=587, language=...)``, as SwanLab's: port 465 is TLS from the start,
    any other STARTTLS. ``language`` defaults as the installed SwanLab's does
    ("zh" from 0.8, "en" before). ``receiver_email`` may also be a list."""

    def __init__(self, sender_email: str, receiver_email: Union[str, list[str]], password: str,
                 smtp_server: str = "smtp.gmail.com", port: int = 587, language: Optional[str] = None,
                 **kwargs: Any) -> None:
        if language is None:
            from sentinel.swanlab_adapter import CALLBACK_API

            language = "zh" if CALLBACK_API == "callback" else "en"
        channel: dict[str, Any] = {"type": "email", "smtp_server": smtp_server, "port": port,
                                   "sender": sender_email, "username": sender_email, "password": password,
                                   "to": receiver_email, "language": language}
        super().__init__(channel, **kwargs)
