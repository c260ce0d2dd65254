"""Home Assistant MQTT discovery against a real mosquitto: retained configs with the documented
keys, re-sent after a broker restart, and the templates rendered (with Jinja, as Home Assistant
does) on the status messages the service really publishes: online, acks, shutdown, last will."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fixtures.mosquitto import WAIT_TIMEOUT_S, Broker, MqttCollector
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from siamedge import __version__
from siamedge.config import HomeAssistantSettings, MqttSettings, settings_from_mapping
from siamedge.errors import ConfigError
from siamedge.messaging.client import IncomingCommand, MqttClient
from siamedge.messaging.homeassistant import (
    AVAILABILITY_TEMPLATE,
    discovery_configs,
    node_id_for,
)
from siamedge.messaging.protocol import SourceStatus, StatusReport
from siamedge.messaging.topics import Topics

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("mqtt_schema_check")]

Collect = Callable[..., MqttCollector]
ENTITIES = {
    "sensor/{node}/state/config",
    "sensor/{node}/active_tracks/config",
    "sensor/{node}/fps/config",
    "binary_sensor/{node}/tracking/config",
}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}
ENTITY_KEYS = {
    "name",
    "unique_id",
    "state_topic",
    "value_template",
    "availability",
    "device",
    "origin",
    "qos",
}
# Home Assistant renders with undefined values quietly empty; StrictUndefined makes any access
# to a key a message lacks fail here, so every template must check before it reads.
JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined)


def render(template: str, payload: bytes, state: str = "previous") -> str:
    """The template as Home Assistant's MQTT integration renders it on a received payload."""
    variables: dict[str, Any] = {"value": payload.decode(), "this": SimpleNamespace(state=state)}
    with contextlib.suppress(ValueError):  # Home Assistant leaves value_json out then
        variables["value_json"] = json.loads(payload)
    return JINJA.from_string(template).render(variables).strip()


def report(
    *, tracks: tuple[str, ...] = (), source_open: bool = True, loaded: bool = True
) -> StatusReport:
    return StatusReport(
        model="builtin-ncc.onnx" if loaded else "not loaded: missing file",
        provider="CPUExecutionProvider" if loaded else "none",
        source=SourceStatus("synthetic 640x360", source_open, None, (640, 360)),
        fps=14.9,
        dropped_frames=0,
        track_ids=tracks,
        max_tracks=4,
        mask_encoding="rle",
        uptime_s=3.0,
    )


def settings_for(broker: Broker, prefix: str, **homeassistant: Any) -> MqttSettings:
    return MqttSettings(
        host=broker.host,
        port=broker.port,
        client_id=f"siamedge.test:{uuid.uuid4().hex[:8]}",
        topic_prefix=prefix,
        keepalive_s=5,
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
        homeassistant=HomeAssistantSettings(
            enabled=True, discovery_prefix=f"{prefix}homeassistant", **homeassistant
        ),
    )


@pytest.fixture
def make_client() -> Iterator[Callable[[MqttSettings], MqttClient]]:
    clients: list[MqttClient] = []

    def make(settings: MqttSettings) -> MqttClient:
        client = MqttClient(settings)
        clients.append(client)
        client.start()
        assert client.wait_connected(WAIT_TIMEOUT_S), client.connection
        return client

    yield make
    for client in clients:
        client.close()


def configs_on_broker(
    collector_factory: Collect, broker: Broker, settings: MqttSettings
) -> dict[str, Any]:
    """The retained discovery configs a new subscriber (Home Assistant) receives."""
    prefix = settings.homeassistant.discovery_prefix
    node = node_id_for(settings.homeassistant, settings.client_id or "")
    topics = [f"{prefix}/{entity.format(node=node)}" for entity in ENTITIES]
    # The client counts as connected at its SUBACK, maybe before the broker has taken the
    # configs published right after the SUBSCRIBE: first see them arrive at all...
    first = collector_factory(broker, [f"{prefix}/#"])
    for topic in topics:
        first.wait_for(topic)
    # ...then a subscriber that comes later must get every one of them retained.
    late = collector_factory(broker, [f"{prefix}/#"])
    found: dict[str, Any] = {}
    for topic in topics:
        message = late.wait_for(topic)[0]
        assert message.retain, topic
        found[topic.removeprefix(f"{prefix}/")] = json.loads(message.payload)
    return found


def test_discovery_configs_are_retained_with_the_documented_keys(
    mosquitto: Broker,
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., MqttClient],
) -> None:
    settings = settings_for(mosquitto, mqtt_prefix, device_name="Garden camera")
    make_client(settings)
    configs = configs_on_broker(mqtt_collector, mosquitto, settings)
    node = node_id_for(settings.homeassistant, settings.client_id or "")
    assert node == settings.client_id.replace(".", "_").replace(":", "_")  # type: ignore[union-attr]
    status_topic = Topics.for_prefix(mqtt_prefix).status
    unique_ids = set()
    for topic, config in configs.items():
        assert config.keys() >= ENTITY_KEYS, topic
        assert config["state_topic"] == status_topic
        assert config["availability"] == [
            {
                "topic": status_topic,
                "value_template": AVAILABILITY_TEMPLATE,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ]
        assert config["device"].keys() == DEVICE_KEYS
        assert config["device"]["identifiers"] == [f"siamedge_{node}"]
        assert config["device"]["name"] == "Garden camera"
        assert config["device"]["sw_version"] == __version__
        assert config["origin"]["name"] == "siamedge"
        unique_ids.add(config["unique_id"])
    assert len(unique_ids) == len(ENTITIES)
    tracking = configs[f"binary_sensor/{node}/tracking/config"]
    assert (tracking["payload_on"], tracking["payload_off"]) == ("ON", "OFF")
    fps = configs[f"sensor/{node}/fps/config"]
    assert (fps["unit_of_measurement"], fps["state_class"]) == ("fps", "measurement")


def test_templates_on_the_status_messages_the_service_publishes(
    mosquitto: Broker,
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., MqttClient],
) -> None:
    settings = settings_for(mosquitto, mqtt_prefix)
    status_topic = Topics.for_prefix(mqtt_prefix).status
    collector = mqtt_collector(mosquitto, [status_topic])
    client = make_client(settings)
    configs = {
        topic.split("/")[-2]: config
        for topic, config in discovery_configs(
            settings.homeassistant, client.topics, client.client_id
        ).items()
    }

    def templates_on(payload: bytes, state: str = "previous") -> dict[str, str]:
        rendered = {
            name: render(c["value_template"], payload, state) for name, c in configs.items()
        }
        rendered["availability"] = render(AVAILABILITY_TEMPLATE, payload)
        return rendered

    first = collector.wait_for(status_topic)[0].payload  # the minimal `online` of the connect
    assert templates_on(first) == {
        "availability": "online",
        "state": "previous",
        "active_tracks": "previous",
        "fps": "previous",
        "tracking": "",
    }
    cases = [
        (report(tracks=("t1", "t2")), "tracking", "2", "ON"),
        (report(), "idle", "0", "OFF"),
        (report(source_open=False), "no source", "0", "OFF"),
        (report(loaded=False), "no model", "0", "OFF"),
    ]
    for index, (status, state, active, tracking) in enumerate(cases):
        client.publish_status(status)
        payload = collector.wait_for(status_topic, index + 2)[-1].payload
        assert templates_on(payload) == {
            "availability": "online",
            "state": state,
            "active_tracks": active,
            "fps": "14.9",
            "tracking": tracking,
        }

    # An ack on the status topic changes nothing: availability and the binary sensor render
    # '' (Home Assistant ignores that), the sensors keep their state.
    command = IncomingCommand("stop", f"{mqtt_prefix}track/stop", b"{}", None, None, 0.0)
    client.acknowledge(command, "t1", None)
    ack = collector.wait_for(status_topic, where=lambda m: "ack" in m)[0].payload
    assert templates_on(ack, "7") == {
        "availability": "",
        "state": "7",
        "active_tracks": "7",
        "fps": "7",
        "tracking": "",
    }

    client.close()
    offline = collector.wait_for(status_topic, where=lambda m: m.get("online") is False)[0]
    assert render(AVAILABILITY_TEMPLATE, offline.payload) == "offline"
    assert templates_on(offline.payload)["tracking"] == ""


CHILD = """
import sys, time
from siamedge.config import HomeAssistantSettings, MqttSettings
from siamedge.messaging.client import MqttClient
host, port, prefix = sys.argv[1:]
client = MqttClient(MqttSettings(host=host, port=int(port), topic_prefix=prefix,
    client_id="ha-child", keepalive_s=5,
    homeassistant=HomeAssistantSettings(enabled=True, discovery_prefix=prefix + "ha")))
client.start()
print("connected" if client.wait_connected(5) else "failed", flush=True)
time.sleep(60)
"""


def test_the_last_will_makes_the_device_unavailable(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, repo_root: Path
) -> None:
    status_topic = Topics.for_prefix(mqtt_prefix).status
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mosquitto.host, str(mosquitto.port), mqtt_prefix],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"connected"
        collector = mqtt_collector(mosquitto, [status_topic, f"{mqtt_prefix}ha/#"])
        online = collector.wait_for(status_topic, where=lambda m: m["online"])[0]
        assert render(AVAILABILITY_TEMPLATE, online.payload) == "online"
        config = collector.wait_for(f"{mqtt_prefix}ha/binary_sensor/ha-child/tracking/config")[0]
        template = json.loads(config.payload)["availability"][0]["value_template"]
        child.send_signal(signal.SIGKILL)
        child.wait()
        will = collector.wait_for(status_topic, where=lambda m: not m["online"])[0]
        assert json.loads(will.payload)["reason"] == "connection lost"
        assert render(template, will.payload) == "offline"
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_discovery_comes_back_after_a_broker_restart(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., MqttClient],
) -> None:
    broker = mosquitto_factory()
    settings = settings_for(broker, mqtt_prefix)
    client = make_client(settings)
    assert len(configs_on_broker(mqtt_collector, broker, settings)) == len(ENTITIES)
    broker.stop()  # no persistence: the retained configs are gone with it
    broker.start()
    assert client.wait_connected(WAIT_TIMEOUT_S)
    assert len(configs_on_broker(mqtt_collector, broker, settings)) == len(ENTITIES)


def test_node_id_and_prefix_are_checked() -> None:
    ha = HomeAssistantSettings()
    assert node_id_for(ha, "siamedge-cam.01:a") == "siamedge-cam_01_a"
    assert node_id_for(HomeAssistantSettings(node_id="garden"), "ignored") == "garden"
    for bad in (
        {"node_id": "has space"},
        {"discovery_prefix": "ha/#"},
        {"discovery_prefix": "ha/"},
    ):
        with pytest.raises(ConfigError, match=r"mqtt\.homeassistant"):
            settings_from_mapping({"mqtt": {"homeassistant": bad}}, "test")
