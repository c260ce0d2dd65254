"""Builds a paho client from MqttSettings: protocol version, reconnect backoff, credentials, TLS.

Shared by the service's client and the read-only subscriber; never connects by itself.
"""

from __future__ import annotations

import math

from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from siamedge.config import MqttSettings
from siamedge.messaging.credentials import resolve_password, tls_context

PROTOCOLS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}

NO_MQTT_ANSWER = (
    "the server closed the connection without an MQTT answer (is this port an MQTT broker's? "
    "does the broker expect TLS, mqtt.tls?)"
)
"""Why a connection ended before the broker's CONNACK (paho says "Normal disconnection" or
"Unspecified error"): an HTTP server, an SSH port, or a TLS listener sent a plain CONNECT."""

NO_MQTT_ANSWER_IN_TIME = (
    "the server took the connection but gave no MQTT answer within the keepalive (is this port "
    "an MQTT broker's? does the broker expect TLS, mqtt.tls?)"
)
"""The same when the server keeps the connection open and silent (paho: "Keep alive timeout")."""

KEEPALIVE_TIMEOUT = 141
"""MQTT 5's reason code "Keep alive timeout", which paho also gives when it gives up waiting."""


def unanswered_reason(reason_code: ReasonCode) -> str:
    """Why a connection ended before the broker's CONNACK, in words that point at the cause."""
    return NO_MQTT_ANSWER_IN_TIME if reason_code.value == KEEPALIVE_TIMEOUT else NO_MQTT_ANSWER


def paho_keepalive(keepalive_s: int) -> int:
    """The keepalive to give paho so that a dead link is noticed within 1.5 x `keepalive_s`.

    paho pings after a keepalive without a byte from the broker and gives up only after a
    second one (measured: 10 s for a half-open link at keepalive 5), so it gets half of it,
    rounded up; its loop checks once a second, and 2 x ceil(k / 2) + 1 <= 1.5 x k for k >= 4.
    The broker is told that half too: it expects a packet that often and cuts a silent client
    after 1.5 x that, sooner than keepalive_s.
    """
    return max(1, math.ceil(keepalive_s / 2))


def paho_client(settings: MqttSettings, client_id: str, *, persistent: bool = False) -> Client:
    """A configured, unconnected paho client (callbacks are the caller's).

    persistent: MQTT 3.1.1 asks for clean_session false (MQTT 5 says it in connect: clean_start
    and the session expiry interval); otherwise every session is clean.

    Raises ConfigError for a missing password file/variable or unreadable TLS files.
    """
    protocol = PROTOCOLS[settings.protocol]
    client = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if protocol == MQTTProtocolVersion.MQTTv5 else not persistent,
    )
    # An exception escaping a callback would end paho's network thread for good.
    client.suppress_exceptions = True
    # paho annotates the delays as int but sleeps on float arithmetic; sub-second delays work.
    client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)  # type: ignore[arg-type]
    if settings.username is not None:
        client.username_pw_set(settings.username, resolve_password(settings))
    if settings.tls is not None:
        client.tls_set_context(tls_context(settings.tls))
    return client


def stop_paho(client: Client) -> None:
    """Disconnect, stop paho's network thread and close every socket it holds.

    `loop_stop()` leaves the loopback socket pair that wakes paho's thread open until the client
    is garbage collected (paho.mqtt.python issue #627), which a reference cycle through a bound
    callback delays to an arbitrary collection: two descriptors per client meanwhile, and an
    "unclosed socket" ResourceWarning whenever the sockets are finalized first. paho has no
    public call that closes them; `_reset_sockets` is what its own `__del__` runs.
    """
    client.disconnect()
    client.loop_stop()
    client._reset_sockets()
