"""A fleet through bridged brokers: three daemons, each with its own topic prefix on its own edge
mosquitto, every edge bridged (config/mosquitto-bridge-edge.conf, QoS 1) to a central
mosquitto. A client on the central broker starts and stops tracks on each device and receives
each one's results; a command published while a bridge is down arrives once it is back."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures.daemon import Daemon, daemon_config, wait_online
from fixtures.mosquitto import Broker, MqttCollector

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("mqtt_schema_check")]

EXAMPLE_DEVICE = "cam-1"
EXAMPLE_PREFIX = f"siamedge/{EXAMPLE_DEVICE}/"
DEVICES = 3
RESULTS_TIMEOUT_S = 30.0
"""Generous: three daemons share two cores with whatever else runs."""


def bridge_config(example: Path, central: Broker, prefix: str, device: str) -> list[str]:
    """The shipped edge bridge config for one device: its prefix, its client id, the central
    broker's address (comments dropped)."""
    names = {EXAMPLE_PREFIX: prefix, EXAMPLE_DEVICE: device}
    pattern = re.compile("|".join(map(re.escape, names)))  # the prefix first: it holds the name
    lines = []
    for raw in example.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("address "):
            line = f"address {central.host}:{central.port}"
        lines.append(pattern.sub(lambda match: names[match[0]], line))
    return lines


def has_track(track_id: str) -> Callable[[dict[str, object]], bool]:
    def check(message: dict[str, object]) -> bool:
        tracks = message.get("tracks")
        return isinstance(tracks, list) and any(t["track_id"] == track_id for t in tracks)

    return check


def command(track_id: str, **fields: object) -> str:
    return json.dumps({"track_id": track_id, "request_id": uuid.uuid4().hex, **fields})


def test_fleet_through_bridged_brokers(
    repo_root: Path,
    mosquitto_factory: Callable[..., Broker],
    mqtt_collector: Callable[..., MqttCollector],
    daemon_factory: Callable[..., Daemon],
) -> None:
    example = repo_root / "config" / "mosquitto-bridge-edge.conf"
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    central = mosquitto_factory()
    devices = [f"{fleet}-cam-{index}" for index in range(DEVICES)]
    prefixes = [f"{fleet}/{device}/" for device in devices]
    edges = [
        mosquitto_factory(config=bridge_config(example, central, prefix, device))
        for prefix, device in zip(prefixes, devices, strict=True)
    ]
    daemons = [
        daemon_factory(
            daemon_config(
                edge,
                prefix,
                mqtt={"client_id": f"siamedge-{device}", "session_expiry_s": 300},
            )
        )
        for edge, prefix, device in zip(edges, prefixes, devices, strict=True)
    ]
    # One client on the central broker sees the whole fleet.
    client = mqtt_collector(central, [f"{fleet}/+/track/#"])
    for daemon in daemons:
        wait_online(client, daemon)  # status crossed its bridge: the bridge is up

    track_ids = [f"{device}-t" for device in devices]
    box = [280, 200, 80, 80]
    for daemon, track_id in zip(daemons, track_ids, strict=True):
        client.publish(daemon.topic("start"), command(track_id, box=box))
    for daemon, track_id in zip(daemons, track_ids, strict=True):
        client.wait_for(
            daemon.topic("results"), where=has_track(track_id), timeout_s=RESULTS_TIMEOUT_S
        )
        client.wait_for(
            daemon.topic("status"),
            where=lambda m, t=track_id: m.get("ack") == "start" and m.get("track_id") == t,
        )
    for daemon, track_id in zip(daemons, track_ids, strict=True):
        client.publish(daemon.topic("stop"), command(track_id))
    for daemon in daemons:
        client.wait_for(
            daemon.topic("results"), where=lambda m: m["tracks"] == [], timeout_s=RESULTS_TIMEOUT_S
        )

    # Each device's results carry only its own track.
    for daemon, track_id in zip(daemons, track_ids, strict=True):
        seen = {
            track["track_id"]
            for message in client.messages(daemon.topic("results"))
            for track in json.loads(message.payload)["tracks"]
        }
        assert seen == {track_id}, daemon.prefix
    assert not client.messages(daemons[0].topic("errors")), client.messages(
        daemons[0].topic("errors")
    )

    # A bridge goes down (its edge broker stops); a command sent meanwhile waits on the central
    # broker in the bridge's session and arrives after the bridge is back.
    edges[0].stop()
    again = f"{devices[0]}-again"
    client.publish(daemons[0].topic("start"), command(again, box=box))
    edges[0].start()
    client.wait_for(
        daemons[0].topic("results"), where=has_track(again), timeout_s=RESULTS_TIMEOUT_S
    )
    client.publish(daemons[0].topic("stop"), command(again))
    client.wait_for(
        daemons[0].topic("status"),
        where=lambda m: m.get("ack") == "stop" and m.get("track_id") == again,
        timeout_s=RESULTS_TIMEOUT_S,
    )
    for daemon in daemons:
        assert daemon.stop() == 0, daemon.log[-3000:]
