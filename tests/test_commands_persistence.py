"""No command lost across a disconnect, none run twice, none run stale: the daemon subprocess on
a real mosquitto, stopped and restarted, cut off behind a TCP proxy, flooded."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.daemon import Daemon, daemon_config, unique_prefix, wait_online
from fixtures.mosquitto import WAIT_TIMEOUT_S, Broker, MqttCollector
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

DaemonFactory = Callable[..., Daemon]
CollectorFactory = Callable[..., MqttCollector]

pytestmark = pytest.mark.usefixtures("mqtt_schema_check")
REPLY_TIMEOUT_S = 30.0
"""Generous: a restarted daemon loads the model before it takes the queued commands."""
FLOOD = 300
FLOOD_QUEUE_SIZE = 4
FLOOD_REPLIES_PER_S = 20.0
BOX = [200, 150, 120, 90]


def persistent_config(broker: Broker, **mqtt: Any) -> dict[str, Any]:
    """A daemon config with its own client id, so its broker session is its own."""
    config = daemon_config(broker, unique_prefix())
    config["mqtt"].update({"client_id": f"siamedge-test-{uuid.uuid4().hex[:8]}", **mqtt})
    return config


def online_then_stopped(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    **mqtt: Any,
) -> tuple[dict[str, Any], Daemon, MqttCollector]:
    """A daemon config with its own client id, the daemon run until online and then stopped
    with SIGTERM as systemd does (its broker session kept), and a collector of its topics."""
    config = persistent_config(mosquitto, **mqtt)
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    assert daemon.stop() == 0
    return config, daemon, collector


def payloads(collector: MqttCollector, topic: str) -> list[dict[str, Any]]:
    return [json.loads(message.payload) for message in collector.messages(topic)]


def with_request(request_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("request_id") == request_id


def ack(collector: MqttCollector, daemon: Daemon, request_id: str) -> dict[str, Any]:
    message = collector.wait_for(
        daemon.topic("status"),
        where=lambda m: bool(m.get("ack")) and m.get("request_id") == request_id,
        timeout_s=REPLY_TIMEOUT_S,
    )[0]
    payload: dict[str, Any] = json.loads(message.payload)
    return payload


def error(collector: MqttCollector, daemon: Daemon, request_id: str) -> str:
    message = collector.wait_for(
        daemon.topic("errors"), where=with_request(request_id), timeout_s=REPLY_TIMEOUT_S
    )[0]
    reason: str = json.loads(message.payload)["reason"]
    return reason


def status_with(collector: MqttCollector, daemon: Daemon, total: int) -> dict[str, Any]:
    """The first status report in which `total` commands have an outcome."""
    message = collector.wait_for(
        daemon.topic("status"),
        where=lambda m: sum(m.get("commands", {}).values()) >= total,
        timeout_s=REPLY_TIMEOUT_S,
    )[0]
    report: dict[str, Any] = json.loads(message.payload)
    return report


def counters(collector: MqttCollector, daemon: Daemon, total: int) -> dict[str, int]:
    """The status counters once `total` commands have an outcome."""
    counts: dict[str, int] = status_with(collector, daemon, total)["commands"]
    return counts


def track_results(
    collector: MqttCollector, daemon: Daemon, track_id: str, count: int = 3
) -> list[Any]:
    return collector.wait_for(
        daemon.topic("results"),
        count,
        where=lambda m: any(t["track_id"] == track_id for t in m["tracks"]),
        timeout_s=REPLY_TIMEOUT_S,
    )


def start_command(request_id: str, **fields: Any) -> str:
    return json.dumps({"box": BOX, "request_id": request_id, **fields})


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_start_sent_while_the_daemon_is_stopped_runs_after_the_restart(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    protocol: str,
) -> None:
    config, daemon, collector = online_then_stopped(
        mosquitto, daemon_factory, mqtt_collector, protocol=protocol
    )

    collector.publish(daemon.topic("start"), start_command("while-away", track_id="back"))
    again = daemon_factory(config)  # same client id: the broker hands over the session
    assert ack(collector, again, "while-away") == {
        "ack": "start",
        "track_id": "back",
        "request_id": "while-away",
    }
    track_results(collector, again, "back")
    assert "MQTT session resumed" in again.log
    assert counters(collector, again, 1)["accepted"] == 1


def test_a_subscription_left_by_an_earlier_topic_prefix_is_dropped_with_one_warning(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    # The broker's session keeps the subscriptions of the prefix the daemon had before a
    # restart: commands on the old topics reached it and vanished without a word, and every
    # prefix change added two more subscriptions.
    config, old, _ = online_then_stopped(mosquitto, daemon_factory, mqtt_collector)
    config["mqtt"]["topic_prefix"] = unique_prefix()
    again = daemon_factory(config)
    collector = mqtt_collector(mosquitto, again.topics)
    wait_online(collector, again)
    client_id = config["mqtt"]["client_id"]
    forwarded = f"Sending PUBLISH to {client_id} (d0, q1, r0, m"

    def forwarded_on_old_topics() -> int:
        return sum(
            forwarded in line and f"'{old.topic('start')}'" in line
            for line in mosquitto.log.splitlines()
        )

    collector.publish(old.topic("start"), start_command("old-prefix-1"))
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while "which is no command topic of this daemon" not in again.log:
        assert time.monotonic() < deadline, again.log
        time.sleep(0.05)
    assert forwarded_on_old_topics() == 1
    collector.publish(old.topic("start"), start_command("old-prefix-2"))
    collector.publish(again.topic("start"), start_command("new-prefix", track_id="new"))
    assert ack(collector, again, "new-prefix")["track_id"] == "new"  # after the one above
    assert forwarded_on_old_topics() == 1
    assert again.log.count(f"MQTT a message on {old.topic('start')}, which is no command") == 1
    assert not collector.messages(again.topic("errors"))


def test_with_session_expiry_0_a_start_sent_while_stopped_is_lost(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    config, daemon, collector = online_then_stopped(
        mosquitto, daemon_factory, mqtt_collector, session_expiry_s=0
    )
    collector.publish(daemon.topic("start"), start_command("while-away"))

    def online(m: dict[str, Any]) -> bool:
        return bool(m.get("online")) and "model" in m

    reports = sum(1 for m in payloads(collector, daemon.topic("status")) if online(m))
    again = daemon_factory(config)
    # the first report of the new daemon: it is subscribed
    collector.wait_for(again.topic("status"), reports + 1, where=online, timeout_s=REPLY_TIMEOUT_S)
    collector.publish(again.topic("start"), start_command("after", track_id="after"))
    ack(collector, again, "after")
    acks = [m for m in payloads(collector, again.topic("status")) if m.get("ack")]
    assert [m["request_id"] for m in acks] == ["after"]
    assert "MQTT session" not in again.log  # clean sessions: nothing to resume


class CuttableProxy:
    """A TCP proxy to the broker on loopback; cut() drops every connection (the broker sees
    the daemon go) and refuses new ones until restore()."""

    def __init__(self, broker: Broker) -> None:
        self._target = (broker.host, broker.port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut.is_set():  # cut while connecting: cut() has swept the list
                    client.close()
                    upstream.close()
                    continue
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            self._cut.set()
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._server.close()
        self.cut()


@pytest.fixture
def proxy(mosquitto: Broker) -> Iterator[CuttableProxy]:
    running = CuttableProxy(mosquitto)
    yield running
    running.close()


def test_a_start_sent_while_the_connection_is_down_runs_after_the_reconnect(
    mosquitto: Broker,
    proxy: CuttableProxy,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
) -> None:
    config = persistent_config(mosquitto, port=proxy.port)
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)  # straight to the broker
    wait_online(collector, daemon)

    proxy.cut()
    # the broker published the last will: it has noticed, and keeps the session
    collector.wait_for(
        daemon.topic("status"),
        where=lambda m: m.get("reason") == "connection lost",
        timeout_s=REPLY_TIMEOUT_S,
    )
    collector.publish(daemon.topic("start"), start_command("while-cut", track_id="cut"))
    proxy.restore()
    assert ack(collector, daemon, "while-cut")["track_id"] == "cut"
    track_results(collector, daemon, "cut")
    assert daemon.process.poll() is None


def test_old_and_future_sent_at_are_rejected_and_never_start_a_track(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    daemon = daemon_factory(persistent_config(mosquitto))
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    now = time.time()
    collector.publish(daemon.topic("start"), start_command("old", track_id="old", sent_at=now - 60))
    collector.publish(
        daemon.topic("start"), start_command("ahead", track_id="ahead", sent_at=now + 60)
    )
    collector.publish(daemon.topic("start"), start_command("fresh", track_id="fresh", sent_at=now))
    assert ack(collector, daemon, "fresh")["track_id"] == "fresh"

    old = error(collector, daemon, "old")
    assert old.startswith("stale: sent 6") and "s ago" in old
    assert "older than 10 s are not carried out" in old
    ahead = error(collector, daemon, "ahead")
    assert "s in the future" in ahead and "clock skew" in ahead
    counts = counters(collector, daemon, 3)
    assert (counts["stale"], counts["accepted"], sum(counts.values())) == (2, 1, 3)
    # commands are taken in order: the stale ones were done with before "fresh" started
    for message in track_results(collector, daemon, "fresh"):
        assert {t["track_id"] for t in json.loads(message.payload)["tracks"]} == {"fresh"}
    acks = [m for m in payloads(collector, daemon.topic("status")) if m.get("ack")]
    assert [m["request_id"] for m in acks] == ["fresh"]


def test_a_command_whose_message_expiry_passed_while_away_never_arrives(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    config, daemon, collector = online_then_stopped(mosquitto, daemon_factory, mqtt_collector)

    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = 1
    info = collector.client.publish(
        daemon.topic("start"),
        start_command("expiring", track_id="expiring"),
        qos=1,
        properties=properties,
    )
    info.wait_for_publish(WAIT_TIMEOUT_S)
    time.sleep(1.5)  # not readiness: the message's expiry interval has to run out
    collector.publish(daemon.topic("start"), start_command("kept", track_id="kept"))

    again = daemon_factory(config)
    assert ack(collector, again, "kept")["track_id"] == "kept"
    # the broker keeps the order: "expiring" would have come before "kept"
    counts = counters(collector, again, 1)
    assert (counts["accepted"], sum(counts.values())) == (1, 1)
    replies = payloads(collector, again.topic("status")) + payloads(
        collector, again.topic("errors")
    )
    assert not [m for m in replies if m.get("request_id") == "expiring"]


def test_a_start_whose_message_expiry_runs_out_while_it_waits_for_a_frame_is_answered_expired(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    tmp_path: Path,
) -> None:
    # The client library sends its commands with the expiry of its own timeout: a start it
    # had given up on was carried out when a frame came, up to command_max_age_s later.
    config = persistent_config(mosquitto)  # command_max_age_s: 10 s
    config["source"] = {"uri": str(tmp_path / "later.mp4"), "reopen_min_s": 0.2}
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon, with_frames=False)
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = 1
    sent = time.monotonic()
    collector.client.publish(
        daemon.topic("start"), start_command("gave-up"), qos=1, properties=properties
    ).wait_for_publish(WAIT_TIMEOUT_S)
    reason = error(collector, daemon, "gave-up")
    assert time.monotonic() - sent < 5.0  # well before command_max_age_s
    assert re.fullmatch(
        r"expired: its MQTT message expiry interval ran out while it waited \d+\.\d s for a "
        r"frame to start on \(source retrying: .*later\.mp4.*\)",
        reason,
    ), reason
    counts = status_with(collector, daemon, 1)["commands"]
    assert (counts["expired"], sum(counts.values())) == (1, 1)


def test_a_duplicate_request_id_runs_once(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    daemon = daemon_factory(persistent_config(mosquitto))
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    # no track_id: run twice, it would start two tracks (t1, t2)
    for _ in range(2):
        collector.publish(daemon.topic("start"), start_command("dup"))
    collector.publish(daemon.topic("start"), start_command("after", track_id="after"))
    ack(collector, daemon, "after")

    acks = [m for m in payloads(collector, daemon.topic("status")) if m.get("ack")]
    assert [m["request_id"] for m in acks] == ["dup", "after"]
    assert error(collector, daemon, "dup").startswith("duplicate: request_id 'dup'")
    counts = counters(collector, daemon, 3)
    assert (counts["accepted"], counts["duplicate"], sum(counts.values())) == (2, 1, 3)
    status = collector.wait_for(
        daemon.topic("status"),
        where=lambda m: "commands" in m and m["active_tracks"] == 2,
        timeout_s=REPLY_TIMEOUT_S,
    )[0]
    assert set(json.loads(status.payload)["track_ids"]) == {acks[0]["track_id"], "after"}


def test_a_flood_gets_a_reply_or_a_summary_for_every_command_and_tracking_goes_on(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    daemon = daemon_factory(
        persistent_config(
            mosquitto,
            command_queue_size=FLOOD_QUEUE_SIZE,
            error_replies_per_s=FLOOD_REPLIES_PER_S,
        )
    )
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    collector.publish(daemon.topic("start"), start_command("keep", track_id="keep"))
    ack(collector, daemon, "keep")

    # stops of a track that does not exist: each one is rejected, if it is not dropped first
    flood_ids = {f"f{index}" for index in range(FLOOD)}
    infos = [
        collector.client.publish(
            daemon.topic("stop"), json.dumps({"track_id": "nope", "request_id": rid}), qos=1
        )
        for rid in sorted(flood_ids)
    ]
    for info in infos:
        info.wait_for_publish(WAIT_TIMEOUT_S)

    counts = counters(collector, daemon, 1 + FLOOD)
    assert sum(counts.values()) == 1 + FLOOD
    assert counts["accepted"] == 1
    assert counts["dropped_queue_full"] > 0
    assert counts["rejected"] + counts["dropped_queue_full"] == FLOOD

    def answered() -> tuple[int, int]:
        errors = payloads(collector, daemon.topic("errors"))
        alone = sum(1 for e in errors if e.get("request_id") in flood_ids)
        summed = sum(e.get("count", 0) for e in errors if e.get("request_id") is None)
        return alone, summed

    while sum(answered()) < FLOOD:  # the summary of the last held-back replies is on its way
        more = len(collector.messages(daemon.topic("errors"))) + 1
        collector.wait_for(daemon.topic("errors"), more, timeout_s=REPLY_TIMEOUT_S)
    alone, summed = answered()
    assert alone + summed == FLOOD
    assert summed > 0, "the flood should have gone over the reply budget"
    summaries = [e for e in payloads(collector, daemon.topic("errors")) if "count" in e]
    assert all(s["reason"].startswith(f"{s['count']} more commands dropped") for s in summaries)

    seen = len(collector.messages(daemon.topic("results")))
    track_results(collector, daemon, "keep", seen + 10)
    assert daemon.process.poll() is None


def test_a_stop_comes_after_the_start_before_it_even_while_that_start_waits_for_a_frame(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    config, daemon, collector = online_then_stopped(mosquitto, daemon_factory, mqtt_collector)
    # all three come back together after the restart: the stop must not overtake its start
    collector.publish(daemon.topic("start"), start_command("start-1", track_id="one"))
    collector.publish(daemon.topic("stop"), json.dumps({"track_id": "one", "request_id": "stop-1"}))
    collector.publish(daemon.topic("start"), start_command("start-2", track_id="two"))

    again = daemon_factory(config)
    assert ack(collector, again, "stop-1") == {
        "ack": "stop",
        "track_id": "one",
        "request_id": "stop-1",
    }
    assert ack(collector, again, "start-2")["track_id"] == "two"
    report = status_with(collector, again, 3)
    assert report["track_ids"] == ["two"]
    start_1 = [
        m
        for m in payloads(collector, again.topic("status"))
        + payloads(collector, again.topic("errors"))
        if m.get("request_id") == "start-1"
    ]
    # stopped before its first frame (cancelled), or started and then stopped: never both
    assert len(start_1) == 1
    if "reason" in start_1[0]:
        assert start_1[0]["reason"] == (
            "start of track 'one' cancelled by a stop that came before its first frame"
        )
    counts = report["commands"]
    assert (counts["accepted"] + counts["rejected"], sum(counts.values())) == (3, 3)


def test_a_start_that_finds_no_frame_goes_stale_with_the_reason(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    tmp_path: Path,
) -> None:
    config = persistent_config(mosquitto, command_max_age_s=1.0)
    config["source"] = {"uri": str(tmp_path / "later.mp4"), "reopen_min_s": 0.2}
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon, with_frames=False)
    collector.publish(daemon.topic("start"), start_command("waits", track_id="waits"))
    collector.publish(daemon.topic("start"), start_command("sent", sent_at=time.time()))

    for request_id in ("waits", "sent"):
        reason = error(collector, daemon, request_id)
        assert reason.startswith("stale: 1.") and " s old and still no frame to start on" in reason
        assert "(source retrying: " in reason and "later.mp4" in reason
        assert reason.endswith("commands older than 1 s are not carried out")
    counts = status_with(collector, daemon, 2)["commands"]
    assert (counts["stale"], sum(counts.values())) == (2, 2)
    assert daemon.process.poll() is None
