"""The broker access control example (config/mosquitto-acl.conf) on a real mosquitto with logins:
the daemon runs as its user; a dashboard reads results but its commands never reach the
daemon; a controller's commands do."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures.daemon import Daemon, current_frame, daemon_config, truth_box, wait_online
from fixtures.mosquitto import Broker, MqttCollector, write_password_file
from paho.mqtt.reasoncodes import ReasonCode

from siamedge.client import Client, ClientError
from siamedge.config import MqttSettings

MakeBroker = Callable[..., Broker]
Collect = Callable[..., MqttCollector]
MakeDaemon = Callable[..., Daemon]

PASSWORDS = {"siamedge": "daemon-pw", "controller": "controller-pw", "dashboard": "dashboard-pw"}
PREFIX = ""
"""The shipped ACL names the topics without a prefix; the test's broker is its own."""
NOT_AUTHORIZED = 0x87


def _acl_broker(factory: MakeBroker, repo_root: Path, tmp_path: Path) -> Broker:
    passwords = write_password_file(tmp_path / "siamedge.passwd", PASSWORDS)
    acl = repo_root / "config" / "mosquitto-acl.conf"
    return factory(anonymous=False, password_file=passwords, acl_file=acl)


def _as(collect: Collect, broker: Broker, user: str, topics: list[str]) -> MqttCollector:
    return collect(broker, topics, username=user, password=PASSWORDS[user])


def _refused(code: ReasonCode | None) -> bool:
    return code is not None and code.value == NOT_AUTHORIZED


def test_dashboards_read_results_and_only_controllers_steer_the_daemon(
    mosquitto_factory: MakeBroker,
    mqtt_collector: Collect,
    daemon_factory: MakeDaemon,
    repo_root: Path,
    tmp_path: Path,
) -> None:
    broker = _acl_broker(mosquitto_factory, repo_root, tmp_path)
    config = daemon_config(
        broker, PREFIX, mqtt={"username": "siamedge", "password_env": "SIAMEDGE_TEST_MQTT_PW"}
    )
    daemon = daemon_factory(config, env={"SIAMEDGE_TEST_MQTT_PW": PASSWORDS["siamedge"]})
    controller = _as(
        mqtt_collector,
        broker,
        "controller",
        [daemon.topic("status"), daemon.topic("errors"), daemon.topic("results")],
    )
    dashboard = _as(
        mqtt_collector, broker, "dashboard", [daemon.topic("results"), daemon.topic("status")]
    )
    status = wait_online(controller, daemon)
    assert "u'siamedge'" in broker.log  # the daemon logged in as its user

    # The dashboard's start is refused by the broker ...
    frame = current_frame(status)
    sneaky = {"box": list(truth_box(frame)), "track_id": "d1", "request_id": "from-dashboard"}
    assert _refused(dashboard.publish(daemon.topic("start"), json.dumps(sneaky)))
    assert _refused(dashboard.publish(daemon.topic("stop"), json.dumps({"all": True})))
    # ... and it cannot forge what the daemon says either.
    assert _refused(dashboard.publish(daemon.topic("results"), b'{"tracks": []}'))

    # The controller's start, sent after the refused ones, is tracked. The broker forwards
    # and the daemon answers in order: had the dashboard's start reached the daemon, its
    # answer would have come before this one.
    wanted = {"box": list(truth_box(frame)), "track_id": "c1", "request_id": "from-controller"}
    assert not _refused(controller.publish(daemon.topic("start"), json.dumps(wanted)))
    controller.wait_for(
        daemon.topic("status"), where=lambda m: m.get("request_id") == wanted["request_id"]
    )
    answers = controller.messages(daemon.topic("status")) + controller.messages(
        daemon.topic("errors")
    )
    assert not [m for m in answers if b"from-dashboard" in m.payload]

    # The dashboard reads the results of the controller's track; there never was a `d1`.
    results = dashboard.wait_for(
        daemon.topic("results"),
        where=lambda m: any(t["track_id"] == "c1" for t in m["tracks"]),
    )
    assert results
    seen = [json.loads(m.payload) for m in dashboard.messages(daemon.topic("results"))]
    assert all(t["track_id"] != "d1" for message in seen for t in message["tracks"])
    assert daemon.process.poll() is None


def test_dashboards_may_not_read_commands_or_errors(
    mosquitto_factory: MakeBroker, mqtt_collector: Collect, repo_root: Path, tmp_path: Path
) -> None:
    broker = _acl_broker(mosquitto_factory, repo_root, tmp_path)
    watched = ["track/start", "track/stop", "track/errors", "track/status"]
    # mosquitto grants the subscription and withholds what the ACL does not let the user read.
    dashboard = _as(mqtt_collector, broker, "dashboard", watched)
    controller = _as(mqtt_collector, broker, "controller", [])
    daemon = _as(mqtt_collector, broker, "siamedge", [])
    assert not _refused(controller.publish("track/start", b'{"box": [1, 1, 9, 9]}'))
    assert not _refused(controller.publish("track/stop", b'{"all": true}'))
    assert not _refused(daemon.publish("track/errors", b'{"reason": "x"}'))
    assert not _refused(daemon.publish("track/status", b'{"marker": 1}'))
    # Delivered in order: once the status arrived, nothing sent before it is still on its way.
    dashboard.wait_for("track/status", where=lambda m: m.get("marker") == 1)
    assert [m.topic for m in dashboard.messages()] == ["track/status"]
    # Neither may a controller pose as the daemon.
    assert _refused(controller.publish("track/status", b'{"online": false}'))
    assert _refused(controller.publish("track/results", b'{"tracks": []}'))
    assert _refused(controller.publish("homeassistant/sensor/x/config", b"{}"))


def test_the_client_library_says_when_the_broker_refuses_its_command(
    mosquitto_factory: MakeBroker, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MQTT 5's PUBACK says the ACL refused the start; the client waited out its timeout and
    # then asked whether the daemon ran with this topic prefix.
    broker = _acl_broker(mosquitto_factory, repo_root, tmp_path)
    monkeypatch.setenv("SIAMEDGE_TEST_MQTT_PW", PASSWORDS["dashboard"])
    settings = MqttSettings(
        host=broker.host,
        port=broker.port,
        topic_prefix=PREFIX,
        username="dashboard",
        password_env="SIAMEDGE_TEST_MQTT_PW",
    )
    with Client(settings) as client, pytest.raises(ClientError) as caught:
        client.start((1, 1, 9, 9), timeout_s=10)
    assert str(caught.value) == (
        "the broker refused the command on 'track/start': Not authorized (the broker's ACL "
        "does not let this login publish there)"
    )
