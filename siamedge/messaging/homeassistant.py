"""Home Assistant MQTT discovery: the retained config messages that make the service a device
with sensors (state, active tracks, fps) and a binary sensor (tracking).

Pure builders of topics and JSON payloads; never publishes (client.py sends them on connect).

Every entity reads the retained status topic. That topic also carries command acks
(`{"ack": ...}`), the minimal `{"online": true}` sent on connect and the `offline` last will, so
each template looks for the key it needs first: availability renders '' and the binary sensor
renders '' for a message without the key (Home Assistant ignores an empty result), and the
sensors keep their state (`this.state`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from siamedge import __version__
from siamedge.config import HomeAssistantSettings
from siamedge.messaging.masks import JsonObject
from siamedge.messaging.protocol import dumps
from siamedge.messaging.topics import Topics

DISCOVERY_QOS = 1
PAYLOAD_AVAILABLE = "online"
PAYLOAD_NOT_AVAILABLE = "offline"
PAYLOAD_ON = "ON"
PAYLOAD_OFF = "OFF"
MANUFACTURER = "siamedge"
DEVICE_MODEL = "siamedge SiamMask tracker"

Component = Literal["sensor", "binary_sensor"]

_NOT_NODE_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")

AVAILABILITY_TEMPLATE = (
    "{% if value_json is defined and value_json.online is defined %}"
    f"{{{{ '{PAYLOAD_AVAILABLE}' if value_json.online else '{PAYLOAD_NOT_AVAILABLE}' }}}}"
    "{% endif %}"
)
"""`online` / `offline` from the status' `online` field; '' (ignored) for acks."""

_HAS_REPORT = "value_json is defined and value_json.source is defined"
STATE_TEMPLATE = (
    f"{{% if {_HAS_REPORT} %}}"
    "{% if value_json.provider == 'none' %}no model"
    "{% elif not value_json.source.open %}no source"
    "{% elif value_json.active_tracks > 0 %}tracking"
    "{% else %}idle{% endif %}"
    "{% else %}{{ this.state }}{% endif %}"
)
"""`no model`, `no source`, `tracking` or `idle` from a full status report."""
STATES = ("no model", "no source", "tracking", "idle")


def _field_template(field: str) -> str:
    return (
        f"{{% if {_HAS_REPORT} %}}{{{{ value_json.{field} }}}}"
        "{% else %}{{ this.state }}{% endif %}"
    )


ACTIVE_TRACKS_TEMPLATE = _field_template("active_tracks")
FPS_TEMPLATE = _field_template("fps")
TRACKING_TEMPLATE = (
    f"{{% if {_HAS_REPORT} %}}"
    f"{{{{ '{PAYLOAD_ON}' if value_json.active_tracks > 0 else '{PAYLOAD_OFF}' }}}}"
    "{% endif %}"
)
"""`ON` while at least one target is tracked; '' (ignored) for other messages."""


@dataclass(frozen=True)
class DiscoveryMessage:
    """One retained discovery config: `<prefix>/<component>/<node_id>/<object_id>/config`."""

    topic: str
    payload: bytes


@dataclass(frozen=True)
class _Entity:
    component: Component
    object_id: str
    name: str
    template: str
    extra: JsonObject


_ENTITIES = (
    _Entity("sensor", "state", "State", STATE_TEMPLATE, {"icon": "mdi:crosshairs"}),
    _Entity(
        "sensor",
        "active_tracks",
        "Active tracks",
        ACTIVE_TRACKS_TEMPLATE,
        {"icon": "mdi:target", "state_class": "measurement"},
    ),
    _Entity(
        "sensor",
        "fps",
        "Frame rate",
        FPS_TEMPLATE,
        {
            "icon": "mdi:speedometer",
            "unit_of_measurement": "fps",
            "state_class": "measurement",
            "suggested_display_precision": 1,
        },
    ),
    _Entity(
        "binary_sensor",
        "tracking",
        "Tracking",
        TRACKING_TEMPLATE,
        {"icon": "mdi:crosshairs-gps", "payload_on": PAYLOAD_ON, "payload_off": PAYLOAD_OFF},
    ),
)


def node_id_for(settings: HomeAssistantSettings, client_id: str) -> str:
    """The configured node id, or the MQTT client id with disallowed characters as `_`."""
    return settings.node_id or _NOT_NODE_ID_CHARS.sub("_", client_id)


def device_block(
    settings: HomeAssistantSettings, client_id: str, version: str = __version__
) -> JsonObject:
    """`{"identifiers", "name", "manufacturer", "model", "sw_version"}` shared by every entity."""
    node_id = node_id_for(settings, client_id)
    return {
        "identifiers": [f"siamedge_{node_id}"],
        "name": settings.device_name or node_id,
        "manufacturer": MANUFACTURER,
        "model": DEVICE_MODEL,
        "sw_version": version,
    }


def config_topic(prefix: str, component: Component, node_id: str, object_id: str) -> str:
    """`<prefix>/<component>/<node_id>/<object_id>/config`."""
    return f"{prefix}/{component}/{node_id}/{object_id}/config"


def discovery_configs(
    settings: HomeAssistantSettings,
    topics: Topics,
    client_id: str,
    version: str = __version__,
) -> dict[str, JsonObject]:
    """Config topic -> discovery payload of every entity (state, active_tracks, fps, tracking).

    Each payload: name, unique_id, state_topic (the status topic), value_template, availability
    (the status topic with AVAILABILITY_TEMPLATE), device, origin, qos, and per entity icon,
    unit, state_class or payload_on/payload_off.
    """
    node_id = node_id_for(settings, client_id)
    device = device_block(settings, client_id, version)
    availability = [
        {
            "topic": topics.status,
            "value_template": AVAILABILITY_TEMPLATE,
            "payload_available": PAYLOAD_AVAILABLE,
            "payload_not_available": PAYLOAD_NOT_AVAILABLE,
        }
    ]
    configs: dict[str, JsonObject] = {}
    for entity in _ENTITIES:
        topic = config_topic(settings.discovery_prefix, entity.component, node_id, entity.object_id)
        configs[topic] = {
            "name": entity.name,
            "unique_id": f"{node_id}_{entity.object_id}",
            "state_topic": topics.status,
            "value_template": entity.template,
            "availability": availability,
            "device": device,
            "origin": {"name": "siamedge", "sw_version": version},
            "qos": DISCOVERY_QOS,
            **entity.extra,
        }
    return configs


def discovery_messages(
    settings: HomeAssistantSettings,
    topics: Topics,
    client_id: str,
    version: str = __version__,
) -> tuple[DiscoveryMessage, ...]:
    """discovery_configs as compact JSON payloads, ready to publish retained."""
    configs = discovery_configs(settings, topics, client_id, version)
    return tuple(DiscoveryMessage(topic, dumps(config)) for topic, config in configs.items())
