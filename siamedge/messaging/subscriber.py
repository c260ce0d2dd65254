"""A read-only MQTT subscriber for tools (`siamedge watch`, siamedge.client): the results and
status of one siamedge instance, queued for the tool's own thread.

Never publishes (commands are messaging.commander's) and leaves no last will; paho's thread
only queues.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Literal

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from siamedge.config import MqttSettings
from siamedge.messaging.connection import paho_client, stop_paho, unanswered_reason
from siamedge.messaging.topics import Topics

log = logging.getLogger(__name__)

SUBSCRIBE_QOS = 0
QUEUE_SIZE = 256
"""Messages waiting for the tool; a slow terminal drops the oldest, never grows memory."""
CLIENT_ID_PREFIX = "siamedge-watch-"

MessageKind = Literal["results", "status", "errors"]


@dataclass(frozen=True)
class Received:
    """One message from the broker: which topic kind and its raw payload."""

    kind: MessageKind
    payload: bytes


class Subscriber:
    """Subscribes to `track/results` and `track/status` under the settings' prefix.

    Connects in the background and resubscribes after reconnects; get() hands the messages to
    the caller's thread. Raises ConfigError at construction for bad password or TLS settings.
    """

    def __init__(self, settings: MqttSettings, *, client_id_prefix: str = CLIENT_ID_PREFIX) -> None:
        self._settings = settings
        self._topics = Topics.for_prefix(settings.topic_prefix)
        self._lock = threading.Condition()
        self._messages: collections.deque[Received] = collections.deque(maxlen=QUEUE_SIZE)
        self._subscribed = threading.Event()
        self._ever_subscribed = False
        self._state = "connecting"
        self._answered = False
        """Whether the broker sent a CONNACK on the current connection."""
        self._refused = False
        """Whether that CONNACK refused the connection (its reason outlives the disconnect)."""
        self._closing = False
        client = paho_client(settings, f"{client_id_prefix}{uuid.uuid4().hex[:8]}")
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    @property
    def topics(self) -> Topics:
        """The instance's topics."""
        return self._topics

    @property
    def state(self) -> str:
        """`connecting`, `subscribed`, why the connection is down, or `closed` (close())."""
        return self._state

    def start(self) -> None:
        """Connect in the background (returns at once)."""
        self._client.connect_async(
            self._settings.host, self._settings.port, keepalive=self._settings.keepalive_s
        )
        self._client.loop_start()

    @property
    def ever_subscribed(self) -> bool:
        """True once the subscriptions were acknowledged, even if the connection dropped since."""
        return self._ever_subscribed

    def wait_subscribed(self, timeout_s: float) -> bool:
        """True once the subscriptions are acknowledged (within timeout_s)."""
        return self._subscribed.wait(timeout_s)

    def get(self, timeout_s: float) -> Received | None:
        """The oldest queued message, waiting up to timeout_s; None when none came."""
        with self._lock:
            if not self._messages:
                self._lock.wait(timeout_s)
            return self._messages.popleft() if self._messages else None

    def close(self) -> None:
        """Disconnect and stop paho's thread; `state` says `closed`."""
        self._closing = True
        stop_paho(self._client)
        self._state = "closed"

    # ---- paho callbacks (network thread) ------------------------------------------------------

    def _on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._answered = True
        self._refused = reason_code.is_failure
        if self._refused:
            self._state = f"broker refused the connection: {reason_code}"
            return
        client.subscribe(self._subscriptions())

    def _subscriptions(self) -> list[tuple[str, int]]:
        """(topic, QoS) pairs subscribed on every connect."""
        return [(self._topics.results, SUBSCRIBE_QOS), (self._topics.status, SUBSCRIBE_QOS)]

    def _on_connect_fail(self, client: Client, userdata: object) -> None:
        # paho calls this inside its `except OSError:`, so the error says why.
        error = sys.exc_info()[1]
        self._state = f"cannot connect: {error}" if error else "cannot connect"

    def _on_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._subscribed.clear()
        if self._closing:  # our own disconnect says nothing about the broker
            return
        if not self._refused:  # a refusing CONNACK said why (Not authorized); paho's reason won't
            self._state = (
                f"disconnected: {reason_code}" if self._answered else unanswered_reason(reason_code)
            )
        self._answered = self._refused = False

    def _on_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._state = "subscribed"
        self._ever_subscribed = True
        self._subscribed.set()

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        kind: MessageKind
        if message.topic == self._topics.results:
            kind = "results"
        elif message.topic == self._topics.status:
            kind = "status"
        elif message.topic == self._topics.errors:
            kind = "errors"  # only subclasses that subscribe to it (messaging.commander)
        else:
            return
        with self._lock:
            self._messages.append(Received(kind, bytes(message.payload)))
            self._lock.notify_all()
