"""Network faults injected for real (issue 11): mosquitto in a network namespace behind a veth
pair, the daemon on the host, and a 60 s partition, 20 % packet loss, 500 ms delay (each way)
and a half-open link put between them. For each: the commands published before and during the
fault run exactly once after it (a duplicate request_id is answered as a duplicate), results
resume, the retained status is right again; where the link is cut the daemon notices within
1.5 x keepalive, the broker's last will says so, and the daemon's memory stays flat while
results are dropped oldest first and counted. Each test prints what it measured (run with -s).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.daemon import Daemon, daemon_config, unique_prefix
from fixtures.mosquitto import Broker, free_port, validate_published
from fixtures.netlab import Namespace

DaemonFactory = Callable[..., Daemon]

KEEPALIVE_S = 5
"""The smallest keepalive the config accepts: short faults, tight bounds."""
DETECTION_BOUND_S = 1.5 * KEEPALIVE_S
"""The issue's bound: the daemon notices a dead link within 1.5 x keepalive of the fault."""
PARTITION_S = 60.0
SHORT_FAULT_S = 15.0
"""Longer than the daemon's and the broker's detection (mosquitto's took up to 10 s here), so a
cut link is noticed on both ends."""
SETTLE_TIMEOUT_S = 60.0
"""Generous: how long the daemon may take to come online, reconnect and answer."""
RSS_GROWTH_BOUND_MIB = 32.0
"""The daemon's resident memory may grow this much at most while the broker is unreachable."""
SAMPLE_S = 0.05
BOX = [200, 150, 120, 90]
ONLINE_MARK = "MQTT connected to"
LOST_MARK = "MQTT disconnected from"
DROPPED_LINE = re.compile(
    r"MQTT results flowing again: (\d+) dropped \(oldest first\) and (\d+) lost"
)

_INSIDE_CLIENT = r"""
import json, sys, threading, uuid
import time
from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

host, port, topic_filter = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()

def emit(record):
    with lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe(topic_filter, qos=1)

def on_subscribe(client, userdata, mid, reason_codes, properties):
    emit({"event": "subscribed"})

def on_message(client, userdata, message):
    payload = message.payload.decode("utf-8", "replace")
    emit({"at": time.time(), "topic": message.topic, "payload": payload})

client = Client(CallbackAPIVersion.VERSION2, client_id="inside-" + uuid.uuid4().hex[:8],
                protocol=MQTTProtocolVersion.MQTTv5)
client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
client.connect(host, port, keepalive=60)
client.loop_start()
for line in sys.stdin:
    command = json.loads(line)
    client.publish(command["topic"], command["payload"], qos=1).wait_for_publish(10)
    emit({"event": "puback", "id": command["id"]})
"""


@dataclass(frozen=True)
class Received:
    """One message the inside client got: when (unix seconds), where, and its JSON."""

    at: float
    topic: str
    payload: dict[str, Any]


class InsideClient:
    """A paho client in the broker's namespace, on its loopback: the faults on the veth never
    reach it, so it publishes commands and sees every message while the daemon is cut off."""

    def __init__(self, namespace: Namespace, port: int, topic_filter: str) -> None:
        self._process = namespace.popen(
            [sys.executable, "-c", _INSIDE_CLIENT, "127.0.0.1", str(port), topic_filter],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._changed = threading.Condition()
        self._messages: list[Received] = []
        self._events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait(lambda: any(e["event"] == "subscribed" for e in self._events), "subscribe")

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if not line.endswith(b"\n"):
                break  # cut short when the process ended
            record = json.loads(line)
            with self._changed:
                if "event" in record:
                    self._events.append(record)
                elif record["payload"]:  # an empty payload clears a retained message
                    payload = json.loads(record["payload"])
                    self._messages.append(Received(record["at"], record["topic"], payload))
                self._changed.notify_all()

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._process.poll() is not None:
                    raise AssertionError(f"inside client: no {what} in {SETTLE_TIMEOUT_S} s")
                self._changed.wait(min(remaining, 1.0))

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        command_id = uuid.uuid4().hex
        assert self._process.stdin is not None
        line = json.dumps({"id": command_id, "topic": topic, "payload": json.dumps(payload)})
        self._process.stdin.write(line.encode() + b"\n")
        self._process.stdin.flush()
        self._wait(lambda: {"event": "puback", "id": command_id} in self._events, "PUBACK")

    def all_messages(self) -> list[Received]:
        with self._changed:
            return list(self._messages)

    def messages(
        self, topic: str, where: Callable[[Received], bool] = lambda _: True
    ) -> list[Received]:
        with self._changed:
            return [m for m in self._messages if m.topic == topic and where(m)]

    def wait_for(
        self, topic: str, where: Callable[[Received], bool], count: int = 1
    ) -> list[Received]:
        """The first `count` messages on `topic` that satisfy `where`."""
        self._wait(lambda: len(self.messages(topic, where)) >= count, f"{count} on {topic}")
        return self.messages(topic, where)[:count]

    def close(self) -> None:
        """End of input ends the process; closes the pipes."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=SETTLE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join()
        self._process.stdout.close()


@pytest.fixture
def broker_in_namespace(netns: Namespace, tmp_path: Path) -> Iterator[tuple[Broker, int]]:
    """mosquitto inside `netns`, listening on its veth address (for the daemon) and on its
    loopback (for the inside client): the broker and the loopback port."""
    inner_port = free_port()
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Broker(
        workdir,
        host=netns.address,
        command_prefix=netns.exec_prefix,
        config=[f"listener {inner_port} 127.0.0.1"],
    )
    broker.start()
    yield broker, inner_port
    broker.stop()


@dataclass
class Fault:
    """What a test injects: `inject`/`heal` on the namespace, for `duration_s`; `cuts` when
    nothing gets through meanwhile (the daemon must notice and drop results)."""

    name: str
    inject: Callable[[Namespace], None]
    heal: Callable[[Namespace], None]
    duration_s: float
    cuts: bool


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"no VmRSS for pid {pid}")


def start(request_id: str, track_id: str) -> dict[str, Any]:
    return {"box": BOX, "request_id": request_id, "track_id": track_id}


def is_online(m: Received) -> bool:
    """A full status report that says online (not an ack, not the first bare `online`)."""
    return m.payload.get("online") is True and "model" in m.payload


def is_offline(m: Received) -> bool:
    return m.payload.get("online") is False


def ack_of(request_id: str) -> Callable[[Received], bool]:
    return lambda m: bool(m.payload.get("ack")) and m.payload.get("request_id") == request_id


def with_track(track_id: str, after: float = 0.0) -> Callable[[Received], bool]:
    """Results that arrived after `after` (unix seconds) and hold `track_id`."""
    return lambda m: m.at > after and any(t["track_id"] == track_id for t in m.payload["tracks"])


@dataclass
class Measured:
    """What one fault did, as the test saw it (times in seconds, unix clock)."""

    fault_at: float
    healed_at: float
    lost_at: float | None = None
    """When the daemon's log first said the broker was lost."""
    reconnected_at: float | None = None
    resumed_at: float = 0.0
    """When the first results with the track started during the fault arrived."""
    during_sent_at: float = 0.0
    """When the command published during the fault had its PUBACK from the broker."""
    rss_before_mib: float = 0.0
    rss_peak_mib: float = 0.0

    def after_fault(self, at: float | None) -> str:
        return "-" if at is None else f"{at - self.fault_at:.1f} s"

    def after_heal(self, at: float | None) -> str:
        return "-" if at is None else f"{at - self.healed_at:.1f} s"


def exercise(
    fault: Fault,
    netns: Namespace,
    broker: Broker,
    inner_port: int,
    daemon_factory: DaemonFactory,
) -> None:
    """Run the daemon, start a track, inject the fault with commands around it, heal, then
    check and print what happened."""
    config = daemon_config(broker, unique_prefix())
    config["mqtt"].update(
        {"keepalive_s": KEEPALIVE_S, "client_id": f"siamedge-fault-{uuid.uuid4().hex[:8]}"}
    )
    daemon = daemon_factory(config)
    inside = InsideClient(netns, inner_port, f"{daemon.prefix}#")
    try:
        measured = inject(fault, netns, daemon, inside)
        check(fault, measured, daemon, inside)
    finally:
        inside.close()


def inject(fault: Fault, netns: Namespace, daemon: Daemon, inside: InsideClient) -> Measured:
    """Commands before, at and during the fault; what the daemon's log and memory did."""
    status, results = daemon.topic("status"), daemon.topic("results")
    inside.wait_for(status, is_online)
    inside.publish(daemon.topic("start"), start("before", "a"))
    inside.wait_for(results, with_track("a"))
    rss_before = rss_mib(daemon.process.pid)
    lost_lines, online_lines = daemon.log.count(LOST_MARK), daemon.log.count(ONLINE_MARK)

    # One command right before the fault (it may or may not get through before the link
    # goes), one during it, and the same one again: a QoS 1 redelivery in all but name.
    inside.publish(daemon.topic("start"), start("edge", "e"))
    fault.inject(netns)
    measured = Measured(fault_at=time.time(), healed_at=0.0, rss_before_mib=rss_before)
    inside.publish(daemon.topic("start"), start("during", "b"))
    measured.during_sent_at = time.time()
    inside.publish(daemon.topic("start"), start("during", "b"))
    next_rss = 0.0
    while time.time() < measured.fault_at + fault.duration_s:
        if measured.lost_at is None and daemon.log.count(LOST_MARK) > lost_lines:
            measured.lost_at = time.time()
        if time.monotonic() >= next_rss:
            rss = rss_mib(daemon.process.pid)
            measured.rss_peak_mib = max(measured.rss_peak_mib, rss)
            next_rss = time.monotonic() + 0.5
        time.sleep(SAMPLE_S)
    fault.heal(netns)
    measured.healed_at = time.time()

    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not inside.messages(results, with_track("b", measured.healed_at)):
        assert time.monotonic() < deadline, f"no results after healing:\n{daemon.log[-3000:]}"
        if measured.reconnected_at is None and daemon.log.count(ONLINE_MARK) > online_lines:
            measured.reconnected_at = time.time()
        time.sleep(SAMPLE_S)
    measured.resumed_at = inside.messages(results, with_track("b", measured.healed_at))[0].at
    return measured


def check(fault: Fault, measured: Measured, daemon: Daemon, inside: InsideClient) -> None:
    """Exactly once, results and status back; for a cut link: noticed in time, the broker's
    will, memory flat, results dropped oldest first and counted. Prints the figures."""
    status, results = daemon.topic("status"), daemon.topic("results")
    # A second of results after the resumption, so a late second execution would show.
    inside.wait_for(results, with_track("b", measured.resumed_at), count=20)
    final = inside.wait_for(status, lambda m: m.at > measured.resumed_at and is_online(m))[0]
    acks = {rid: len(inside.messages(status, ack_of(rid))) for rid in ("before", "edge", "during")}
    duplicates = inside.messages(
        daemon.topic("errors"), lambda m: m.payload.get("request_id") == "during"
    )
    # The broker sends "edge" again after the reconnect when the fault swallowed the daemon's
    # PUBACK (QoS 1, at least once): then it is refused as a duplicate too, never run twice.
    edge_redelivered = inside.messages(
        daemon.topic("errors"), lambda m: m.payload.get("request_id") == "edge"
    )
    frames = sorted({m.payload["frame"] for m in inside.messages(results, with_track("a"))})
    span = frames[-1] - frames[0] + 1
    counted = DROPPED_LINE.findall(daemon.log)
    dropped, lost = sum(int(d) for d, _ in counted), sum(int(n) for _, n in counted)
    will = inside.messages(
        status, lambda m: measured.fault_at < m.at < measured.healed_at and is_offline(m)
    )
    will_at = will[0].at if will else None
    acked_at = inside.messages(status, ack_of("during"))[0].at
    during = inside.messages(
        results, lambda m: measured.fault_at < m.at < measured.healed_at and with_track("a")(m)
    )
    print(
        f"\n{fault.name} for {fault.duration_s:.0f} s:",
        f"the daemon logged the broker lost {measured.after_fault(measured.lost_at)}",
        f"after the fault (bound {DETECTION_BOUND_S} s),",
        f"the broker published its will {measured.after_fault(will_at)};",
        f"after healing the daemon reconnected in {measured.after_heal(measured.reconnected_at)},",
        f"results resumed in {measured.after_heal(measured.resumed_at)};",
        f"acks {acks}, duplicate replies {len(duplicates)}",
        f"(+ {len(edge_redelivered)} to the edge command redelivered);",
        f"the command sent during the fault acked {acked_at - measured.during_sent_at:.1f} s",
        f"after it was sent; {len(during)} results arrived during the fault;",
        f"frames of track a missing at the broker: {span - len(frames)} of {span}",
        "(the capture's own skips included),",
        f"the daemon counted {dropped} dropped oldest first, {lost} lost with the connection;",
        f"RSS {measured.rss_before_mib:.1f} MiB before, {measured.rss_peak_mib:.1f} MiB at most",
        "during the fault",
    )
    for message in inside.all_messages():
        validate_published(message.topic, json.dumps(message.payload).encode())
    assert acks == {"before": 1, "edge": 1, "during": 1}, daemon.log[-3000:]
    assert [m.payload["reason"][:10] for m in duplicates] == ["duplicate:"]
    assert [m.payload["reason"][:10] for m in edge_redelivered] in ([], ["duplicate:"])
    counts = final.payload["commands"]
    assert (counts["accepted"], counts["duplicate"]) == (3, 1 + len(edge_redelivered))
    assert set(final.payload["track_ids"]) >= {"a", "b", "e"}
    if not fault.cuts:
        assert during, "a slow or lossy link still carries results"
        return
    assert measured.lost_at is not None, f"the daemon never logged the loss:\n{daemon.log[-3000:]}"
    assert measured.lost_at - measured.fault_at <= DETECTION_BOUND_S
    assert will, "the broker published no `offline` (its last will) during the fault"
    assert will[0].payload["reason"] == "connection lost"
    assert measured.rss_peak_mib - measured.rss_before_mib <= RSS_GROWTH_BOUND_MIB
    assert dropped > 0, "the results dropped while the broker was unreachable are counted"
    assert final.payload["results_dropped"] > 0, "and the status topic says so"
    # Oldest first: what comes after the reconnect is recent, not the backlog of the fault.
    first_after = inside.messages(results, with_track("a", measured.healed_at))[0]
    assert first_after.payload["timestamp"] > measured.healed_at - fault.duration_s / 2


_ECHO_SERVER = r"""
import socket, sys, threading
server = socket.create_server((sys.argv[1], 0))
port = server.getsockname()[1]
datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
datagrams.bind((sys.argv[1], port))

def echo_datagrams():
    while True:
        data, sender = datagrams.recvfrom(64)
        datagrams.sendto(data, sender)

threading.Thread(target=echo_datagrams, daemon=True).start()
print(port, flush=True)
connection, _ = server.accept()
while data := connection.recv(4096):
    connection.sendall(data)
"""
NETLAB_DELAY_MS = 200.0
NETLAB_SILENCE_S = 1.0
NETLAB_DATAGRAMS = 200
"""Fewer than a default socket receive buffer holds (256 small datagrams), so only the fault
loses them."""
NETLAB_LOSS_PERCENT = 20.0
"""Each way: 36 % of the echoed datagrams are lost, 72 of 200 expected, sigma about 7."""


def datagrams_echoed(address: str, port: int) -> int:
    """Send NETLAB_DATAGRAMS to the echo server; how many come back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for index in range(NETLAB_DATAGRAMS):
            sender.sendto(index.to_bytes(4, "big"), (address, port))
        echoed: set[bytes] = set()
        sender.settimeout(NETLAB_SILENCE_S)
        with contextlib.suppress(TimeoutError):
            while len(echoed) < NETLAB_DATAGRAMS:
                echoed.add(sender.recv(64))
        return len(echoed)


def test_netlab_faults_reach_a_tcp_connection_and_leave_nothing_behind(netns: Namespace) -> None:
    """The tool itself: each fault changes what a UDP and a TCP echo across the pair do, and
    heal() and close() undo everything."""
    server = netns.popen(
        [sys.executable, "-c", _ECHO_SERVER, netns.address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with socket.create_connection((netns.address, port), timeout=SETTLE_TIMEOUT_S) as echo:

            def round_trip_s() -> float:
                started = time.monotonic()
                echo.sendall(b"x")
                assert echo.recv(1) == b"x"
                return time.monotonic() - started

            round_trip_s()
            netns.impair(loss_percent=NETLAB_LOSS_PERCENT)
            lost = NETLAB_DATAGRAMS - datagrams_echoed(netns.address, port)
            assert 30 < lost < 115, lost
            netns.impair(delay_ms=NETLAB_DELAY_MS)
            assert round_trip_s() >= 2 * NETLAB_DELAY_MS / 1000.0  # each way
            netns.drop_all()
            echo.settimeout(NETLAB_SILENCE_S)
            echo.sendall(b"y")
            with pytest.raises(TimeoutError):  # silence, no RST: a half-open connection
                echo.recv(1)
            netns.heal()
            echo.settimeout(SETTLE_TIMEOUT_S)
            assert echo.recv(1) == b"y"  # TCP retransmitted it once the link was back
            netns.link_down()
            echo.settimeout(NETLAB_SILENCE_S)
            echo.sendall(b"z")
            with pytest.raises(TimeoutError):
                echo.recv(1)
            netns.link_up()
            echo.settimeout(SETTLE_TIMEOUT_S)
            assert echo.recv(1) == b"z"
        server.wait(SETTLE_TIMEOUT_S)
    finally:  # a failure above must not leave the echo server or its pipe behind
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    netns.impair(delay_ms=NETLAB_DELAY_MS, loss_percent=50.0)  # close() also ends these
    netns.close()
    assert (
        netns.name
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    )
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert netns.host_interface not in links.stdout
    assert netns.host_interface[:-1] not in links.stdout  # the host's delay-line tap too


def test_a_60_s_partition(
    netns: Namespace,
    broker_in_namespace: tuple[Broker, int],
    daemon_factory: DaemonFactory,
) -> None:
    fault = Fault(
        "partition (link down)", Namespace.link_down, Namespace.link_up, PARTITION_S, True
    )
    exercise(fault, netns, *broker_in_namespace, daemon_factory)


def test_a_half_open_link(
    netns: Namespace,
    broker_in_namespace: tuple[Broker, int],
    daemon_factory: DaemonFactory,
) -> None:
    fault = Fault(
        "half-open (all packets dropped silently)",
        Namespace.drop_all,
        Namespace.heal,
        SHORT_FAULT_S,
        True,
    )
    exercise(fault, netns, *broker_in_namespace, daemon_factory)


def test_20_percent_packet_loss(
    netns: Namespace,
    broker_in_namespace: tuple[Broker, int],
    daemon_factory: DaemonFactory,
) -> None:
    fault = Fault(
        "20 % loss each way",
        lambda namespace: namespace.impair(loss_percent=20.0),
        Namespace.heal,
        SHORT_FAULT_S,
        False,
    )
    exercise(fault, netns, *broker_in_namespace, daemon_factory)


def test_500_ms_delay(
    netns: Namespace,
    broker_in_namespace: tuple[Broker, int],
    daemon_factory: DaemonFactory,
) -> None:
    fault = Fault(
        "500 ms delay each way",
        lambda namespace: namespace.impair(delay_ms=500.0),
        Namespace.heal,
        SHORT_FAULT_S,
        False,
    )
    exercise(fault, netns, *broker_in_namespace, daemon_factory)
