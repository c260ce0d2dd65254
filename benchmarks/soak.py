"""Soak: the daemon for N minutes under commands, broker restarts and a viewer; RSS, fds, threads,
CPU, results/s and latency every few seconds, as a table, a PNG plot (cv2) and a JSON.

Never uses the system's broker or a fixed port: it starts its own mosquitto (persistence on, so
sessions survive its restarts) on a free loopback port and `siamedge run` (synthetic 1280x720
clip paced at 30 fps, builtin model on the CPU, 4 tracks, the web view with a bearer token) as
subprocesses, and stops both at the end. While the daemon runs:
  - 4 tracks are started at the beginning and started again whenever one goes missing;
  - a command stream sends one command every --command-interval-s: valid stop/start pairs that
    cycle through the 4 tracks, and invalid ones (malformed JSON, wrong types, a stop of an
    unknown track, a box of negative size, an unknown field, a track id that is a number), each
    with a request_id so its error reply can be matched;
  - one MJPEG viewer reads /stream.mjpeg (token in the Authorization header), reconnecting if cut;
  - the broker is stopped and started again on the same port every --broker-restart-s.
Every --sample-s: the daemon's RSS (VmRSS), open descriptors, threads and CPU use, results
messages per second, latency p50/p99 (receive time - the frame's capture timestamp), replies.

Goals (one that does not apply is printed as info, one with nothing to judge as [ -- ]; neither
is checked):
  always: the daemon stays alive and exits 0 on SIGTERM; results arrive again after every broker
    restart (nothing to judge in a run no longer than --broker-restart-s); open fds and threads
    flat after the warm-up (equal in every sample whose interval holds no broker restart or
    reconnection); every command gets its reply (an ack for the valid ones, an error for the
    invalid ones); every valid command is carried out once (the daemon's log of starts and
    stops against the acks: QoS 1 is at least once, so after a broker restart a command may
    reach the daemon twice, refused then as a duplicate, and a reply may arrive twice); the PNG
    and JSON are written.
  runs of 30 minutes or more only: RSS grows by less than 2 MB after the warm-up (the minute
    after it against the last minute), and results/s of the last window is within 2 % of the
    first (samples with a broker restart left out). A short run cannot tell a leak from the
    allocator settling, and its speed on a shared machine is noise: both are printed only.
The warm-up (and the first and last windows) is 5 minutes, or 20 % of a run shorter than 25.
Exit status 1 when the daemon died or a goal that applies failed.

    python benchmarks/soak.py --minutes 60 [--out DIR] [--sample-s 10] [--broker-restart-s 180]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from siamedge.config import SyntheticSettings
from siamedge.messaging.connection import stop_paho
from siamedge.sources.synthetic import SyntheticClip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.append(str(Path(__file__).resolve().parent))  # tests/test_soak.py loads it by its path

from benchmark_extras import FIXTURES, needs

with needs(FIXTURES, "for the test fixtures' mosquitto broker"):
    from fixtures.mosquitto import HOST, QUIET_LOG_TYPES, Broker, free_port

ROOT = Path(__file__).resolve().parent.parent
SOURCE_FPS = 30.0
CLIP = SyntheticSettings(width=1280, height=720, frames=3000, seed=0)
"""A 100 s loop at 30 fps: the object moves slowly enough for the builtin model to follow."""
TRACKS = tuple(f"soak{index}" for index in range(4))
PART_HEADER = b"Content-Type: image/jpeg"
TOKEN_ENV = "SIAMEDGE_SOAK_WEB_TOKEN"
DAEMON_CLIENT_ID = "siamedge-soak"

WARMUP_S = 300.0
SHORT_RUN_WARMUP_FRACTION = 0.2
LONG_RUN_MIN = 30.0
RSS_GROWTH_LIMIT_MB = 2.0
RSS_WINDOW_S = 60.0
RESULTS_RATE_TOLERANCE = 0.02
START_TIMEOUT_S = 90.0
BROKER_START_TIMEOUT_S = 10.0
RECOVERY_TIMEOUT_S = 30.0
"""A broker restart after which no results arrive for this long fails the recovery goal."""
REPLY_TIMEOUT_S = 30.0
"""How long the end of the run waits for the replies still outstanding."""
MISSING_TRACK_S = 5.0
"""A track absent from fresh results this long after its last command is started again."""
STOP_TIMEOUT_S = 20.0
KB_PER_MB = 1024.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MS = 1000.0


def warmup_seconds(duration_s: float) -> float:
    """5 minutes, or the first 20 % of a run shorter than 25 minutes."""
    return min(WARMUP_S, SHORT_RUN_WARMUP_FRACTION * duration_s)


# ---- the processes ---------------------------------------------------------------------------


def write_daemon_config(folder: Path, mqtt_port: int, web_port: int) -> Path:
    config = {
        "model": {"path": "builtin", "providers": ["cpu"], "intra_op_threads": 1},
        "tracker": {"max_tracks": len(TRACKS)},
        "source": {
            "uri": "synthetic",
            "fps": SOURCE_FPS,
            "synthetic": {
                "width": CLIP.width,
                "height": CLIP.height,
                "frames": CLIP.frames,
                "seed": CLIP.seed,
            },
        },
        "mqtt": {
            "host": HOST,
            "port": mqtt_port,
            "client_id": DAEMON_CLIENT_ID,
            "status_interval_s": 5,
        },
        "web": {"enabled": True, "host": HOST, "port": web_port, "token_env": TOKEN_ENV},
        "service": {"log_level": "INFO"},
    }
    path = folder / "siamedge.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_daemon(config: Path, log_path: Path, token: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, TOKEN_ENV: token, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "siamedge.cli", "run", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


@dataclass(frozen=True)
class ProcessFigures:
    rss_kb: int
    fds: int
    threads: int
    cpu_s: float
    """User + system CPU time so far."""


def process_figures(pid: int) -> ProcessFigures:
    """VmRSS, open descriptors, threads and CPU time of a live process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    times = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return ProcessFigures(
        rss_kb=rss_kb,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=len(os.listdir(f"/proc/{pid}/task")),
        cpu_s=sum(int(ticks) for ticks in times) / CLOCK_TICKS,
    )


# ---- the MQTT side: results, replies, commands -------------------------------------------------


DUPLICATE_PREFIX = "duplicate:"
"""How the daemon's error reply to a command it took already (a QoS 1 redelivery) begins."""


@dataclass
class Command:
    request_id: str
    kind: str
    """`valid` (a reply should be an ack) or the name of the invalid case (an error)."""
    action: str
    """`start` or `stop`: the topic it was sent to."""
    sent_at: float
    replies: list[tuple[str, str | None]] = field(default_factory=list)
    """(`ack` or `error`, reason) of every reply, in the order they arrived."""

    @property
    def outcome(self) -> tuple[str, str | None] | None:
        """The reply to the command's first delivery: the first that is not a duplicate
        refusal (QoS 1 may bring a redelivery's refusal first); None while unanswered."""
        return next((r for r in self.replies if not is_duplicate_refusal(*r)), None)

    @property
    def reply(self) -> str | None:
        return None if self.outcome is None else self.outcome[0]

    @property
    def reason(self) -> str | None:
        return None if self.outcome is None else self.outcome[1]


def is_duplicate_refusal(reply: str, reason: str | None) -> bool:
    return reply == "error" and reason is not None and reason.startswith(DUPLICATE_PREFIX)


@dataclass
class Window:
    """What arrived since the last sample."""

    results: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    acks: int = 0


class SoakClient:
    """A persistent MQTT 5 session (it survives broker restarts, so no reply is lost): counts
    results and their latency, matches acks and errors to the commands by request_id."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.window = Window()
        self.all_latencies_ms: list[float] = []
        self.commands: dict[str, Command] = {}
        self.unmatched_errors: list[dict[str, Any]] = []
        """Errors naming no command that was sent."""
        self.error_summaries = 0
        self.latest_frame: tuple[int, float] | None = None
        """(frame, capture time) of the latest results or status message with a frame."""
        self.connected_since: float | None = None
        """When (monotonic) the connection to the broker came up; None while down."""
        self.latest_tracks: set[str] = set()
        self.results_after_restart: list[float | None] = []
        """Per mark_restart: when (monotonic) the first results message after it arrived."""
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"soak-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        self.client.connect(HOST, port, keepalive=10, clean_start=False, properties=properties)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe([("track/results", 0), ("track/status", 1), ("track/errors", 1)])
        with self.lock:
            self.connected_since = time.monotonic()

    def _on_disconnect(self, *args: Any) -> None:
        with self.lock:
            self.connected_since = None

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        received = time.time()
        if not message.payload:
            return
        data = json.loads(message.payload)
        with self.lock:
            if message.topic == "track/results":
                latency_ms = (received - data["timestamp"]) * MS
                self.window.results += 1
                self.window.latencies_ms.append(latency_ms)
                self.all_latencies_ms.append(latency_ms)
                self.latest_frame = (data["frame"], data["timestamp"])
                self.latest_tracks = {track["track_id"] for track in data["tracks"]}
                if self.results_after_restart and self.results_after_restart[-1] is None:
                    self.results_after_restart[-1] = time.monotonic()
            elif message.topic == "track/errors" and "count" in data:
                self.error_summaries += data["count"]
            elif message.topic == "track/errors":
                self.window.errors += 1
                self._answer(data.get("request_id"), "error", data)
            elif "ack" in data:
                self.window.acks += 1
                self._answer(data.get("request_id"), "ack", data)
            elif data.get("frame") is not None and data.get("frame_timestamp") is not None:
                self.latest_frame = (data["frame"], data["frame_timestamp"])

    def _answer(self, request_id: str | None, reply: str, data: dict[str, Any]) -> None:
        command = self.commands.get(request_id or "")
        if command is None:
            if reply == "error":
                self.unmatched_errors.append(data)
            return
        command.replies.append((reply, data.get("reason")))

    def mark_restart(self) -> None:
        """The broker was restarted: the next results message is recorded as the recovery."""
        with self.lock:
            self.results_after_restart.append(None)

    def take_window(self) -> Window:
        with self.lock:
            window, self.window = self.window, Window()
            return window

    def send(self, topic: str, payload: bytes, request_id: str, kind: str) -> None:
        """Publish at QoS 1; paho keeps it while the broker is down and sends it on reconnect."""
        with self.lock:
            self.commands[request_id] = Command(
                request_id, kind, topic.rpartition("/")[2], time.monotonic()
            )
        self.client.publish(topic, payload, qos=1)

    def unanswered(self) -> list[Command]:
        with self.lock:
            return [c for c in self.commands.values() if c.reply is None]

    def close(self) -> None:
        stop_paho(self.client)


def invalid_commands(serial: int) -> list[tuple[str, str, str, bytes]]:
    """(case, topic, request_id, payload) of each invalid command; every payload carries its
    request_id (the malformed one too: the daemon finds it in the text)."""
    rid = f"soak-i{serial}"
    cases: list[tuple[str, str, str, dict[str, Any] | str]] = [
        ("malformed_json", "track/start", f"{rid}-0", f'{{"request_id": "{rid}-0", "box": [1, 2'),
        ("wrong_type", "track/start", f"{rid}-1", {"box": "abc"}),
        ("unknown_track", "track/stop", f"{rid}-2", {"track_id": f"ghost{serial}"}),
        ("negative_box", "track/start", f"{rid}-3", {"box": [10, 10, -5, 20]}),
        ("unknown_field", "track/stop", f"{rid}-4", {"track_id": "ghost", "colour": "red"}),
        ("not_a_track_id", "track/stop", f"{rid}-5", {"track_id": 7}),
    ]
    return [
        (
            case,
            topic,
            request_id,
            body.encode()
            if isinstance(body, str)
            else json.dumps({"request_id": request_id, **body}).encode(),
        )
        for case, topic, request_id, body in cases
    ]


class CommandStream(threading.Thread):
    """One command every `interval_s`: a stop and then a start of the next track, then four
    invalid commands; between them, any track missing from fresh results is started again."""

    def __init__(self, client: SoakClient, interval_s: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._client = client
        self._interval_s = interval_s
        self._stop_event = stop
        self._clip = SyntheticClip(CLIP)
        self._serial = 0
        self._last_command_at = dict.fromkeys(TRACKS, time.monotonic())
        self.track_restarts = 0
        """Starts sent because a track had gone missing (not part of a stop/start pair)."""

    def current_box(self) -> list[int] | None:
        """The object's box one frame ahead of the daemon (the source is paced, so the frame
        number follows the clock), or None before the daemon reported a frame."""
        with self._client.lock:
            latest = self._client.latest_frame
        if latest is None:
            return None
        frame = latest[0] + round((time.time() - latest[1]) * SOURCE_FPS) + 1
        return list(self._clip.truth(frame % len(self._clip)).box_xywh)

    def start_track(self, track_id: str) -> bool:
        box = self.current_box()
        if box is None:
            return False
        self._serial += 1
        rid = f"soak-v{self._serial}"
        payload = json.dumps({"box": box, "track_id": track_id, "request_id": rid}).encode()
        self._client.send("track/start", payload, rid, "valid")
        self._last_command_at[track_id] = time.monotonic()
        return True

    def stop_track(self, track_id: str) -> None:
        self._serial += 1
        rid = f"soak-v{self._serial}"
        payload = json.dumps({"track_id": track_id, "request_id": rid}).encode()
        self._client.send("track/stop", payload, rid, "valid")
        self._last_command_at[track_id] = time.monotonic()

    def restart_missing(self) -> None:
        now = time.monotonic()
        with self._client.lock:
            present = set(self._client.latest_tracks)
            since = self._client.connected_since
        if since is None or now - since < MISSING_TRACK_S:
            return  # the broker is restarting: the daemon may not be back yet
        for track_id in TRACKS:
            missing = track_id not in present
            quiet = now - self._last_command_at[track_id] > MISSING_TRACK_S
            if missing and quiet and self.start_track(track_id):
                self.track_restarts += 1

    def run(self) -> None:
        step = 0
        invalid: list[tuple[str, str, str, bytes]] = []
        while not self._stop_event.wait(self._interval_s):
            self.restart_missing()
            track_id = TRACKS[(step // 6) % len(TRACKS)]
            phase = step % 6
            if phase == 0:
                self.stop_track(track_id)
            elif phase == 1:
                if not self.start_track(track_id):
                    continue  # no frame reported yet: try again next tick
            else:
                if not invalid:
                    self._serial += 1
                    invalid = invalid_commands(self._serial)
                case, topic, request_id, payload = invalid.pop(0)
                self._client.send(topic, payload, request_id, case)
            step += 1


# ---- the viewer ------------------------------------------------------------------------------


class Viewer(threading.Thread):
    """One MJPEG client with the bearer token: counts JPEG parts; reconnects when cut."""

    def __init__(self, port: int, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._port = port
        self._token = token
        self._stop_event = stop
        self._lock = threading.Lock()
        self._parts = 0
        self.connections = 0
        self.status: int | None = None

    def take_parts(self) -> int:
        """JPEG parts received since the last call."""
        with self._lock:
            parts, self._parts = self._parts, 0
            return parts

    def _count(self, parts: int) -> None:
        with self._lock:
            self._parts += parts

    def run(self) -> None:
        while not self._stop_event.is_set():
            with contextlib.suppress(OSError):
                self._watch()
            self._stop_event.wait(1.0)

    def _watch(self) -> None:
        with socket.create_connection((HOST, self._port), timeout=5.0) as sock:
            request = (
                f"GET /stream.mjpeg HTTP/1.1\r\nHost: {HOST}:{self._port}\r\n"
                f"Authorization: Bearer {self._token}\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(request.encode("ascii"))
            self.connections += 1
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.status = int(head.split(b" ", 2)[1])
            self._count(head.count(PART_HEADER))
            tail = b""
            while not self._stop_event.is_set():
                chunk = sock.recv(256 * 1024)
                if not chunk:
                    return
                # a part header may straddle two reads: count in the last bytes + the new ones
                text = tail + chunk
                self._count(text.count(PART_HEADER) - tail.count(PART_HEADER))
                tail = text[-64:]


# ---- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    threads: int
    cpu_percent: float
    """The daemon's CPU use over the interval (100 = one core)."""
    results_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    error_replies: int
    acks: int
    viewer_parts_per_s: float
    broker_restarts: int
    after_restart: bool = False
    """A broker restart, or the reconnection after it, fell in this sample's interval: its
    fds may be caught between two connections and its rate is short of the outage; set by
    mark_restarts at the end of the run."""


@dataclass
class Restart:
    t_s: float
    recovery_s: float | None = None
    """Restart -> the first results message after it."""


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class RunRecord:
    minutes: float
    sample_s: float
    broker_restart_s: float
    samples: list[Sample] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    daemon_died_at_s: float | None = None
    daemon_exit_status: int | None = None
    commands: dict[str, dict[str, int]] = field(default_factory=dict)
    unanswered: list[str] = field(default_factory=list)
    wrong_replies: list[str] = field(default_factory=list)
    unmatched_errors: int = 0
    redelivered: int = 0
    """Replies refusing a command as a duplicate: the broker delivered it to the daemon again."""
    repeated_replies: int = 0
    """Replies equal to the command's first (the broker delivered the reply, or a rejected
    command, again): QoS 1 is at least once; `executions` shows nothing ran twice."""
    redelivered_wrong: list[str] = field(default_factory=list)
    """Further replies that were neither: an ack after an error, another error."""
    acked: dict[str, int] = field(default_factory=dict)
    """Valid commands acked, per action (start, stop)."""
    executions: dict[str, int] = field(default_factory=dict)
    """Starts and stops the daemon's log shows carried out; equal to `acked` when none ran
    twice."""
    error_summaries: int = 0
    track_restarts: int = 0
    viewer_connections: int = 0
    viewer_status: int | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None


def sort_further_replies(record: RunRecord, command: Command) -> None:
    """Count the replies besides the command's outcome: a duplicate refusal (the command was
    redelivered), the outcome again (the reply was), or wrong (anything else)."""
    outcome = command.outcome
    further = list(command.replies)
    if outcome is not None:
        further.remove(outcome)
    for reply, reason in further:
        if is_duplicate_refusal(reply, reason):
            record.redelivered += 1
        elif (reply, reason) == outcome:
            record.repeated_replies += 1
        else:
            record.redelivered_wrong.append(
                f"{command.request_id}: {reply} {reason!r} after {outcome}"
            )


def executions_in_log(log_text: str) -> dict[str, int]:
    """Starts (and restarts) and stops of tracks, as siamedge.tracks logs each carried out."""
    return {
        "start": len(re.findall(r"siamedge\.tracks: (?:re)?started track ", log_text)),
        "stop": len(re.findall(r"siamedge\.tracks: stopped track\(s\) ", log_text)),
    }


def run_soak(args: argparse.Namespace, out: Path) -> RunRecord:
    duration_s = args.minutes * 60.0
    record = RunRecord(args.minutes, args.sample_s, args.broker_restart_s)
    # persistence: the sessions (the daemon's subscriptions, queued commands) survive restarts
    broker = Broker(
        out,
        persistence=True,
        log_types=QUIET_LOG_TYPES,
        start_timeout_s=BROKER_START_TIMEOUT_S,
        stop_timeout_s=STOP_TIMEOUT_S,
    )
    mqtt_port, web_port = broker.port, free_port()
    token = secrets.token_urlsafe(16)
    broker.start()
    daemon = start_daemon(write_daemon_config(out, mqtt_port, web_port), out / "daemon.log", token)
    stop = threading.Event()
    client = SoakClient(mqtt_port)
    stream = CommandStream(client, args.command_interval_s, stop)
    viewer = Viewer(web_port, token, stop)
    started = time.monotonic()
    try:
        wait_for(lambda: client.latest_frame is not None or daemon.poll() is not None, daemon)
        for track_id in TRACKS:
            stream.start_track(track_id)
        wait_for(lambda: client.latest_tracks >= set(TRACKS), daemon)
        viewer.start()
        stream.start()
        client.take_window()
        started = last_sample = time.monotonic()
        next_sample, next_restart = started + args.sample_s, started + args.broker_restart_s
        cpu_s = process_figures(daemon.pid).cpu_s
        while (now := time.monotonic()) < started + duration_s:
            time.sleep(max(0.0, min(next_sample, next_restart, started + duration_s) - now))
            now = time.monotonic()
            if daemon.poll() is not None:
                record.daemon_died_at_s = now - started
                break
            if now >= next_restart:
                if next_restart < started + duration_s - 1.0:  # none in the last second
                    record.restarts.append(Restart(round(now - started, 1)))
                    broker.stop()
                    client.mark_restart()
                    broker.start()
                next_restart += args.broker_restart_s
            if now >= next_sample:
                sample, cpu_s = take_sample(
                    daemon.pid,
                    client,
                    viewer,
                    t_s=now - started,
                    interval_s=now - last_sample,
                    restarts=len(record.restarts),
                    cpu_before_s=cpu_s,
                )
                record.samples.append(sample)
                print(format_row(sample), flush=True)
                last_sample = now
                next_sample += args.sample_s
        stop.set()
        stream.join()
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while client.unanswered() and time.monotonic() < deadline and daemon.poll() is None:
            time.sleep(0.1)
    finally:
        stop.set()
        if daemon.poll() is None:
            daemon.terminate()
            try:
                record.daemon_exit_status = daemon.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        elif record.daemon_died_at_s is None:
            record.daemon_died_at_s = time.monotonic() - started
        client.close()
        broker.stop()
    with client.lock:
        for restart, received_at in zip(record.restarts, client.results_after_restart, strict=True):
            if received_at is not None:
                restart.recovery_s = received_at - started - restart.t_s
        summarise_commands(record, list(client.commands.values()))
        record.unmatched_errors = len(client.unmatched_errors)
        for command in client.commands.values():
            sort_further_replies(record, command)
        record.error_summaries = client.error_summaries
        record.latency_p50_ms = percentile(client.all_latencies_ms, 0.5)
        record.latency_p99_ms = percentile(client.all_latencies_ms, 0.99)
    mark_restarts(record)
    record.executions = executions_in_log((out / "daemon.log").read_text(errors="replace"))
    record.track_restarts = stream.track_restarts
    record.viewer_connections = viewer.connections
    record.viewer_status = viewer.status
    return record


def wait_for(condition: Callable[[], bool], daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with status {daemon.returncode} at start")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not track {len(TRACKS)} targets in time")
        time.sleep(0.1)


def take_sample(
    pid: int,
    client: SoakClient,
    viewer: Viewer,
    *,
    t_s: float,
    interval_s: float,
    restarts: int,
    cpu_before_s: float,
) -> tuple[Sample, float]:
    """The sample, and the daemon's CPU time now (for the next one)."""
    figures = process_figures(pid)
    window = client.take_window()
    parts = viewer.take_parts()
    sample = Sample(
        t_s=round(t_s, 1),
        rss_mb=round(figures.rss_kb / KB_PER_MB, 2),
        fds=figures.fds,
        threads=figures.threads,
        cpu_percent=round(100.0 * (figures.cpu_s - cpu_before_s) / interval_s, 1),
        results_per_s=round(window.results / interval_s, 2),
        latency_p50_ms=_rounded(percentile(window.latencies_ms, 0.5)),
        latency_p99_ms=_rounded(percentile(window.latencies_ms, 0.99)),
        error_replies=window.errors,
        acks=window.acks,
        viewer_parts_per_s=round(parts / interval_s, 2),
        broker_restarts=restarts,
    )
    return sample, figures.cpu_s


def mark_restarts(record: RunRecord) -> None:
    """Set `after_restart` on every sample whose interval overlaps a broker restart and the
    reconnection after it (up to the first results, plus a second)."""
    samples = []
    for sample in record.samples:
        begin = sample.t_s - record.sample_s
        disturbed = any(
            restart.t_s - 1.0 < sample.t_s
            and restart.t_s + (restart.recovery_s or RECOVERY_TIMEOUT_S) + 1.0 > begin
            for restart in record.restarts
        )
        samples.append(dataclasses.replace(sample, after_restart=disturbed))
    record.samples = samples


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarise_commands(record: RunRecord, commands: list[Command]) -> None:
    record.acked = {"start": 0, "stop": 0}
    for command in commands:
        counts = record.commands.setdefault(command.kind, {"sent": 0, "ack": 0, "error": 0})
        counts["sent"] += 1
        if command.reply is None:
            record.unanswered.append(command.request_id)
            continue
        counts[command.reply] += 1
        if command.kind == "valid" and command.reply == "ack":
            record.acked[command.action] += 1
        expected = "ack" if command.kind == "valid" else "error"
        if command.reply != expected:
            record.wrong_replies.append(f"{command.request_id} ({command.kind}): {command.reason}")


# ---- goals, table, plot ------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    name: str
    applies: bool
    passed: bool
    detail: str
    measured: bool = True
    """False where the run held nothing to judge (no broker restart in a short run): printed as
    [ -- ], never checked (applies is False too)."""


def restart_goal(record: RunRecord) -> Goal:
    """Results after every broker restart; not measured where the run had none."""
    name = "results after every broker restart"
    if not record.restarts:
        duration_s = record.minutes * 60.0
        # a restart is due every broker_restart_s, none in the last second (run_soak)
        short = record.broker_restart_s >= duration_s - 1.0
        return Goal(
            name,
            applies=False,
            passed=False,
            detail=f"no broker restart in a {record.minutes:g}-minute run (one every "
            f"{record.broker_restart_s:g} s: --minutes "
            f"{math.ceil((record.broker_restart_s + 1.0) / 60.0)} or --broker-restart-s "
            f"{duration_s / 2:g} has one)"
            if short
            else "no broker restart: the daemon stopped before the first",
            measured=False,
        )
    return Goal(
        name,
        True,
        all(
            r.recovery_s is not None and r.recovery_s < RECOVERY_TIMEOUT_S for r in record.restarts
        ),
        f"{len(record.restarts)} restarts, recovered after "
        + ", ".join(
            "never" if r.recovery_s is None else f"{r.recovery_s:.1f}" for r in record.restarts
        )
        + " s",
    )


def mean_of(samples: Sequence[Sample], pick: Callable[[Sample], float]) -> float | None:
    return statistics.fmean(pick(s) for s in samples) if samples else None


def check_goals(record: RunRecord, out: Path) -> list[Goal]:
    duration_s = record.minutes * 60.0
    warmup_s = warmup_seconds(duration_s)
    long_run = record.minutes >= LONG_RUN_MIN
    samples = record.samples
    after_warmup = [s for s in samples if s.t_s > warmup_s]
    steady = [s for s in after_warmup if not s.after_restart]
    first = [s for s in samples if s.t_s <= warmup_s and not s.after_restart]
    last = [s for s in steady if s.t_s > duration_s - warmup_s]
    goals = [
        Goal(
            "daemon alive, exit 0 on SIGTERM",
            True,
            record.daemon_died_at_s is None and record.daemon_exit_status == 0,
            f"died at {record.daemon_died_at_s} s"
            if record.daemon_died_at_s is not None
            else f"exit status {record.daemon_exit_status}",
        ),
        restart_goal(record),
    ]
    for name in ("fds", "threads"):
        values = [int(getattr(s, name)) for s in steady]
        goals.append(
            Goal(
                f"{name} flat after warm-up",
                True,
                len(values) >= 2 and max(values) == min(values),
                f"{min(values, default=0)}..{max(values, default=0)} over {len(values)} samples "
                "not right after a restart",
            )
        )
    unanswered, wrong = len(record.unanswered), len(record.wrong_replies)
    goals.append(
        Goal(
            "every command answered as expected",
            True,
            unanswered == 0
            and wrong == 0
            and record.error_summaries == 0
            and record.unmatched_errors == 0
            and not record.redelivered_wrong,
            f"{sum(c['sent'] for c in record.commands.values())} sent, {unanswered} unanswered, "
            f"{wrong} wrong replies, {record.error_summaries} errors only summarised, "
            f"{record.unmatched_errors} errors for no command sent; after broker restarts "
            f"{record.redelivered} refused as duplicates, {record.repeated_replies} replies "
            f"delivered again, {len(record.redelivered_wrong)} wrong further replies",
        )
    )
    goals.append(
        Goal(
            "every valid command carried out once",
            True,
            record.acked.get("start", 0) > 0 and record.executions == record.acked,
            f"acked {record.acked}, carried out (daemon log) {record.executions}",
        )
    )
    # RSS: the minute after the warm-up against the last minute (10 % of a short run each)
    window_s = max(record.sample_s, min(RSS_WINDOW_S, 0.1 * duration_s))
    baseline = [s for s in after_warmup if s.t_s <= warmup_s + window_s]
    end = [s for s in after_warmup if s.t_s > duration_s - window_s]
    rss_start, rss_end = mean_of(baseline, lambda s: s.rss_mb), mean_of(end, lambda s: s.rss_mb)
    growth = None if rss_start is None or rss_end is None else rss_end - rss_start
    goals.append(
        Goal(
            f"RSS growth after warm-up < {RSS_GROWTH_LIMIT_MB} MB",
            long_run,
            growth is not None and growth < RSS_GROWTH_LIMIT_MB,
            "n/a" if growth is None else f"{rss_start:.1f} -> {rss_end:.1f} MB ({growth:+.2f} MB)",
        )
    )
    rate_first = mean_of(first, lambda s: s.results_per_s)
    rate_last = mean_of(last, lambda s: s.results_per_s)
    ratio = None if not rate_first or rate_last is None else rate_last / rate_first
    goals.append(
        Goal(
            f"results/s of the last window within {RESULTS_RATE_TOLERANCE:.0%} of the first",
            long_run,
            ratio is not None and abs(ratio - 1.0) <= RESULTS_RATE_TOLERANCE,
            "n/a" if ratio is None else f"{rate_first:.2f} -> {rate_last:.2f} ({ratio - 1:+.2%})",
        )
    )
    goals.append(
        Goal(
            "PNG and JSON written",
            True,
            (out / "soak.png").is_file() and (out / "soak.json").is_file(),
            str(out),
        )
    )
    return goals


HEADER = (
    f"{'t s':>7} {'RSS MB':>8} {'fds':>4} {'thr':>4} {'CPU %':>6} {'res/s':>6} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'errors':>6} {'acks':>5} {'mjpeg/s':>7} {'restarts':>8}"
)


def format_row(s: Sample) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{s.t_s:7.0f} {s.rss_mb:8.1f} {s.fds:4d} {s.threads:4d} {s.cpu_percent:6.1f} "
        f"{s.results_per_s:6.1f} "
        f"{ms(s.latency_p50_ms):>7} {ms(s.latency_p99_ms):>7} {s.error_replies:6d} "
        f"{s.acks:5d} {s.viewer_parts_per_s:7.1f} {s.broker_restarts:7d}"
        + ("*" if s.after_restart else "")
    )


PLOT_WIDTH, PANEL_HEIGHT, MARGIN_LEFT, MARGIN_RIGHT, PANEL_GAP = 900, 150, 80, 20, 30
BLACK, GREY, LIGHT, BLUE, RED = (
    (0, 0, 0),
    (150, 150, 150),
    (235, 235, 235),
    (180, 90, 20),
    (40, 40, 200),
)


def write_plot(record: RunRecord, path: Path) -> None:
    """RSS, fds, threads and results/s over time, one panel each, drawn with cv2: broker
    restarts as red ticks, the warm-up shaded."""
    panels: list[tuple[str, Callable[[Sample], float]]] = [
        ("RSS MB", lambda s: s.rss_mb),
        ("open fds", lambda s: s.fds),
        ("threads", lambda s: s.threads),
        ("results/s", lambda s: s.results_per_s),
    ]
    top = 40
    height = top + len(panels) * (PANEL_HEIGHT + PANEL_GAP) + 20
    image = np.full((height, PLOT_WIDTH, 3), 255, np.uint8)
    duration_s = record.minutes * 60.0
    font = cv2.FONT_HERSHEY_SIMPLEX
    title = (
        f"siamedge soak: {record.minutes:g} min, 4 tracks, 1280x720 synthetic at 30 fps, "
        f"{len(record.restarts)} broker restarts"
    )
    cv2.putText(image, title, (MARGIN_LEFT, 25), font, 0.5, BLACK, 1, cv2.LINE_AA)
    plot_width = PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT

    def x_of(t_s: float) -> int:
        return MARGIN_LEFT + round(plot_width * t_s / duration_s)

    for index, (label, pick) in enumerate(panels):
        y0 = top + index * (PANEL_HEIGHT + PANEL_GAP)
        y1 = y0 + PANEL_HEIGHT
        cv2.rectangle(image, (MARGIN_LEFT, y0), (x_of(warmup_seconds(duration_s)), y1), LIGHT, -1)
        for restart in record.restarts:
            cv2.line(image, (x_of(restart.t_s), y1 - 8), (x_of(restart.t_s), y1), RED, 1)
        cv2.rectangle(image, (MARGIN_LEFT, y0), (PLOT_WIDTH - MARGIN_RIGHT, y1), GREY, 1)
        cv2.putText(image, label, (MARGIN_LEFT + 5, y0 + 15), font, 0.45, BLACK, 1, cv2.LINE_AA)
        values = [float(pick(s)) for s in record.samples]
        if not values:
            continue
        low, high = min(values), max(values)
        pad = max((high - low) * 0.1, abs(high) * 0.01, 0.5)
        low, high = low - pad, high + pad
        for value in (low, high):
            y = y1 - round(PANEL_HEIGHT * (value - low) / (high - low))
            cv2.putText(
                image, f"{value:.1f}", (5, min(max(y + 4, y0 + 10), y1)), font, 0.4, BLACK, 1,
                cv2.LINE_AA,
            )  # fmt: skip
        points = np.array(
            [
                (x_of(s.t_s), y1 - round(PANEL_HEIGHT * (v - low) / (high - low)))
                for s, v in zip(record.samples, values, strict=True)
            ],
            np.int32,
        )
        cv2.polylines(image, [points], False, BLUE, 1, cv2.LINE_AA)
    y_axis = top + len(panels) * (PANEL_HEIGHT + PANEL_GAP) - PANEL_GAP + 15
    for minute in range(int(record.minutes) + 1):
        if record.minutes > 10 and minute % 5:
            continue
        x = x_of(minute * 60.0)
        cv2.putText(image, f"{minute}", (x - 4, y_axis), font, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.putText(
        image, "minutes", (PLOT_WIDTH - MARGIN_RIGHT - 60, y_axis + 15), font, 0.4, BLACK, 1,
        cv2.LINE_AA,
    )  # fmt: skip
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def report(record: RunRecord, goals: list[Goal]) -> str:
    lines = [
        HEADER,
        *(format_row(s) for s in record.samples),
        "(* a broker restart or its reconnection in the interval)",
        "",
    ]
    lines.append(
        f"latency p50 {record.latency_p50_ms:.1f} ms, p99 {record.latency_p99_ms:.1f} ms "
        "over the run"
        if record.latency_p50_ms is not None and record.latency_p99_ms is not None
        else "no results received"
    )
    for kind, counts in sorted(record.commands.items()):
        lines.append(
            f"commands {kind:>16}: {counts['sent']} sent, {counts['ack']} acks, "
            f"{counts['error']} errors"
        )
    lines.append(
        f"tracks started again after going missing: {record.track_restarts}; viewer connections: "
        f"{record.viewer_connections} (HTTP {record.viewer_status})"
    )
    lines.append("")
    for goal in goals:
        if not goal.measured:
            verdict = " -- "
        elif goal.applies:
            verdict = "PASS" if goal.passed else "FAIL"
        else:
            verdict = "info"
        lines.append(f"[{verdict}] {goal.name}: {goal.detail}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--out", type=Path, default=None, help="default: ./soak-<time>")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--broker-restart-s", type=float, default=180.0)
    parser.add_argument("--command-interval-s", type=float, default=0.3)
    args = parser.parse_args()
    out: Path = args.out or Path(f"soak-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM as on ^C
    print(HEADER, flush=True)
    record = run_soak(args, out)
    write_plot(record, out / "soak.png")
    document = asdict(record)
    (out / "soak.json").write_text(json.dumps(document, indent=1))
    goals = check_goals(record, out)
    document["goals"] = [asdict(goal) for goal in goals]
    (out / "soak.json").write_text(json.dumps(document, indent=1))
    print()
    print(report(record, goals))
    print(f"\nplot {out / 'soak.png'}, samples {out / 'soak.json'}, logs in {out}")
    failed = [g for g in goals if g.applies and not g.passed]
    return 1 if failed or record.daemon_died_at_s is not None else 0


if __name__ == "__main__":
    sys.exit(main())
