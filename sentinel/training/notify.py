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

from typing import Any, ClassVar, Mapping, Optional, Union

from sentinel.common.rules import LANGUAGES, kind
from sentinel.formats import spool
from sentinel.model.render import language_of
from sentinel.training.recorder import Recorder, report_once
from sentinel.training.run_options import Problems, inline_channel_problems, optional_string
from sentinel.training.swanlab_adapter import SentinelCallback


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
    """``BarkCallback(url="https://api.day.app", title=None, bark_level=None,
    icon=None, group=None, click_jump=True, language="zh", key=None, *, sound=None)``

    As SwanLab's: ``url`` is the Bark server, or the URL the Bark app shows
    (``https://api.day.app/<key>``) when ``key`` is not given. ``group`` may be
    ``"exp_name"``, ``"project"`` or ``"workspace"`` (grouped by that run
    label) or any other group name. ``title`` leads the notification's second
    line (the first always says what happened: "Crashed: resnet50");
    ``click_jump`` is accepted for compatibility: a tap opens the run when
    SwanLab knows its URL.
    """

    def __init__(
        self,
        url: str = "https://api.day.app",
        title: Optional[str] = None,
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
        if key is not None and key != "":
            channel.update(server=url, key=key)
        else:
            channel["url"] = url  # the app's https://api.day.app/<key>
        optional = {"level": bark_level, "icon": icon, "sound": sound, "language": language, "title": title}
        for option, value in optional.items():
            if value is not None:
                channel[option] = value
        problems = [("group", message) for _, message in optional_string(group)]
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
        given = secret if secret is not None else secrets
        if given is not None and given != "":
            channel["secret"] = given
        if language is not None:
            channel["language"] = language
        super().__init__(channel, **kwargs)


def _secret_or_language(args: tuple[Any, ...], secret: Any, language: Any,
                        problems: Problems) -> tuple[Any, Any]:
    """(secret, language) from the arguments after ``webhook_url``; call
    shape problems go to ``problems``.

    SwanLab 0.5-0.7 spells its webhook classes ``(webhook_url, secret=None,
    language="zh")``, 0.8+ some of them ``(webhook_url, language="zh")``: a
    lone second argument that is a language code is the language."""
    if len(args) > 2:
        problems.append(("", f"takes at most 3 positional arguments ({len(args) + 1} given)"))
        return secret, language
    if len(args) == 2:
        if secret is not None or language != "zh":
            problems.append(("", "got secret/language both by position and by keyword"))
        secret, language = args
    elif len(args) == 1:
        if isinstance(args[0], str) and args[0] in LANGUAGES:
            if language != "zh":
                problems.append(("", "got multiple values for argument 'language'"))
            language = args[0]
        else:
            if secret is not None:
                problems.append(("", "got multiple values for argument 'secret'"))
            secret = args[0]
    return secret, language


def _webhook_channel(channel_type: str, webhook_url: Any, language: Any, **options: Any) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": channel_type, "webhook_url": webhook_url}
    channel.update({key: value for key, value in options.items() if value is not None and value != ""})
    if language is not None:
        channel["language"] = language
    return channel


class _UnsignedWebhookCallback(_NotificationCallback):
    """A webhook SwanLab 0.5-0.7 also gave a ``secret`` it never used."""

    CHANNEL_TYPE: ClassVar[str]

    def __init__(self, webhook_url: str, *args: Optional[str], language: Optional[str] = "zh",
                 secret: Optional[str] = None, **kwargs: Any) -> None:
        problems: Problems = []
        secret, language = _secret_or_language(args, secret, language, problems)
        problems += [("secret", message) for _, message in optional_string(secret)]
        super().__init__(_webhook_channel(self.CHANNEL_TYPE, webhook_url, language), problems, **kwargs)


class SlackCallback(_UnsignedWebhookCallback):
    """``SlackCallback(webhook_url, language="zh")`` as SwanLab >= 0.8's, and
    ``SlackCallback(webhook_url, secret=None, language="zh")`` as 0.5-0.7's
    (Slack webhooks are not signed: the secret was never used)."""

    CHANNEL_TYPE = "slack"


# ---------------------------------------------------------------- the other SwanLab plugins


class LarkCallback(_NotificationCallback):
    """``LarkCallback(webhook_url, secret=None, language="zh")``, as SwanLab's
    (every version): a Lark or Feishu custom bot, signed when ``secret`` is given."""

    def __init__(self, webhook_url: str, secret: Optional[str] = None, language: Optional[str] = "zh",
                 **kwargs: Any) -> None:
        super().__init__(_webhook_channel("lark", webhook_url, language, secret=secret), **kwargs)


class WeComCallback(_UnsignedWebhookCallback):
    """``WeComCallback(webhook_url, language="zh")`` as SwanLab >= 0.8's, and
    ``WXWorkCallback(webhook_url, secret=None, language="zh")`` as 0.5-0.7's
    (WeCom robots are not signed: the secret was never used)."""

    CHANNEL_TYPE = "wecom"


WXWorkCallback = WeComCallback  # SwanLab's old name, kept by SwanLab as an alias too


class DiscordCallback(_UnsignedWebhookCallback):
    """``DiscordCallback(webhook_url, language="zh")`` as SwanLab >= 0.8's, and
    ``(webhook_url, secret=None, language="zh")`` as 0.5-0.7's (unused secret)."""

    CHANNEL_TYPE = "discord"


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
        problems: Problems = []
        if not isinstance(notify_on_start, bool):
            problems.append(("notify_on_start", f"must be True or False, not {kind(notify_on_start)}"))
        self._notify_on_start = notify_on_start is True
        super().__init__(channel, problems, **kwargs)

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

    ARGUMENT_OF = {"sender": "sender_email", "to": "receiver_email"}

    def __init__(self, sender_email: str, receiver_email: Union[str, list[str]], password: str,
                 smtp_server: str = "smtp.gmail.com", port: int = 587, language: Optional[str] = None,
                 **kwargs: Any) -> None:
        if language is None:
            from sentinel.training.swanlab_adapter import CALLBACK_API

            language = "zh" if CALLBACK_API == "callback" else "en"
        channel: dict[str, Any] = {"type": "email", "smtp_server": smtp_server, "port": port,
                                   "sender": sender_email, "username": sender_email, "password": password,
                                   "to": receiver_email, "language": language}
        super().__init__(channel, **kwargs)

    def _argument_problems(self) -> Problems:
        # The login name is sender_email too: its problem is the sender's, said once.
        return [problem for problem in super()._argument_problems() if problem[0] != "username"]
