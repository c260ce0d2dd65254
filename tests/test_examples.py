"""The examples in docs/examples/ against what the daemon publishes and accepts: the Node-RED
flow's topics, the result fields its function reads and the commands it sends; the Home Assistant
automation's and card's entity ids (as Home Assistant names the discovered entities), states,
topics and commands. The daemon runs once on a private mosquitto, configured as the examples say,
and the fields and entities are read from its messages."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.daemon import Daemon, daemon_config, wait_online
from fixtures.mosquitto import Broker, MqttCollector

from siamedge.messaging.homeassistant import PAYLOAD_OFF, PAYLOAD_ON, STATES
from siamedge.messaging.protocol import parse_start, parse_stop
from siamedge.messaging.topics import Topics

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("mqtt_schema_check")]

DEVICE = "cam-1"
"""The examples' device: `mqtt.topic_prefix: siamedge/cam-1/`,
`mqtt.homeassistant: {enabled: true, device_name: cam-1}`."""
TOPICS = Topics.for_prefix(f"siamedge/{DEVICE}/")
DISCOVERY_PREFIX = "homeassistant"
FRAME_WH = (640, 480)
RESULTS_TIMEOUT_S = 30.0
ENTITY_ID = re.compile(r"\b(?:binary_sensor|sensor)\.[a-z0-9_]+")
# Accesses in the Node-RED function: `results.<field>` / `msg.payload.<field>` on a results
# message, `track.<field>` on one of its tracks.
RESULTS_FIELD = re.compile(r"\b(?:results|msg\.payload)\.(\w+)")
TRACK_FIELD = re.compile(r"\btrack\.(\w+)")


@pytest.fixture(scope="module")
def examples(repo_root: Path) -> Path:
    return repo_root / "docs" / "examples"


def strings(node: object) -> Iterator[str]:
    """Every string (keys too) in a parsed JSON/YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def mappings(node: object) -> Iterator[dict[str, Any]]:
    """Every mapping in a parsed JSON/YAML document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from mappings(value)
    elif isinstance(node, list):
        for value in node:
            yield from mappings(value)


def check_command(topic: str, payload: str) -> None:
    """The payload is a command the daemon accepts on `topic`."""
    if topic == TOPICS.start:
        parse_start(payload.encode(), FRAME_WH)
    else:
        assert topic == TOPICS.stop, topic
        parse_stop(payload.encode())


def slugify(text: str) -> str:
    """Home Assistant's entity id slug for ASCII names: lower case, `_` between words."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def entity_ids(discovery: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Entity id -> discovery config, as Home Assistant names an MQTT entity with a name on a
    device: `<component>.<slug(device name + entity name)>`."""
    return {
        f"{topic.split('/')[1]}.{slugify(config['device']['name'] + ' ' + config['name'])}": config
        for topic, config in discovery.items()
    }


def run_function(func: str, payload: object) -> Any:
    """A Node-RED function node's code run by node.js on `msg = {payload}`: what it returns."""
    script = (
        f"const msg = {{payload: {json.dumps(payload)}}};\n"
        f"const result = (function (msg) {{\n{func}\n}})(msg);\n"
        "process.stdout.write(JSON.stringify(result));\n"
    )
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def node_red_flow(examples: Path) -> list[dict[str, Any]]:
    flow: list[dict[str, Any]] = json.loads((examples / "node-red-flow.json").read_text())
    return flow


def ha_documents(examples: Path) -> dict[str, Any]:
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(examples.glob("homeassistant-*.yaml"))
    }


def test_node_red_flow_topics_and_commands(examples: Path) -> None:
    flow = node_red_flow(examples)
    nodes = {node["id"]: node for node in flow}
    (results_in,) = [node for node in flow if node["type"] == "mqtt in"]
    assert results_in["topic"] == TOPICS.results
    assert results_in["datatype"] == "json"
    outs = [node for node in flow if node["type"] == "mqtt out"]
    assert {node["topic"] for node in outs} == {TOPICS.start, TOPICS.stop}
    for node in outs:
        assert (node["qos"], node["retain"]) == ("1", "false"), node["name"]
    sent = 0
    for inject in (node for node in flow if node["type"] == "inject"):
        for target in (nodes[wire] for wires in inject["wires"] for wire in wires):
            if target["type"] == "mqtt out":
                assert inject["payloadType"] == "json"
                check_command(target["topic"], inject["payload"])
                sent += 1
    assert sent == len(outs)
    (function,) = [node for node in flow if node["type"] == "function"]
    assert function["id"] in results_in["wires"][0]
    assert {"center", "size"} <= set(TRACK_FIELD.findall(function["func"]))


def test_homeassistant_examples_commands_and_states(examples: Path) -> None:
    documents = ha_documents(examples)
    assert set(documents) == {"homeassistant-automation.yaml", "homeassistant-card.yaml"}
    published = 0
    for name, document in documents.items():
        for mapping in mappings(document):
            if {"topic", "payload"} <= set(mapping):
                assert (mapping.get("qos"), mapping.get("retain")) == (1, False), name
                check_command(mapping["topic"], mapping["payload"])
                published += 1
            entity = mapping.get("entity_id")
            state = mapping.get("to", mapping.get("state"))
            if isinstance(entity, str) and isinstance(state, str):
                allowed = STATES if entity.startswith("sensor.") else (PAYLOAD_ON, PAYLOAD_OFF)
                # binary sensors have the states `on`/`off` for payload_on/payload_off
                assert state in {value.lower() for value in allowed}, (name, entity, state)
    assert published == len(documents)


def test_examples_against_the_daemon(
    examples: Path,
    mosquitto_factory: Callable[..., Broker],
    mqtt_collector: Callable[..., MqttCollector],
    daemon_factory: Callable[..., Daemon],
) -> None:
    broker = mosquitto_factory()  # its own broker: the examples' topics are fixed
    collector = mqtt_collector(broker, [f"siamedge/{DEVICE}/track/#", f"{DISCOVERY_PREFIX}/#"])
    daemon = daemon_factory(
        daemon_config(
            broker,
            f"siamedge/{DEVICE}/",
            mqtt={
                "client_id": f"siamedge-{DEVICE}",
                "homeassistant": {"enabled": True, "device_name": DEVICE},
            },
        )
    )
    wait_online(collector, daemon)

    # Home Assistant: every entity id the examples use is one the discovery configs make, and
    # the card shows all of them.
    discovery = {
        message.topic: json.loads(message.payload)
        for message in collector.messages()
        if message.topic.startswith(f"{DISCOVERY_PREFIX}/") and message.payload
    }
    entities = entity_ids(discovery)
    assert len(entities) == len(discovery) == 4, sorted(discovery)
    for config in entities.values():
        assert config["state_topic"] == TOPICS.status
    for name, document in ha_documents(examples).items():
        used = {found for text in strings(document) for found in ENTITY_ID.findall(text)}
        assert used, name
        assert used <= set(entities), (name, used - set(entities), sorted(entities))
        if name == "homeassistant-card.yaml":
            assert used == set(entities)

    # Node-RED: the flow's start command, sent as the flow sends it, gives results whose
    # fields are those its function reads; its stop command stops the track.
    flow = node_red_flow(examples)
    injects = {node["wires"][0][0]: node["payload"] for node in flow if node["type"] == "inject"}
    outs = {node["id"]: node["topic"] for node in flow if node["type"] == "mqtt out"}
    commands = {outs[node_id]: payload for node_id, payload in injects.items()}
    track_id = json.loads(commands[TOPICS.start])["track_id"]
    collector.publish(TOPICS.start, commands[TOPICS.start])
    (message,) = collector.wait_for(
        TOPICS.results,
        where=lambda results: any(t["track_id"] == track_id for t in results["tracks"]),
        timeout_s=RESULTS_TIMEOUT_S,
    )
    results = json.loads(message.payload)
    (function,) = [node for node in flow if node["type"] == "function"]
    assert set(RESULTS_FIELD.findall(function["func"])) <= set(results)
    assert set(TRACK_FIELD.findall(function["func"])) <= set(results["tracks"][0])
    if shutil.which("node") is not None:  # run the function as Node-RED would
        (per_track,) = run_function(function["func"], results)
        track = next(t for t in results["tracks"] if t["track_id"] == track_id)
        produced = next(m for m in per_track if m["topic"] == track_id)["payload"]
        assert (produced["center"], produced["size"]) == (track["center"], track["size"])
    collector.publish(TOPICS.stop, commands[TOPICS.stop])
    collector.wait_for(
        TOPICS.results, where=lambda m: m["tracks"] == [], timeout_s=RESULTS_TIMEOUT_S
    )
    assert not collector.messages(TOPICS.errors)
    assert daemon.stop() == 0, daemon.log[-3000:]
