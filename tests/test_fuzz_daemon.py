"""Daemon-level fuzzing: 10,000 generated commands (bytes, deep JSON, huge numbers, NaN,
unicode, wrong types, oversize, duplicates, mixed with valid starts and stops) through a real
mosquitto into the daemon subprocess, paced by its replies so the command queue never overflows.

Shown: no crash (alive throughout, exit 0 on SIGTERM), exactly one reply per command (acks and
errors matched by request_id, the rest counted), and a track started first keeps publishing
results with advancing frame numbers the whole time. Seeded; readiness by messages, no sleeps.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from fixtures.daemon import Daemon, daemon_config, unique_prefix, wait_online
from fixtures.mosquitto import Broker, MqttCollector, Subscription
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from siamedge.messaging.connection import stop_paho
from siamedge.messaging.protocol import MAX_COMMAND_BYTES, request_id_of

DaemonFactory = Callable[..., Daemon]
CollectorFactory = Callable[..., MqttCollector]

SEED = 20_240_611
COMMANDS = 10_000
QUEUE_SIZE = 256
WINDOW = 96
"""Commands in flight (sent, not yet answered): well below the queue, so none is dropped."""
CHUNKS = 10
STALL_TIMEOUT_S = 60.0
"""Fails the test when no reply at all arrives for this long (a hang, not a speed limit)."""
ALIVE_CHECK_S = 1.0
"""How often a wait looks whether the daemon is still running."""
KEEP = "fuzz-keeper"
"""The track started before the fuzz; generated ids never take this one, nor stop all."""
POOL = ("fz-a", "fz-b", "fz-c")
NOW = "<now>"
"""Replaced by the time of sending: a fresh `sent_at`."""


# ---- the commands ----------------------------------------------------------------------------


def _junk_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            0,
            -1,
            2**70,
            1.5,
            "",
            "x" * 300,
            "\u202eevil\u0000",
            "🎯",
            [],
            [1, 2],
            {},
            {"a": [None]},
        ]
    )


def _huge_number(rng: random.Random) -> str:
    digits = rng.choice([20, 309, 400, 4000])
    return rng.choice([f"1{'0' * digits}", f"1e{digits}", f"-1e{digits}", f"0.1e-{digits}"])


def generate(rng: random.Random, index: int) -> tuple[str, bytes]:
    """(kind, payload) of command `index`: a bad input of one of many kinds, or now and then a
    valid start or stop of a pool track; every JSON object gets its own request_id."""
    rid = f"fz{index}"
    kind = rng.choice(["start", "stop"])
    shape = rng.randrange(16)
    if shape == 0:  # random bytes, mostly not UTF-8
        return kind, rng.randbytes(rng.randrange(1, 120))
    if shape == 1:  # deep nesting
        depth = rng.choice([100, 1000, 20_000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        box = opener * depth + "1" + closer * depth
        return kind, f'{{"request_id": "{rid}", "box": {box}}}'.encode()
    if shape == 2:  # huge numbers
        return "start", (
            f'{{"request_id": "{rid}", "box": [{_huge_number(rng)}, 1, 10, 10], '
            f'"sent_at": {_huge_number(rng)}}}'
        ).encode()
    if shape == 3:  # NaN / Infinity
        literal = rng.choice(["NaN", "Infinity", "-Infinity"])
        return "start", f'{{"request_id": "{rid}", "box": [1, 2, {literal}, 4]}}'.encode()
    if shape == 4:  # unicode where ids go, lone surrogates included
        text = rng.choice(["trück", "🎯🎯", "\\ud800", "a\\udfffb", "\u0000", "ﬁ", "١٢٣"])
        field = rng.choice(["track_id", "request_id"])
        other = f'"request_id": "{rid}"' if field == "track_id" else f'"track_id": "{POOL[0]}"'
        box = ', "box": [10, 10, 50, 50]' if kind == "start" else ""
        return kind, f'{{"{field}": "{text}", {other}{box}}}'.encode()
    if shape == 5:  # a wrong type in each field
        field = rng.choice(["box", "track_id", "normalized", "sent_at", "all", "request_id"])
        data: dict[str, Any] = {"request_id": rid, "box": [10, 10, 50, 50]}
        data[field] = _junk_value(rng)
        return kind, json.dumps(data).encode()
    if shape == 6:  # oversize
        return kind, json.dumps({"request_id": rid, "pad": "x" * MAX_COMMAND_BYTES}).encode()
    if shape == 7:  # unknown fields
        return kind, json.dumps({"request_id": rid, "bogus": 1, "Box": [1, 1, 1, 1]}).encode()
    if shape == 8:  # truncated or spliced JSON (the request_id is still guessed)
        text = json.dumps({"request_id": rid, "box": [10, 10, 50, 50]}).encode()
        cut = rng.randrange(len(text) - 1)
        return kind, text[:cut] + rng.choice([b"", b"\xff", b"}", b"]]"])
    if shape == 9:  # JSON that is not an object
        return kind, rng.choice([b"[]", b"null", b"42", b'"start"', b"true", b"", b"   "])
    if shape == 10:  # boxes the frame refuses: outside, too big, non-positive, bad normalized
        box = rng.choice([[700, 10, 20, 20], [0, 0, 641, 50], [10, 10, 0, 5], [0.5, 0.5, 2, 0.1]])
        data = {"request_id": rid, "box": box, "normalized": box[2] == 2}
        return "start", json.dumps(data).encode()
    if shape == 11:  # stale, future, or a request_id used before
        if rng.random() < 0.5:
            sent_at = rng.choice([1.0, 1.6e9, 4.0e9])
            return "stop", json.dumps({"request_id": rid, "all": True, "sent_at": sent_at}).encode()
        data = {"request_id": f"fz{rng.randrange(index)}", "track_id": rng.choice(POOL)}
        return "stop", json.dumps(data).encode()
    if shape <= 13:  # a valid start of a pool track (rejected when 4 tracks are active)
        x, y = rng.uniform(0, 500), rng.uniform(0, 350)
        data = {"request_id": rid, "track_id": rng.choice(POOL), "box": [x, y, 80, 60]}
        if rng.random() < 0.3:
            data["sent_at"] = NOW
        return "start", json.dumps(data).encode()
    # a valid stop of a pool track (rejected when it is not active)
    return "stop", json.dumps({"request_id": rid, "track_id": rng.choice(POOL)}).encode()


def commands() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    generated = [generate(rng, index) for index in range(COMMANDS)]
    # a stop of every track would stop KEEP; "all": true appears only with a stale sent_at
    for _, payload in generated:
        assert KEEP.encode() not in payload
    return generated


# ---- a client that publishes, counts replies and watches the results ------------------------


class FuzzClient:
    """Publishes commands at QoS 1 and counts every reply (acks on status, errors) by the
    request_id it carries; records the frame numbers of results that carry KEEP."""

    def __init__(self, broker: Broker, daemon: Daemon) -> None:
        self.daemon = daemon
        self.replies: collections.Counter[str | None] = collections.Counter()
        self.reply_count = 0
        self.summaries: list[dict[str, Any]] = []
        self.frames: list[int] = []
        self.frames_without_keep: list[int] = []
        self.changed = threading.Condition()
        self.client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"fuzzer-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_inflight_messages_set(WINDOW)
        self.client.on_message = self._on_message
        topics = [daemon.topic(name) for name in ("status", "errors", "results")]
        subscription = Subscription(self.client, topics)
        assert subscription.connect(broker, keepalive=30, timeout_s=10.0), (
            "fuzz client could not subscribe"
        )

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        data = json.loads(message.payload)
        with self.changed:
            if message.topic == self.daemon.topic("results"):
                tracks = {track["track_id"] for track in data["tracks"]}
                (self.frames if KEEP in tracks else self.frames_without_keep).append(data["frame"])
            elif message.topic == self.daemon.topic("errors") and "count" in data:
                self.summaries.append(data)
            elif message.topic == self.daemon.topic("errors") or "ack" in data:
                self.replies[data["request_id"]] += 1
                self.reply_count += 1
            else:
                return
            self.changed.notify_all()

    def wait(self, until: Callable[[], bool], what: str) -> None:
        """Wait (under the lock) until `until()`; fail when nothing arrives for a long time."""
        quiet_s = 0.0
        with self.changed:
            while not until():
                if self.daemon.process.poll() is not None:
                    raise AssertionError(
                        f"the daemon exited while waiting for {what}:\n{self.daemon.log[-3000:]}"
                    )
                quiet_s = 0.0 if self.changed.wait(ALIVE_CHECK_S) else quiet_s + ALIVE_CHECK_S
                if quiet_s >= STALL_TIMEOUT_S:
                    raise AssertionError(
                        f"no message for {STALL_TIMEOUT_S} s while waiting for {what}; "
                        f"daemon log:\n{self.daemon.log[-3000:]}"
                    )

    def send(self, kind: str, payload: bytes) -> None:
        self.client.publish(self.daemon.topic(kind), payload, qos=1)

    def close(self) -> None:
        stop_paho(self.client)


def test_ten_thousand_fuzzed_commands_get_one_reply_each_while_tracking_goes_on(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    generated = commands()
    expected = collections.Counter(request_id_of(payload) for _, payload in generated)
    config = daemon_config(mosquitto, unique_prefix())
    config["mqtt"].update(
        {
            "client_id": f"siamedge-fuzz-{uuid.uuid4().hex[:8]}",
            "command_queue_size": QUEUE_SIZE,
            # one reply per command: no summaries (the pacing keeps the rate sustainable)
            "error_replies_per_s": 1_000_000.0,
            "mask_encoding": "none",
        }
    )
    config["service"]["log_level"] = "INFO"
    daemon = daemon_factory(config)
    wait_online(mqtt_collector(mosquitto, [daemon.topic("status")]), daemon)
    fuzzer = FuzzClient(mosquitto, daemon)
    try:
        fuzzer.send("start", json.dumps({"track_id": KEEP, "box": [140, 220, 110, 80]}).encode())
        fuzzer.wait(lambda: fuzzer.replies[None] == 1 and len(fuzzer.frames) >= 3, "the track")
        fuzzer.replies.clear()
        fuzzer.reply_count = 0

        began = time.monotonic()
        frames_at_chunk: list[int] = []
        for index, (kind, payload) in enumerate(generated):
            if index % (COMMANDS // CHUNKS) == 0:
                frames_at_chunk.append(len(fuzzer.frames))
            fuzzer.wait(lambda i=index: i - fuzzer.reply_count < WINDOW, f"reply {index}")
            fuzzer.send(kind, payload.replace(f'"{NOW}"'.encode(), f"{time.time():.3f}".encode()))
            assert daemon.process.poll() is None, f"daemon died at command {index}"
        fuzzer.wait(lambda: fuzzer.reply_count >= COMMANDS, "the last replies")
        elapsed_s = time.monotonic() - began
        frames_at_chunk.append(len(fuzzer.frames))
        # the last results after the fuzz: tracking is still on
        fuzzer.wait(lambda: len(fuzzer.frames) >= frames_at_chunk[-1] + 3, "results after")
        with fuzzer.changed:
            replies, frames = collections.Counter(fuzzer.replies), list(fuzzer.frames)
            summaries, without_keep = list(fuzzer.summaries), list(fuzzer.frames_without_keep)

        status = mqtt_collector(mosquitto, [daemon.topic("status")]).wait_for(
            daemon.topic("status"),
            where=lambda m: sum(m.get("commands", {}).values()) >= COMMANDS + 1,
            timeout_s=STALL_TIMEOUT_S,
        )[0]
        counts = json.loads(status.payload)["commands"]
        print(
            f"\nfuzz: {COMMANDS} commands in {elapsed_s:.1f} s ({COMMANDS / elapsed_s:.0f}/s), "
            f"{sum(replies.values())} replies, counters {counts}, {len(frames)} results "
            f"(frames {frames[0]}..{frames[-1]})"
        )
    finally:
        fuzzer.close()

    assert daemon.process.poll() is None
    assert summaries == []  # every command got a reply of its own
    assert sum(replies.values()) == COMMANDS
    assert replies == expected  # the same request_ids, each as often as it was sent
    assert sum(counts.values()) == COMMANDS + 1
    assert counts["dropped_queue_full"] == 0 and counts["expired"] == 0
    assert counts["accepted"] > 100 and counts["rejected"] > COMMANDS // 2
    assert counts["stale"] > 0 and counts["duplicate"] > 0
    # tracking never stopped: every results message carries KEEP, frames advance, and results
    # arrived during every tenth of the fuzz
    assert without_keep == []
    assert all(b > a for a, b in itertools.pairwise(frames))
    assert all(b > a for a, b in itertools.pairwise(frames_at_chunk))

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
