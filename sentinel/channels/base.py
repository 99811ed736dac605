"""What every channel is: one alert in, one HTTP request out, or a DeliveryError."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Optional

from sentinel.alerts import Alert


class DeliveryError(Exception):
    """A failed delivery. ``permanent`` ones will never succeed as configured
    (dead-lettered); the others are retried, no sooner than ``retry_after``."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Channel(ABC):
    """A configured destination. Subclasses live one per module and register
    their config ``type:`` name in ``sentinel.channels.REGISTRY``."""

    type_name: ClassVar[str]
    # Pacing: the least time between two requests to one destination.
    min_interval: ClassVar[float] = 0.0

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en") -> None:
        self.name = name
        self.options = dict(options)
        self.language = language

    @classmethod
    @abstractmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems with a channel's options as (key, message); empty if fine."""

    @abstractmethod
    def send(self, alert: Alert) -> str:
        """Deliver one alert; return the service's answer in brief. Raises DeliveryError."""

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or an error message."""
        return []
