"""Sends start/stop commands for tools (siamedge.client) and waits for the daemon's reply to each:
the subscriber's results and status, plus the acks and errors matched by request_id.

Never replies to anything and never retains a command; paho's thread only queues and matches.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from siamedge.config import MqttSettings
from siamedge.messaging.subscriber import Subscriber
from siamedge.messaging.topics import CommandKind

COMMAND_QOS = 1
"""The daemon wants commands at QoS 1 (README: MQTT protocol)."""
REPLY_QOS = 1
NOT_AUTHORIZED = 0x87
"""MQTT 5's reason code for a publish the broker's access control refuses."""
CLIENT_ID_PREFIX = "siamedge-client-"


@dataclass(frozen=True)
class Reply:
    """The daemon's answer to one command: its ack (`accepted`) or its error, as JSON; or the
    broker's refusal to take the command (MQTT 5's PUBACK, e.g. an ACL), as an error."""

    accepted: bool
    message: dict[str, Any]


class Commander(Subscriber):
    """A Subscriber that also publishes commands, each with its own request_id, and hands back
    the ack (on the status topic) or error (on the errors topic) carrying that id."""

    def __init__(self, settings: MqttSettings) -> None:
        self._replies = threading.Condition()
        self._pending: dict[str, Reply | None] = {}
        self._broker_refusals: dict[int, str] = {}
        """Why the broker refused the publish with this message id (MQTT 5 only)."""
        super().__init__(settings, client_id_prefix=CLIENT_ID_PREFIX)
        self._client.on_publish = self._on_publish

    def request(
        self, kind: CommandKind, command: dict[str, Any], timeout_s: float
    ) -> tuple[str, Reply | None]:
        """Publish `command` (request_id and sent_at added) on the start or stop topic and wait
        up to timeout_s for its reply; (request_id, None) when none came."""
        request_id = f"{CLIENT_ID_PREFIX}{uuid.uuid4().hex}"
        payload = json.dumps({**command, "request_id": request_id, "sent_at": time.time()})
        topic = self.topics.start if kind == "start" else self.topics.stop
        deadline = time.monotonic() + timeout_s
        with self._replies:
            self._pending[request_id] = None  # before publishing: the reply may come at once
        mid: int | None = None
        try:
            mid = self._client.publish(
                topic, payload, qos=COMMAND_QOS, properties=self._expiry(timeout_s)
            ).mid
            with self._replies:
                while self._pending[request_id] is None and mid not in self._broker_refusals:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._replies.wait(left)
                if mid in self._broker_refusals:
                    why = self._broker_refusals[mid]
                    reason = f"the broker refused the command on {topic!r}: {why}"
                    return request_id, Reply(False, {"reason": reason})
                return request_id, self._pending[request_id]
        finally:
            with self._replies:
                del self._pending[request_id]
                if mid is not None:
                    self._broker_refusals.pop(mid, None)

    def _expiry(self, timeout_s: float) -> Properties | None:
        """MQTT 5: the command expires by the time the caller stops waiting for it, so that a
        start still waiting for a frame then is answered expired, not carried out behind its
        back. Whole seconds, rounded down (up, the daemon could carry out a start up to a second
        after the caller gave up); at least 1, the least MQTT can say, for a shorter wait."""
        if self._settings.protocol != "5":
            return None
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = max(1, math.floor(timeout_s))
        return properties

    def _on_publish(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:  # MQTT 5's PUBACK; 3.1.1 brokers drop refused ones silently
            why = str(reason_code)
            if reason_code.value == NOT_AUTHORIZED:
                why += " (the broker's ACL does not let this login publish there)"
            with self._replies:
                self._broker_refusals[mid] = why
                self._replies.notify_all()

    def _subscriptions(self) -> list[tuple[str, int]]:
        return [
            (self.topics.results, 0),
            (self.topics.status, REPLY_QOS),
            (self.topics.errors, REPLY_QOS),
        ]

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        is_error = message.topic == self.topics.errors
        if is_error or message.topic == self.topics.status:
            reply = _reply_of(bytes(message.payload), is_error)
            if reply is not None and self._answers(reply):
                return
            if reply is not None and not is_error:
                return  # an ack to another client's command: not a status report
        # Results, status reports, and the errors that answer nothing of ours (tracks the
        # daemon dropped, other clients' commands): queued for the tool.
        super()._on_message(client, userdata, message)

    def _answers(self, reply: Reply) -> bool:
        """Hand the reply to request() if it answers a command waiting here."""
        request_id = reply.message.get("request_id")
        with self._replies:
            if isinstance(request_id, str) and request_id in self._pending:
                self._pending[request_id] = reply
                self._replies.notify_all()
                return True
        return False


def _reply_of(payload: bytes, is_error: bool) -> Reply | None:
    """The reply in a status/errors payload; None for a status report (or malformed JSON)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if is_error:
        return Reply(accepted=False, message=data)
    return Reply(accepted=True, message=data) if "ack" in data else None
