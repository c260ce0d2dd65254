"""HTTP commands on their way to the service's main loop, and their answers on the way back.

The main loop drains the inbox (ServicePort.add_inbox in siamedge.frontend) exactly like the MQTT
queue, so a command from the web is validated and applied by the same code; this module never
touches a tracker.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

from siamedge.errors import CommandError
from siamedge.frontend import Request
from siamedge.messaging.topics import CommandKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """The service's answer: accepted (error None, track_id of a start or a single stop) or
    rejected with the same CommandError an MQTT client would see on the errors topic."""

    track_id: str | None
    request_id: str | None
    error: CommandError | None


class _Reply:
    """The Responder of one HTTP command: the main loop fills it, the HTTP thread waits."""

    def __init__(self, kind: CommandKind) -> None:
        self._kind = kind
        self._done = threading.Event()
        self._outcome: Outcome | None = None

    def accepted(self, track_id: str | None, request_id: str | None) -> None:
        self._outcome = Outcome(track_id, request_id, None)
        self._done.set()

    def rejected(self, error: CommandError) -> None:
        log.info("HTTP %s command rejected: %s", self._kind, error.reason)
        self._outcome = Outcome(None, error.request_id, error)
        self._done.set()

    def abandon(self) -> None:
        """No answer will come (shutdown): wake the waiting HTTP thread with none."""
        self._done.set()

    def wait(self, timeout_s: float) -> Outcome | None:
        self._done.wait(timeout_s)
        return self._outcome


class InboxFullError(Exception):
    """More HTTP commands are waiting than the inbox holds."""


class WebInbox:
    """A bounded queue of HTTP commands; `drain` is the service's inbox callback."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._requests: deque[Request] = deque()
        self._waiting: set[_Reply] = set()
        self._closed = False

    def drain(self) -> list[Request]:
        """Everything queued, oldest first (main loop; never blocks for long)."""
        with self._lock:
            requests = list(self._requests)
            self._requests.clear()
        return requests

    def submit(self, kind: CommandKind, payload: bytes, timeout_s: float) -> Outcome | None:
        """Queue a command and wait for the service's answer; None when none came in time
        (the command stays queued and may still be applied) or the inbox closed meanwhile.
        Raises InboxFullError when full or closed."""
        reply = _Reply(kind)
        with self._lock:
            if self._closed:
                raise InboxFullError("the service is shutting down")
            if len(self._requests) >= self._capacity:
                raise InboxFullError(f"{self._capacity} web commands are waiting already")
            self._requests.append(Request(kind, payload, reply))
            self._waiting.add(reply)
        try:
            return reply.wait(timeout_s)
        finally:
            with self._lock:
                self._waiting.discard(reply)

    def close(self) -> None:
        """Refuse new commands and wake every HTTP thread still waiting for an answer."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
        for reply in waiting:
            reply.abandon()
