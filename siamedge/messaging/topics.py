"""The MQTT topic names of one siamedge instance, built once from the configured prefix.

Pure values: never subscribes or publishes, and never accepts a topic with a wildcard in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from siamedge.errors import ConfigError

CommandKind = Literal["start", "stop"]

START_TOPIC = "track/start"
STOP_TOPIC = "track/stop"
RESULTS_TOPIC = "track/results"
STATUS_TOPIC = "track/status"
ERRORS_TOPIC = "track/errors"

_WILDCARDS = ("+", "#", "\0")
_MAX_TOPIC_BYTES = 65535
"""MQTT encodes a topic name with a 16-bit length."""


def is_publishable_topic(topic: str) -> bool:
    """Whether `topic` can be published to: not empty, no wildcard or NUL, fits MQTT's length."""
    return (
        bool(topic)
        and not any(char in topic for char in _WILDCARDS)
        and len(topic.encode("utf-8")) <= _MAX_TOPIC_BYTES
    )


@dataclass(frozen=True)
class Topics:
    """Every topic siamedge uses; `for_prefix` is the only way the service builds one."""

    start: str
    stop: str
    results: str
    status: str
    errors: str

    @classmethod
    def for_prefix(cls, prefix: str = "") -> Topics:
        """Topics under `prefix` (`siamedge/cam-01/` or ``); a missing trailing `/` is added."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        topics = cls(
            start=prefix + START_TOPIC,
            stop=prefix + STOP_TOPIC,
            results=prefix + RESULTS_TOPIC,
            status=prefix + STATUS_TOPIC,
            errors=prefix + ERRORS_TOPIC,
        )
        for name in topics.all():
            if not is_publishable_topic(name):
                raise ConfigError(
                    f"mqtt.topic_prefix: {prefix!r} gives an invalid MQTT topic {name!r}"
                )
        return topics

    def all(self) -> tuple[str, str, str, str, str]:
        """start, stop, results, status, errors."""
        return (self.start, self.stop, self.results, self.status, self.errors)

    def command_kind(self, topic: str) -> CommandKind | None:
        """`start` or `stop` for the two command topics, None for any other topic."""
        if topic == self.start:
            return "start"
        if topic == self.stop:
            return "stop"
        return None
