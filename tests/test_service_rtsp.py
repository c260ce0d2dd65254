"""The daemon on a real RTSP server: tracking as good as from the file, and outages survived.

The server streams the synthetic test clip (written to a video file) as H.264, one media per
client from frame 0, so the daemon's frame n is clip frame n (modulo its length) and
fixtures.daemon.truth_box applies. The server is killed and restarted, or frozen (SIGSTOP), under
a running track: the status topic reports the loss within read_timeout_s + 1 s, no frame steps
the track while the source is down, the same track goes on within 5 s of the server coming
back, and the daemon (the same process) leaks neither threads nor descriptors. Behind a lossy
link (the server in a network namespace, tests/fixtures/netlab.py) the track goes on or the
status says the source is down, and the test prints what got through.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fixtures.daemon import (
    CLIP,
    TEST_FPS,
    Daemon,
    box_iou,
    current_frame,
    daemon_config,
    truth_box,
    unique_prefix,
    wait_online,
)
from fixtures.mosquitto import Broker, MqttCollector
from fixtures.netlab import Namespace
from fixtures.rtsp import RtspServer
from paho.mqtt.client import MQTTMessage

pytestmark = pytest.mark.usefixtures("mqtt_schema_check")

READ_TIMEOUT_S = 1.0
REPORT_MARGIN_S = 1.0
"""Issue 10: the loss is on the status topic within read_timeout_s + 1 s."""
BACK_WITHIN_S = 5.0
"""Issue 10: frames and tracks resume within 5 s of the server coming back."""
WAIT_S = 60.0
"""For what is not timed (start-up, the first frames, a track's first results)."""
TRACKED_FRAMES = 60
MAX_IOU_GAP = 0.05
"""Issue 10: mean IoU through RTSP within 0.05 of the same clip read from the file."""
MIN_MEAN_IOU = 0.7
"""The tracker does track (the same bar as test_service_tracking), so equal IoUs mean something."""
SETTLED_FRAMES = int(3 * TEST_FPS)
"""Frames in real time from here on (a new RTSP client first gets a burst)."""
CYCLES = 10
LOSS_PERCENT = 20.0
LOSSY_S = 10.0
"""How long the link loses packets."""
LEAK_TOLERANCE = 2
"""Threads or descriptors that may come and go between two samples; a leak of one per outage
would exceed it after CYCLES outages."""


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The daemon's synthetic test clip (640x480, 300 frames) as a 20 fps MJPG .avi."""
    path = tmp_path_factory.mktemp("clip") / "synthetic.avi"
    width, height = CLIP.size_wh
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), TEST_FPS, (width, height))
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {path}"
    try:
        for index in range(len(CLIP)):
            writer.write(CLIP.frame(index))
    finally:
        writer.release()
    return path


@pytest.fixture
def clip_server(rtsp_server_factory: Callable[..., RtspServer], clip_file: Path) -> RtspServer:
    return rtsp_server_factory("--file", str(clip_file), "--fps", str(int(TEST_FPS)))


@pytest.fixture
def clip_server_in_namespace(
    netns: Namespace, rtsp_server_factory: Callable[..., RtspServer], clip_file: Path
) -> RtspServer:
    return rtsp_server_factory(
        "--file",
        str(clip_file),
        "--fps",
        str(int(TEST_FPS)),
        "--address",
        netns.address,
        prefix=netns.exec_prefix,
    )


def rtsp_config(mosquitto: Broker, uri: str) -> dict[str, Any]:
    return daemon_config(
        mosquitto,
        unique_prefix(),
        source={"uri": uri, "read_timeout_s": READ_TIMEOUT_S, "open_timeout_s": 10.0},
    )


@pytest.fixture
def running(
    mosquitto: Broker,
    daemon_factory: Callable[..., Daemon],
    mqtt_collector: Callable[..., MqttCollector],
) -> Iterator[Callable[[str], tuple[Daemon, MqttCollector]]]:
    """`running(uri)`: a daemon on uri, online with frames, and a collector of its topics."""
    started: list[Daemon] = []

    def make(uri: str) -> tuple[Daemon, MqttCollector]:
        daemon = daemon_factory(rtsp_config(mosquitto, uri))
        started.append(daemon)
        collector = mqtt_collector(mosquitto, daemon.topics)
        wait_online(collector, daemon)
        return daemon, collector

    yield make
    for daemon in started:
        assert daemon.stop() == 0, daemon.log[-3000:]


def payload_of(message: MQTTMessage) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(message.payload)
    return payload


def start_track(collector: MqttCollector, daemon: Daemon, track_id: str) -> None:
    """Start track_id on the object's true box of the coming frame and wait for the ack."""
    # current_frame() assumes frames come in real time; an RTSP client first gets the frames
    # FFmpeg buffered while probing the stream (over a second's worth) at once.
    collector.wait_for(
        daemon.topic("status"),
        where=lambda m: (m.get("frame") or 0) >= SETTLED_FRAMES,
        timeout_s=WAIT_S,
    )
    status = [payload_of(m) for m in collector.messages(daemon.topic("status"))]
    latest = [s for s in status if s.get("frame") is not None][-1]
    box = truth_box(current_frame(latest) + 1)
    request_id = f"start-{track_id}"
    command = {"box": list(box), "track_id": track_id, "request_id": request_id}
    collector.publish(daemon.topic("start"), json.dumps(command))
    collector.wait_for(
        daemon.topic("status"),
        where=lambda m: m.get("ack") == "start" and m.get("request_id") == request_id,
        timeout_s=WAIT_S,
    )


def with_track(track_id: str, after: float = 0.0) -> Callable[[MQTTMessage], bool]:
    """Results messages with track_id received after `after` (time.monotonic())."""
    return lambda m: (
        m.timestamp > after
        and any(track["track_id"] == track_id for track in payload_of(m)["tracks"])
    )


def wait_message(
    collector: MqttCollector, topic: str, where: Callable[[MQTTMessage], bool], timeout_s: float
) -> MQTTMessage:
    """The first message on topic (by arrival) that satisfies where (on the message itself)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in collector.messages(topic):
            if where(message):
                return message
        time.sleep(0.02)
    pytest.fail(f"no matching message on {topic} within {timeout_s} s")


def source_lost(after: float) -> Callable[[MQTTMessage], bool]:
    """A status report received after `after` saying the source is not delivering."""

    def lost(message: MQTTMessage) -> bool:
        status = payload_of(message)
        return message.timestamp > after and "source" in status and not status["source"]["open"]

    return lost


def mean_iou(daemon: Daemon, collector: MqttCollector) -> float:
    start_track(collector, daemon, "obj")
    results = collector.wait_for(
        daemon.topic("results"),
        TRACKED_FRAMES + 1,
        where=lambda m: any(t["track_id"] == "obj" for t in m["tracks"]),
        timeout_s=WAIT_S,
    )
    ious = []
    for message in results[1:]:  # the first result is the start box itself
        payload = payload_of(message)
        ious.append(box_iou(payload["tracks"][0]["bbox"], truth_box(payload["frame"])))
    return float(np.mean(ious))


def counts_of(pid: int) -> tuple[int, int]:
    """(threads, open descriptors) of a process."""
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def test_tracking_through_rtsp_is_as_good_as_from_the_file(
    running: Callable[[str], tuple[Daemon, MqttCollector]],
    clip_file: Path,
    clip_server: RtspServer,
) -> None:
    ious = []
    for uri in (str(clip_file), clip_server.url):
        daemon, collector = running(uri)
        ious.append(mean_iou(daemon, collector))
        assert daemon.stop() == 0  # one at a time: they share the MQTT client id
    from_file, through_rtsp = ious
    print(f"\nmean IoU over {TRACKED_FRAMES} frames: file {from_file:.3f}, RTSP {through_rtsp:.3f}")

    assert from_file >= MIN_MEAN_IOU
    assert abs(through_rtsp - from_file) <= MAX_IOU_GAP, (through_rtsp, from_file)


def test_server_killed_and_restarted_ten_times_under_a_track(
    running: Callable[[str], tuple[Daemon, MqttCollector]], clip_server: RtspServer
) -> None:
    daemon, collector = running(clip_server.url)
    pid = daemon.process.pid
    start_track(collector, daemon, "obj")
    status_topic, results_topic = daemon.topic("status"), daemon.topic("results")
    wait_message(collector, results_topic, with_track("obj"), WAIT_S)
    counts = [counts_of(pid)]
    lost_after, back_after = [], []

    for _ in range(CYCLES):
        clip_server.kill()
        killed_at = time.monotonic()
        lost = wait_message(collector, status_topic, source_lost(killed_at), WAIT_S)
        clip_server.start()
        back_at = time.monotonic()
        resumed = wait_message(collector, results_topic, with_track("obj", back_at), WAIT_S)
        lost_after.append(lost.timestamp - killed_at)
        back_after.append(resumed.timestamp - back_at)
        # The track stays while the source is down, and no frame steps it meanwhile: after the
        # loss is reported, at most the frame that was waiting in the capture slot is processed.
        assert payload_of(lost)["track_ids"] == ["obj"]
        assert payload_of(lost)["source"]["error"]
        stepped_while_down = [
            payload_of(m)["frame"]
            for m in collector.messages(results_topic)
            if lost.timestamp < m.timestamp < back_at
        ]
        assert len(stepped_while_down) <= 1, stepped_while_down
        # One more frame, so the sample is taken with the source streaming again.
        wait_message(collector, results_topic, with_track("obj", resumed.timestamp), WAIT_S)
        counts.append(counts_of(pid))

    threads, descriptors = zip(*counts, strict=True)
    print(
        f"\n{CYCLES} kills: loss reported after {min(lost_after):.2f}..{max(lost_after):.2f} s",
        f"(bound {READ_TIMEOUT_S + REPORT_MARGIN_S:g} s), the track back",
        f"{min(back_after):.2f}..{max(back_after):.2f} s after the server (bound {BACK_WITHIN_S:g}",
        f"s); threads {threads}, descriptors {descriptors}",
    )
    assert daemon.process.poll() is None and daemon.process.pid == pid  # never restarted
    assert max(lost_after) <= READ_TIMEOUT_S + REPORT_MARGIN_S, lost_after
    assert max(back_after) <= BACK_WITHIN_S, back_after
    assert threads[-1] <= threads[0] + LEAK_TOLERANCE, threads
    assert descriptors[-1] <= descriptors[0] + LEAK_TOLERANCE, descriptors


def test_frozen_server_is_reported_stalled_and_the_track_goes_on_after(
    running: Callable[[str], tuple[Daemon, MqttCollector]], clip_server: RtspServer
) -> None:
    daemon, collector = running(clip_server.url)
    start_track(collector, daemon, "obj")
    status_topic, results_topic = daemon.topic("status"), daemon.topic("results")
    wait_message(collector, results_topic, with_track("obj"), WAIT_S)

    clip_server.freeze()
    frozen_at = time.monotonic()
    lost = wait_message(collector, status_topic, source_lost(frozen_at), WAIT_S)
    clip_server.thaw()
    thawed_at = time.monotonic()
    resumed = wait_message(collector, results_topic, with_track("obj", thawed_at), WAIT_S)

    print(
        f"\nfrozen: reported {lost.timestamp - frozen_at:.2f} s after SIGSTOP",
        f"(bound {READ_TIMEOUT_S + REPORT_MARGIN_S:g} s) as {payload_of(lost)['source']['state']};",
        f"the track back {resumed.timestamp - thawed_at:.2f} s after SIGCONT",
    )
    assert lost.timestamp - frozen_at <= READ_TIMEOUT_S + REPORT_MARGIN_S
    source = payload_of(lost)["source"]
    assert source["state"] in ("stalled", "retrying")
    assert "stalled" in source["error"]
    assert payload_of(lost)["track_ids"] == ["obj"]
    assert payload_of(resumed)["frame"] > payload_of(lost)["frame"]
    assert daemon.process.poll() is None


def test_lossy_link_keeps_the_track_going_or_reports_the_source_down(
    running: Callable[[str], tuple[Daemon, MqttCollector]],
    clip_server_in_namespace: RtspServer,
    netns: Namespace,
) -> None:
    daemon, collector = running(clip_server_in_namespace.url)
    start_track(collector, daemon, "obj")
    status_topic, results_topic = daemon.topic("status"), daemon.topic("results")
    wait_message(collector, results_topic, with_track("obj"), WAIT_S)

    netns.impair(loss_percent=LOSS_PERCENT)
    impaired_at = time.monotonic()
    while time.monotonic() - impaired_at < LOSSY_S:  # what it publishes is read afterwards
        assert daemon.process.poll() is None, daemon.log[-3000:]
        time.sleep(0.1)
    netns.heal()
    healed_at = time.monotonic()
    resumed = wait_message(collector, results_topic, with_track("obj", healed_at), WAIT_S)

    during = [m for m in collector.messages(results_topic) if impaired_at < m.timestamp < healed_at]
    arrivals = [impaired_at] + [m.timestamp for m in during if with_track("obj")(m)] + [healed_at]
    down = [
        m
        for m in collector.messages(status_topic)
        if source_lost(impaired_at)(m) and m.timestamp < healed_at
    ]
    frames = [payload_of(m)["frame"] for m in during]
    longest_gap_s = max(b - a for a, b in itertools.pairwise(arrivals))
    print(
        f"\ndaemon on RTSP over TCP, {LOSS_PERCENT:g} % loss each way for {LOSSY_S:g} s:",
        f"{len(during) / LOSSY_S:.1f} results/s with the track (clip {TEST_FPS:g} fps),",
        f"{(frames[-1] - frames[0] + 1 - len(frames)) if frames else 0} frames skipped by the",
        f"tracker, longest gap {longest_gap_s:.2f} s, {len(down)} status reports of the source",
        f"down; results again {resumed.timestamp - healed_at:.2f} s after healing",
    )
    # Never silent without saying so: a gap longer than the bound is covered by a report.
    for before, after in itertools.pairwise(arrivals):
        if after - before > READ_TIMEOUT_S + REPORT_MARGIN_S:
            assert any(before < m.timestamp < after for m in down), (before, after)
    assert daemon.process.poll() is None
