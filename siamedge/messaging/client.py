"""The MQTT client of the service: a thin wrapper over paho-mqtt 2 with a bounded command queue.

paho's network thread only queues commands and records the connection state here; it never
blocks, parses a box or touches a tracker. The service drains the queue between frames.
The session is persistent (mqtt.session_expiry_s): the broker keeps the QoS 1 commands sent
while we are away (reconnecting, restarting) under our stable client id. Every command ends in
one counted outcome, and every one not carried out gets an error reply or a place in a summary.
Results are never queued for long: dropped while disconnected, and while a slow or dead link
does not take them they wait in a small outbox that drops the oldest; every drop is counted.
"""

from __future__ import annotations

import collections
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType

from paho.mqtt.client import (
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTMessage,
    MQTTMessageInfo,
)
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from siamedge.config import MqttSettings
from siamedge.errors import CommandError
from siamedge.messaging.connection import (
    PROTOCOLS,
    paho_client,
    paho_keepalive,
    stop_paho,
    unanswered_reason,
)
from siamedge.messaging.homeassistant import DISCOVERY_QOS, DiscoveryMessage, discovery_messages
from siamedge.messaging.ledger import CommandCounters, ErrorBudget, Outcome
from siamedge.messaging.outbox import Outbox
from siamedge.messaging.protocol import (
    OFFLINE_CONNECTION_LOST,
    OFFLINE_SHUTDOWN,
    DroppedCommandError,
    DuplicateCommandError,
    StaleCommandError,
    StatusReport,
    check_command_size,
    encode_ack,
    encode_error,
    encode_error_summary,
    encode_offline,
    encode_online,
    encode_results,
    encode_status,
    encode_track_dropped,
    expired_error,
    request_id_of,
    shutting_down_error,
)
from siamedge.messaging.topics import CommandKind, Topics, is_publishable_topic
from siamedge.tracking.result import TrackResult

log = logging.getLogger(__name__)

COMMAND_QOS = 1
STATUS_QOS = 1
ERRORS_QOS = 1
ACK_QOS = 1
MAX_QUEUED_OUTGOING = 256
"""paho keeps QoS>0 messages while offline; bounded so an outage cannot grow memory."""
RESULTS_WAITING = 20
"""Results kept while the link cannot take them (a second of frames at 20 fps); when more
come, the oldest are dropped: the newest is what a client wants after an outage."""
RESULTS_IN_FLIGHT = 20
"""Results handed to paho and not yet written to the socket (QoS 0) or acknowledged (QoS 1):
paho's own queue never holds more of them, so it keeps room for acks, errors and status."""
CLOSE_TIMEOUT_S = 2.0
"""How long close() waits for the broker to take the `offline` status."""

SHORT_SESSION_S = 5.0
CLASH_STREAK = 3
"""A connection the broker drops within SHORT_SESSION_S of accepting it, CLASH_STREAK times in
a row, is most likely a second client with our client id: each new connection with the same
id makes the broker drop the older one (mosquitto 2.0 just closes the socket: paho then says
`Unspecified error`; MQTT 5 brokers that say it send `Session taken over`)."""
SESSION_TAKEN_OVER = 142
"""MQTT 5 DISCONNECT reason code: another connection took over this client id's session."""

_NOT_CONNECTED_YET = "not connected yet"
_PAHO_LOGGER = logging.getLogger(f"{__name__}.paho")


class _DemoteLoopNoise(logging.Filter):
    """paho 2.2's network loop logs `Client is not connected` at ERROR once after every clean
    disconnect; it is not an error, so it goes to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(
            "Client is not connected"
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return _PAHO_LOGGER.isEnabledFor(logging.DEBUG)
        return True


_PAHO_LOGGER.addFilter(_DemoteLoopNoise())
_CLOSED = "closed"


@dataclass(frozen=True)
class IncomingCommand:
    """A command as it arrived, before validation (protocol.parse_command does that).

    response_topic / correlation_data: MQTT v5 request-response properties, None if absent.
    received_at: unix seconds (for logs). Waits are timed on time.monotonic(), which NTP does
    not step: received_mono, expires_at.
    """

    kind: CommandKind
    topic: str
    payload: bytes
    response_topic: str | None
    correlation_data: bytes | None
    received_at: float
    expires_at: float | None = None
    """time.monotonic() when its MQTT 5 message expiry interval runs out; None: never."""
    received_mono: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class ConnectionState:
    """Whether the broker connection is up, why it changed last, and when (unix seconds).

    connected turns True when the broker has acknowledged the command subscriptions.
    """

    connected: bool
    reason: str
    since: float


StateCallback = Callable[[ConnectionState], None]


def default_client_id() -> str:
    """`siamedge-<hostname>`: the same across restarts, so the broker finds our session."""
    return f"siamedge-{socket.gethostname()}"


def outcome_of(error: CommandError) -> Outcome:
    """The counter a rejected command goes to."""
    if isinstance(error, StaleCommandError):
        return "stale"
    if isinstance(error, DuplicateCommandError):
        return "duplicate"
    if isinstance(error, DroppedCommandError):
        return "expired" if error.expired else "dropped_queue_full"
    return "rejected"


class MqttClient:
    """Connects in the background, keeps the subscriptions and the retained status across
    reconnects, queues incoming commands and publishes results, status, acks and errors.

    on_state_change runs on paho's network thread (and once in close()): it must return quickly
    and never block.
    Raises ConfigError at construction for a missing password file/variable or bad TLS files.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_state_change: StateCallback | None = None,
        queue_size: int | None = None,
    ) -> None:
        self._settings = settings
        self._topics = Topics.for_prefix(settings.topic_prefix)
        self._client_id = settings.client_id or default_client_id()
        self._on_state_change = on_state_change
        self._lock = threading.Lock()
        self._commands: collections.deque[IncomingCommand] = collections.deque()
        # When full the oldest is dropped (and answered): the newest is what the operator wants.
        self._queue_size = settings.command_queue_size if queue_size is None else queue_size
        self._counters = CommandCounters()
        self._error_budget = ErrorBudget(settings.error_replies_per_s, now=time.monotonic())
        self._state = ConnectionState(False, _NOT_CONNECTED_YET, time.time())
        self._connected = threading.Event()
        self._status_payload = encode_online()
        self._closing = False
        self._started = False
        self._subscribe_mid: int | None = None
        self._short_sessions = 0  # connections dropped soon after they were accepted, in a row
        self._connected_mono = 0.0  # time.monotonic() of the last accepted connection
        self._answered = False  # the broker sent a CONNACK on the current connection
        self._queue_overflowing = False  # commands dropped since the queue was last emptied
        self._refusing = False  # shutting down: commands are answered, no longer queued
        # Re-sent on every connect: a broker restarted without persistence has lost them.
        self._retained_on_connect: tuple[DiscoveryMessage, ...] = (
            discovery_messages(settings.homeassistant, self._topics, self._client_id)
            if settings.homeassistant.enabled
            else ()
        )

        self._results: Outbox[bytes] = Outbox(RESULTS_WAITING)
        self._results_lock = threading.Lock()  # one thread at a time hands results to paho
        self._results_in_flight: list[MQTTMessageInfo] = []
        self._results_lost = 0  # queued in paho when the connection broke (QoS 0: never sent)
        self._results_reported = (0, 0)  # (dropped, lost) in the last log line
        self._dropping_results = False

        self._mqtt5 = PROTOCOLS[settings.protocol] == MQTTProtocolVersion.MQTTv5
        # MQTT 5 keeps the retain flag of a command published while we are subscribed (3.1.1
        # clears it), so a retained command is refused whenever it comes.
        topics = (self._topics.start, self._topics.stop)
        self._command_subscriptions: list[tuple[str, int]] | list[tuple[str, SubscribeOptions]] = (
            [(topic, SubscribeOptions(qos=COMMAND_QOS, retainAsPublished=True)) for topic in topics]
            if self._mqtt5
            else [(topic, COMMAND_QOS) for topic in topics]
        )
        self._persistent = settings.session_expiry_s > 0
        self._stale_topics: set[str] = set()
        """Topics unsubscribed because only an earlier topic_prefix used them (network thread)."""
        client = paho_client(settings, self._client_id, persistent=self._persistent)
        client.enable_logger(_PAHO_LOGGER)
        client.max_queued_messages_set(MAX_QUEUED_OUTGOING)
        client.will_set(
            self._topics.status,
            encode_offline(OFFLINE_CONNECTION_LOST),
            qos=STATUS_QOS,
            retain=True,
        )
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        self._client = client

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def topics(self) -> Topics:
        """The topics in use."""
        return self._topics

    @property
    def client_id(self) -> str:
        """The MQTT client id in use."""
        return self._client_id

    def start(self) -> None:
        """Connect in the background (returns at once); reconnects with backoff for good."""
        if self._started:
            return
        self._started = True
        log.info(
            "MQTT connecting to %s:%d as %s (MQTT %s%s, %s)",
            self._settings.host,
            self._settings.port,
            self._client_id,
            self._settings.protocol,
            ", TLS" if self._settings.tls else "",
            f"session kept {self._settings.session_expiry_s} s"
            if self._persistent
            else "clean session",
        )
        if self._retained_on_connect:
            log.info(
                "MQTT Home Assistant discovery: %d entities under %s",
                len(self._retained_on_connect),
                self._settings.homeassistant.discovery_prefix,
            )
        properties: Properties | None = None
        if self._mqtt5 and self._persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._settings.session_expiry_s
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=paho_keepalive(self._settings.keepalive_s),
            # Never clean when persistent, not even on the first connect: that one may follow a
            # restart, and the broker holds the commands sent meanwhile. (3.1.1 ignores this and
            # uses the client's clean_session.)
            clean_start=not self._persistent,
            properties=properties,
        )
        self._client.loop_start()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Publish the retained `offline` status (if connected), disconnect, stop the thread."""
        if self._closing:
            return
        self._closing = True
        self._refuse_commands()
        if self._client.is_connected():
            # What still waits in the outbox (the last frames, the empty message that ends the
            # tracks) goes before the offline status, beyond the in-flight window.
            self._send_results(in_flight_limit=MAX_QUEUED_OUTGOING)
            info = self._client.publish(
                self._topics.status,
                encode_offline(OFFLINE_SHUTDOWN),
                qos=STATUS_QOS,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout_s)
            except (ValueError, RuntimeError) as exc:
                log.warning("MQTT could not publish the offline status: %s", exc)
        stop_paho(self._client)
        self._set_state(False, _CLOSED, logging.INFO)

    def __enter__(self) -> MqttClient:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- connection state --------------------------------------------------------------------

    @property
    def connection(self) -> ConnectionState:
        """The current connection state (thread-safe snapshot)."""
        with self._lock:
            return self._state

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected and subscribed, or `timeout_s` passed; True when connected."""
        return self._connected.wait(timeout_s)

    def _set_state(self, connected: bool, reason: str, level: int) -> None:
        with self._lock:
            previous = self._state
            changed = previous.connected != connected or previous.reason != reason
            if changed:
                self._state = ConnectionState(connected, reason, time.time())
                if connected:
                    self._connected_mono = time.monotonic()
            state = self._state
        if connected:
            self._connected.set()
        else:
            self._connected.clear()
        if not changed:
            # Repeated failures while the broker stays away: once in the log is enough.
            log.debug("MQTT still %s: %s", "connected" if connected else "disconnected", reason)
            return
        log.log(
            level,
            "MQTT %s %s:%d: %s",
            "connected to" if connected else "disconnected from",
            self._settings.host,
            self._settings.port,
            reason,
        )
        if self._on_state_change is not None:
            try:
                self._on_state_change(state)
            except Exception:
                log.exception("MQTT connection state callback failed")

    # ---- paho callbacks (network thread: no blocking calls) ---------------------------------

    def _handle_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            self._answered = True
            if reason_code.is_failure:
                self._set_state(
                    False, f"broker refused the connection: {reason_code}", logging.ERROR
                )
                return
            if self._persistent:
                log.info(
                    "MQTT session %s",
                    "resumed: commands sent while away follow"
                    if flags.session_present
                    else "new: the broker had none for this client id",
                )
            # Subscribing here brings the subscriptions back after every reconnect (and after a
            # session that expired); the state turns `connected` at the SUBACK.
            _, mid = client.subscribe(self._command_subscriptions)
            with self._lock:
                self._subscribe_mid = mid
            # The broker may hold our last will (`offline`) from a dropped connection.
            client.publish(self._topics.status, self._current_status(), qos=STATUS_QOS, retain=True)
            for message in self._retained_on_connect:
                client.publish(message.topic, message.payload, qos=DISCOVERY_QOS, retain=True)
        except Exception:
            log.exception("MQTT on_connect failed")

    def _handle_connect_fail(self, client: Client, userdata: object) -> None:
        try:
            # paho calls this inside its `except OSError:`; the error says refused, unreachable
            # or which TLS check failed.
            error = sys.exc_info()[1]
            reason = f"cannot connect: {error}" if error else "cannot connect"
            self._set_state(False, reason, logging.WARNING)
        except Exception:
            log.exception("MQTT on_connect_fail failed")

    def _handle_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if self._closing:
                return
            with self._lock:
                was_connected = self._state.connected
            answered, self._answered = self._answered, False
            if was_connected:  # a refused CONNECT already recorded its own reason
                self._set_state(False, f"connection lost: {reason_code}", logging.WARNING)
                self._note_session(
                    time.monotonic() - self._connected_mono,
                    reason_code.value == SESSION_TAKEN_OVER,
                )
            elif not answered:
                self._set_state(False, unanswered_reason(reason_code), logging.WARNING)
        except Exception:
            log.exception("MQTT on_disconnect failed")

    def _note_session(self, lasted_s: float, taken_over: bool) -> None:
        """Say once per streak when dropped connections point at a client id clash."""
        if lasted_s >= SHORT_SESSION_S and not taken_over:
            self._short_sessions = 0
            return
        self._short_sessions += 1
        if self._short_sessions == (1 if taken_over else CLASH_STREAK):
            log.warning(
                "MQTT: %s; another client may be connecting with client_id %r (the broker drops "
                "the older of two connections with one id): give every daemon its own "
                "mqtt.client_id",
                "the broker says the session was taken over"
                if taken_over
                else f"the broker dropped {CLASH_STREAK} connections in a row within "
                f"{SHORT_SESSION_S:g} s of accepting them",
                self._client_id,
            )

    def _handle_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        try:
            with self._lock:
                if mid != self._subscribe_mid:
                    return
            topics = (self._topics.start, self._topics.stop)
            refused = [
                f"{topic} ({code})"
                for topic, code in zip(topics, reason_codes, strict=False)
                if code.is_failure
            ]
            if refused:
                reason = f"subscribed, but the broker refused {', '.join(refused)}"
                self._set_state(True, reason, logging.ERROR)
            else:
                self._set_state(True, "subscribed to the command topics", logging.INFO)
        except Exception:
            log.exception("MQTT on_subscribe failed")

    def _handle_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        try:
            self._queue_message(message)
        except Exception:
            log.exception("MQTT could not queue a message on %s", message.topic)

    def _drop_stale_subscription(self, topic: str) -> None:
        """A message on no command topic of ours came through a subscription that an earlier
        mqtt.topic_prefix left in the broker's persistent session (the broker keeps it until
        the session expires): unsubscribe it, with one warning."""
        if topic in self._stale_topics:
            log.debug("MQTT ignoring a message on %s (unsubscribed)", topic)
            return
        self._stale_topics.add(topic)
        log.warning(
            "MQTT a message on %s, which is no command topic of this daemon: the broker's "
            "session still holds a subscription of an earlier mqtt.topic_prefix; unsubscribed "
            "(the message is dropped)",
            topic,
        )
        self._client.unsubscribe(topic)

    def _queue_message(self, message: MQTTMessage) -> None:
        kind = self._topics.command_kind(message.topic)
        if kind is None:
            self._drop_stale_subscription(message.topic)
            return
        if not message.payload and (message.retain or self._settings.protocol == "3.1.1"):
            # MQTT 3.1.1 brokers clear the retain flag towards subscriptions: there an empty
            # message is a retained command being cleared as well as anything else.
            log.debug("MQTT a retained %s command on %s was cleared", kind, message.topic)
            return
        response_topic: str | None = None
        correlation_data: bytes | None = None
        expires_at: float | None = None
        received_at, received_mono = time.time(), time.monotonic()
        properties = message.properties
        if properties is not None:
            response_topic = getattr(properties, "ResponseTopic", None)
            correlation_data = getattr(properties, "CorrelationData", None)
            # The broker drops what expired while we were away and sends the rest with the
            # time that is left; it runs on while the command waits in our queue.
            expiry_s = getattr(properties, "MessageExpiryInterval", None)
            if isinstance(expiry_s, int):
                expires_at = received_mono + expiry_s
            if response_topic is not None and not is_publishable_topic(response_topic):
                log.warning("MQTT ignoring the invalid response topic %r", response_topic)
                response_topic = None
            if response_topic is not None and self._topics.command_kind(response_topic):
                log.warning(
                    "MQTT ignoring the response topic %r: it is a command topic, where the "
                    "reply would come back as a command",
                    response_topic,
                )
                response_topic = None
        command = IncomingCommand(
            kind=kind,
            topic=message.topic,
            payload=bytes(message.payload),
            response_topic=response_topic,
            correlation_data=correlation_data,
            received_at=received_at,
            expires_at=expires_at,
            received_mono=received_mono,
        )
        if message.retain:
            # A retained command would run again at every reconnect (and restart).
            self.reject(
                command,
                CommandError(
                    "retained: a retained command would run again at every reconnect; publish "
                    "it without retain, and clear this one with an empty retained message on "
                    f"{message.topic}",
                    request_id_of(command.payload),
                ),
            )
            return
        try:
            check_command_size(command.payload)
        except CommandError as exc:
            # Answered here so that the queue never holds more than its size x 64 KiB.
            self.reject(command, exc)
            return
        dropped: IncomingCommand | None = None
        with self._lock:
            refusing = self._refusing
            if not refusing:
                if len(self._commands) >= self._queue_size:
                    dropped = self._commands.popleft()
                self._commands.append(command)
            first_of_streak = dropped is not None and not self._queue_overflowing
            self._queue_overflowing = self._queue_overflowing or dropped is not None
        if refusing:  # the service no longer drains the queue: answer it here
            self.reject(command, shutting_down_error(request_id_of(command.payload)))
            return
        if dropped is not None:
            log.log(  # once until the queue is taken empty again: the answers count the rest
                logging.WARNING if first_of_streak else logging.DEBUG,
                "MQTT command queue full (%d): dropped the oldest %s command (received %s)",
                self._queue_size,
                dropped.kind,
                time.strftime("%H:%M:%S", time.localtime(dropped.received_at)),
            )
            self.reject(
                dropped,
                DroppedCommandError(
                    f"dropped: {self._queue_size} commands were waiting and the service did not "
                    "take them in time",
                    request_id_of(dropped.payload),
                ),
            )

    # ---- commands ----------------------------------------------------------------------------

    def drain_commands(self, limit: int | None = None) -> list[IncomingCommand]:
        """Take up to `limit` (default all) queued commands, oldest first; never blocks.

        Commands whose MQTT 5 message expiry ran out while they waited are answered as expired
        instead of returned.
        """
        with self._lock:
            count = len(self._commands) if limit is None else min(limit, len(self._commands))
            taken = [self._commands.popleft() for _ in range(count)]
            if not self._commands:
                self._queue_overflowing = False
        now = time.monotonic()
        commands: list[IncomingCommand] = []
        for command in taken:
            if command.expires_at is not None and now > command.expires_at:
                waited_s = now - command.received_mono
                self.reject(
                    command, expired_error(waited_s, "the service", request_id_of(command.payload))
                )
            else:
                commands.append(command)
        return commands

    def _refuse_commands(self) -> None:
        """From now on answer every command (queued or arriving) with shutting_down_error instead of
        queueing it (close(), before the offline status)."""
        with self._lock:
            self._refusing = True
            taken = list(self._commands)
            self._commands.clear()
        for command in taken:
            self.reject(command, shutting_down_error(request_id_of(command.payload)))

    @property
    def queued_commands(self) -> int:
        """Commands received and waiting for drain_commands()."""
        with self._lock:
            return len(self._commands)

    @property
    def dropped_commands(self) -> int:
        """Commands dropped because the queue was full, since start."""
        return self._counters.snapshot()["dropped_queue_full"]

    @property
    def command_counts(self) -> dict[str, int]:
        """How many MQTT commands ended in each outcome (ledger.OUTCOMES), since start."""
        return self._counters.snapshot()

    # ---- publishing --------------------------------------------------------------------------

    def _publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            log.debug("MQTT outgoing queue full; dropped a message for %s", topic)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _current_status(self) -> bytes:
        with self._lock:
            return self._status_payload

    def publish_results(
        self,
        frame_index: int,
        capture_time: float,
        frame_wh: tuple[int, int],
        tracks: Iterable[tuple[str, TrackResult]],
        captured_mono: float | None = None,
    ) -> bool:
        """Encode (with the configured mask encoding) and publish one frame's results.

        captured_mono: the frame's time.monotonic(), for its latency (see results_message).

        While disconnected they are dropped without encoding, with whatever was waiting; while
        a slow or dead link (one paho still calls connected) does not take them they wait in
        the outbox, which keeps the newest RESULTS_WAITING. Every drop is counted.
        Returns True when this frame's results went to paho now.
        """
        if not self._client.is_connected():
            self._results.clear()  # counts what was waiting
            self._results.drop()  # and this frame's results
            self._warn_dropping()
            return False
        payload = encode_results(
            frame_index,
            capture_time,
            frame_wh,
            tracks,
            mask_encoding=self._settings.mask_encoding,
            captured_mono=captured_mono,
        )
        if not self._results.put(payload):
            self._warn_dropping()
        return self._send_results()

    def _warn_dropping(self) -> None:
        if not self._dropping_results:
            self._dropping_results = True
            log.warning(
                "MQTT results are being dropped (the oldest first, %d at most wait) until the "
                "broker takes them again",
                RESULTS_WAITING,
            )

    @property
    def dropped_results(self) -> int:
        """Results never sent since start: dropped oldest first while waiting for the link,
        or queued in paho when the connection broke."""
        return self._results.dropped + self._results_lost

    def flush_results(self) -> bool:
        """Hand results still waiting in the outbox to paho as the in-flight window allows
        (the service calls this every loop: the last results of a track must not wait for the
        next frame with tracks); True when none is left waiting. Any thread."""
        if len(self._results) == 0 and not self._results_in_flight:
            return True
        return self._send_results()

    def _send_results(self, in_flight_limit: int = RESULTS_IN_FLIGHT) -> bool:
        """Hand waiting results to paho while it has room; True when none is left waiting.

        Any thread."""
        qos = self._settings.results_qos
        with self._results_lock:
            in_flight: list[MQTTMessageInfo] = []
            for info in self._results_in_flight:
                if info.rc == MQTTErrorCode.MQTT_ERR_CONN_LOST:
                    self._results_lost += 1
                elif info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not info.is_published():
                    in_flight.append(info)
            self._results_in_flight = in_flight
            while self._client.is_connected() and len(in_flight) < in_flight_limit:
                payload = self._results.take()
                if payload is None:
                    break
                info = self._client.publish(self._topics.results, payload, qos=qos)
                if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
                    self._results.put_back(payload)  # the link went just now
                    break
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    self._results.drop()  # paho's queue is full of acks and errors
                    continue
                in_flight.append(info)  # QoS 1 and 2: paho keeps it for the reconnect
            all_sent = len(self._results) == 0
            dropped, lost = self._results.dropped, self._results_lost
            reported_dropped, reported_lost = self._results_reported
            if all_sent:
                self._results_reported = (dropped, lost)
                self._dropping_results = False
        if all_sent and (dropped, lost) != (reported_dropped, reported_lost):
            log.info(
                "MQTT results flowing again: %d dropped (oldest first) and %d lost with the "
                "broken connection while the broker could not take them (%d since start)",
                dropped - reported_dropped,
                lost - reported_lost,
                dropped + lost,
            )
        return all_sent

    def publish_status(self, report: StatusReport) -> None:
        """Publish the retained `online` status; it is also re-sent after every reconnect."""
        counts = self._counters.snapshot()
        payload = encode_status(
            report,
            commands_dropped=counts["dropped_queue_full"],
            commands=counts,
            results_dropped=self.dropped_results,
        )
        with self._lock:
            self._status_payload = payload
        if self._client.is_connected():
            self._publish(self._topics.status, payload, STATUS_QOS, retain=True)

    def _queue(self, topic: str, payload: bytes, qos: int) -> bool:
        """Publish a QoS 1 message: True when sent or kept for the reconnect (paho keeps QoS>0
        messages while disconnected), False when the outgoing queue was full."""
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            log.debug("MQTT outgoing queue full; could not queue a message for %s", topic)
            return False
        return True

    def _reply(self, command: IncomingCommand, topic: str, payload: bytes, qos: int) -> bool:
        queued = self._queue(topic, payload, qos)
        if command.response_topic is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if command.correlation_data is not None:
                properties.CorrelationData = command.correlation_data
            self._publish(command.response_topic, payload, qos, properties=properties)
        return queued

    def acknowledge(
        self, command: IncomingCommand, track_id: str | None, request_id: str | None
    ) -> None:
        """Publish `{"ack", "track_id", "request_id"}` on the status topic and, when the command
        had an MQTT v5 response topic, there too with its correlation data."""
        self._counters.add("accepted")
        self._reply(
            command, self._topics.status, encode_ack(command.kind, track_id, request_id), ACK_QOS
        )

    def reject(self, command: IncomingCommand, error: CommandError) -> None:
        """Count the command under its outcome and publish the error on the errors topic (and
        on its response topic, if any); over the rate limit it joins the next summary instead.

        Any thread.
        """
        outcome = outcome_of(error)
        self._counters.add(outcome)
        self.flush_errors()
        admitted = self._error_budget.admit(time.monotonic())
        # Over the rate limit the log holds back too: the summary's warning counts them.
        log.log(
            logging.INFO if admitted else logging.DEBUG,
            "MQTT %s command %s: %s",
            command.kind,
            outcome,
            error.reason,
        )
        if not admitted:
            return
        payload = encode_error(error, command.topic, command.payload)
        if not self._reply(command, self._topics.errors, payload, ERRORS_QOS):
            self._error_budget.restore(1)

    def publish_track_dropped(self, track_id: str, reason: str) -> None:
        """Say on the errors topic that a track ended by itself, and why (QoS 1; kept for the
        reconnect while the broker is away)."""
        self._queue(self._topics.errors, encode_track_dropped(track_id, reason), ERRORS_QOS)

    def flush_errors(self) -> None:
        """Publish the summary of the error replies held back, once the rate limit allows it
        (the service calls this every loop; any thread)."""
        count = self._error_budget.take_summary(time.monotonic())
        if count == 0:
            return
        log.warning(
            "MQTT %d more commands dropped or rejected without a reply of their own "
            "(error replies limited to %g per second)",
            count,
            self._error_budget.rate_per_s,
        )
        payload = encode_error_summary(count, self._error_budget.rate_per_s)
        if not self._queue(self._topics.errors, payload, ERRORS_QOS):
            self._error_budget.restore(count)
