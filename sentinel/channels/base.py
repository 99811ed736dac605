"""What every channel is: one alert in, one HTTP request out, or a DeliveryError.

A channel is one module with one ``Channel`` subclass that owns its
service's payload and says what the service allows through the class
attributes below; ``register`` adds it to ``REGISTRY`` under its config
``type:`` name. The delivery workers read only these attributes.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Optional, Sequence, Tuple, TypeVar
from urllib.parse import urlsplit

from sentinel.model.alerts import Alert
from sentinel.model.render import language_of


class DeliveryError(Exception):
    """A failed delivery. ``permanent`` ones will never succeed as configured
    (dead-lettered); the others are retried, no sooner than ``retry_after``."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Channel(ABC):
    """A configured destination."""

    type_name: ClassVar[str]
    # Pacing: the least time between two requests to one destination.
    min_interval: ClassVar[float] = 0.0
    # At most (count, seconds) requests to one destination; None: no limit.
    rate_limit: ClassVar[Optional[Tuple[int, float]]] = None
    # The channel can merge several alerts into one message (``send_digest``).
    supports_digest: ClassVar[bool] = False
    # The largest message the service accepts, in bytes; None: no limit we know.
    max_message_bytes: ClassVar[Optional[int]] = None

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", *,
                 follow_run_language: bool = False) -> None:
        self.name = name
        self.options = dict(options)
        # Spoken when neither the channel's ``language`` option nor (for a
        # channel that follows the run) the run names one.
        self.language = language
        self.follow_run_language = follow_run_language

    @classmethod
    @abstractmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems with a channel's options as (key, message); empty if fine."""

    @abstractmethod
    def send(self, alert: Alert) -> str:
        """Deliver one alert; return the service's answer in brief. Raises DeliveryError."""

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        """Deliver several alerts as one message (``supports_digest`` channels)."""
        raise NotImplementedError(f"{self.type_name} channels send no digests")

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        """How many of ``alerts`` (oldest first, at least one) one digest can carry."""
        return 1

    def pace_key(self) -> str:
        """Channels with one key share one pacing budget (one webhook, one robot)."""
        return f"channel:{self.name}"

    def destination_key(self, destination: str, kind: Optional[str] = None) -> str:
        """A ``pace_key`` for ``destination`` (a webhook URL, a bot and chat)
        that does not contain it: the URL may hold the token."""
        return f"{kind or self.type_name}:" + hashlib.sha256(destination.encode("utf-8")).hexdigest()[:16]

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or an error message."""
        return []

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        """The host names the daemon would connect to for a channel with
        ``options`` (valid ones); [] for none (no network). None: this type
        cannot tell, so an inline channel of it is refused wherever the
        admin limits inline destinations (``inline_channels.hosts``)."""
        return None

    @staticmethod
    def hosts_of(*urls: str) -> list[str]:
        """The host names of ``urls``, for ``destination_hosts``."""
        return [urlsplit(url).hostname or "" for url in urls]

    def language_for(self, alert: Alert) -> str:
        """The language rule: the channel's own ``language`` option wins; a
        channel that follows the run (given inline, without a language) speaks
        the run's language; otherwise, and when the run names none, its default."""
        run_language = alert.language if self.follow_run_language else None
        return language_of(self.options.get("language"), run_language, self.language)


REGISTRY: dict[str, type[Channel]] = {}

ChannelType = TypeVar("ChannelType", bound="type[Channel]")


def register(cls: ChannelType) -> ChannelType:
    """Make ``cls`` usable as ``type: <cls.type_name>`` (a class decorator)."""
    name = getattr(cls, "type_name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} has no type_name")
    known = REGISTRY.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"channel type {name!r} is taken by {known.__module__}.{known.__name__}")
    REGISTRY[name] = cls
    return cls
