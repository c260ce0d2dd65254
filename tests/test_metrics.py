"""The Prometheus endpoint: scraped from a running daemon (real mosquitto) and parsed with
prometheus_client's own parser; the endpoint alone on a hand-written ServicePort; the Grafana
dashboard queries only metrics a scrape has."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.daemon import (
    Daemon,
    current_frame,
    daemon_config,
    start_daemon,
    truth_box,
    unique_prefix,
    wait_online,
)
from fixtures.mosquitto import Broker, MqttCollector
from fixtures.web import free_port
from prometheus_client.parser import text_string_to_metric_families

from siamedge import metrics
from siamedge.config import MetricsSettings, settings_from_mapping
from siamedge.errors import ConfigError
from siamedge.frontend import (
    CommandDrain,
    FrameListener,
    FrameReport,
    ServiceCounters,
    StatusSnapshot,
)
from siamedge.messaging.client import ConnectionState
from siamedge.messaging.protocol import SourceStatus, StatusReport
from siamedge.metrics import METRICS, SOURCE_STATES, MetricsEndpoint
from siamedge.run import front_ends
from siamedge.sources.base import Frame
from siamedge.tracking.result import TrackResult, TrackState

HOST = "127.0.0.1"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


# ---- the endpoint on a hand-written service port ------------------------------------------------


class FakePort:
    """A ServicePort whose snapshot the test sets; frame listeners are called by the test."""

    def __init__(self) -> None:
        self.listeners: list[FrameListener] = []
        self.current = StatusSnapshot(None, ConnectionState(False, "not yet", 0.0))

    def snapshot(self) -> StatusSnapshot:
        return self.current

    def add_frame_listener(self, listener: FrameListener) -> None:
        self.listeners.append(listener)

    def add_inbox(self, drain: CommandDrain) -> None:
        raise AssertionError("the metrics endpoint takes no commands")


def track(score: float, state: TrackState) -> TrackResult:
    corners = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    return TrackResult((5.0, 5.0), (4.0, 4.0), (3.0, 3.0, 4.0, 4.0), corners, score, state, None)


def report(
    index: int, *tracks: tuple[str, TrackResult], start: float = 1000.0, fps: float = 10.0
) -> FrameReport:
    """Frame `index` of a stream at `fps` whose frame 0 was captured at `start`, on both
    clocks (the rate is measured on the monotonic one)."""
    captured = start + index / fps
    frame = Frame(np.zeros((4, 4, 3), np.uint8), index, captured, monotonic=captured)
    slotted = tuple((track_id, result, slot) for slot, (track_id, result) in enumerate(tracks))
    return FrameReport(frame, slotted, 40.0 if tracks else None, 12.0 if tracks else None)


@pytest.fixture
def endpoint() -> Iterator[tuple[FakePort, MetricsEndpoint]]:
    port = FakePort()
    served = MetricsEndpoint(port, MetricsSettings(enabled=True, host=HOST, port=free_port()))
    served.start()
    yield port, served
    served.close()


def test_the_endpoint_reads_the_snapshot_and_the_frame_reports(
    endpoint: tuple[FakePort, MetricsEndpoint],
) -> None:
    port, served = endpoint
    before = scrape(served.url)
    assert names(before) >= {f"siamedge_{name}" for name in METRICS if "seconds" not in name} - {
        "siamedge_track_score",
        "siamedge_provider_info",
    }
    assert value(before, "siamedge_frames_processed_total") == 0
    assert value(before, "siamedge_source_state", state="starting") == 1

    status = StatusReport(
        "builtin", "CPUExecutionProvider", SourceStatus("synthetic", True), 10.0, 3, ("a",), 4,
        "rle", 1.0,
    )  # fmt: skip
    counters = ServiceCounters(
        frames_captured=12,
        frames_dropped=3,
        commands={"accepted": 2, "rejected": 1},
        broker_reconnects=1,
        source_reopenings=2,
        source_state="streaming",
        results_dropped=5,
        tracks_dropped=2,
    )
    port.current = StatusSnapshot(status, ConnectionState(True, "connected", 0.0), counters)
    (listener,) = port.listeners
    # Frame 2 comes now, at 0.1 fps: the rate, read as of now, holds for 10 s.
    start, fps = time.monotonic() - 20.0, 0.1
    listener(report(0, ("a", track(0.9, TrackState.TRACKING)), start=start, fps=fps))
    listener(
        report(
            1,
            ("a", track(0.2, TrackState.LOST)),
            ("b", track(0.8, TrackState.TRACKING)),
            start=start,
            fps=fps,
        )
    )
    # a is still lost: counted once
    listener(report(2, ("a", track(0.1, TrackState.LOST)), start=start, fps=fps))

    after = scrape(served.url)
    assert value(after, "siamedge_frames_captured_total") == 12
    assert value(after, "siamedge_frames_processed_total") == 3
    assert value(after, "siamedge_frames_dropped_total") == 3
    assert value(after, "siamedge_fps") == pytest.approx(0.1)
    assert value(after, "siamedge_active_tracks") == 1
    assert value(after, "siamedge_track_score", track_id="a") == pytest.approx(0.1)
    assert ("siamedge_track_score", (("track_id", "b"),)) not in after  # b ended
    assert value(after, "siamedge_tracks_lost_total") == 1
    assert value(after, "siamedge_tracks_dropped_total") == 2
    assert value(after, "siamedge_commands_total", outcome="accepted") == 2
    assert value(after, "siamedge_commands_total", outcome="rejected") == 1
    assert value(after, "siamedge_broker_connected") == 1
    assert value(after, "siamedge_broker_reconnects_total") == 1
    assert value(after, "siamedge_source_state", state="streaming") == 1
    assert value(after, "siamedge_source_state", state="starting") == 0
    assert value(after, "siamedge_source_reopenings_total") == 2
    assert value(after, "siamedge_results_dropped_total") == 5
    assert value(after, "siamedge_provider_info", provider="CPUExecutionProvider") == 1
    assert value(after, "siamedge_model_step_seconds_count") == 3
    assert value(after, "siamedge_model_step_seconds_sum") == pytest.approx(0.036)
    assert value(after, "siamedge_capture_to_publish_seconds_bucket", le="0.05") == 3


def test_only_the_metrics_path_is_served(endpoint: tuple[FakePort, MetricsEndpoint]) -> None:
    _port, served = endpoint
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(served.url.removesuffix("/metrics") + "/other", timeout=10)
    caught.value.close()
    assert caught.value.code == 404


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closed the connection (within 10 s), not a timeout of ours."""
    connection.settimeout(10)
    return connection.recv(1) == b""


def test_a_connection_that_sends_no_request_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # It held a thread and a descriptor for ever: a scraper gone mid-request, a port scan.
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT_S", 0.3)
    served = MetricsEndpoint(FakePort(), MetricsSettings(enabled=True, host=HOST, port=free_port()))
    served.start()
    try:
        host_port = (HOST, int(served.url.split(":")[2].split("/")[0]))
        with (
            socket.create_connection(host_port) as silent,
            socket.create_connection(host_port) as half,
        ):
            half.sendall(b"GET /metr")
            assert closed_by_server(silent)
            assert closed_by_server(half)
        assert names(scrape(served.url))
    finally:
        served.close()


def test_a_request_trickling_in_is_closed_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The socket timeout bounds each read: a byte every so often kept the connection for ever,
    # and MAX_CONNECTIONS of them locked every scraper out.
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT_S", 0.5)
    served = MetricsEndpoint(FakePort(), MetricsSettings(enabled=True, host=HOST, port=free_port()))
    served.start()
    try:
        host_port = (HOST, int(served.url.split(":")[2].split("/")[0]))
        with socket.create_connection(host_port) as trickling:
            trickling.settimeout(0.1)
            deadline = time.monotonic() + 5
            closed = False
            while not closed and time.monotonic() < deadline:
                try:
                    trickling.send(b"X")
                    closed = trickling.recv(4096) == b""  # closed, and nothing answered
                except TimeoutError:
                    continue
                except ConnectionError:
                    closed = True
            assert closed
        assert names(scrape(served.url))
    finally:
        served.close()


def test_connections_beyond_the_limit_are_closed_at_once(
    endpoint: tuple[FakePort, MetricsEndpoint], caplog: pytest.LogCaptureFixture
) -> None:
    _port, served = endpoint
    host_port = (HOST, int(served.url.split(":")[2].split("/")[0]))
    with contextlib.ExitStack() as stack:
        held = [
            stack.enter_context(socket.create_connection(host_port))
            for _ in range(metrics.MAX_CONNECTIONS)
        ]
        held[-1].sendall(b"GET /metr")  # a request trickling in, byte by byte
        with socket.create_connection(host_port) as extra:
            assert closed_by_server(extra)
    # The held connections closed: their threads end and the slots come back.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert names(scrape(served.url))
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    refused = [r for r in caplog.records if "connection from 127.0.0.1 closed" in r.getMessage()]
    assert refused[0].levelno == logging.WARNING  # then DEBUG: a scrape may still meet the limit
    assert all(r.levelno == logging.DEBUG for r in refused[1:])


def test_a_taken_port_is_a_config_error_naming_the_keys() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        settings = MetricsSettings(enabled=True, host=HOST, port=taken.getsockname()[1])
        served = MetricsEndpoint(FakePort(), settings)
        with pytest.raises(ConfigError, match=r"metrics.host/metrics.port: cannot listen"):
            served.start()


def test_each_endpoint_has_its_own_registry() -> None:
    first = MetricsEndpoint(FakePort(), MetricsSettings())
    second = MetricsEndpoint(FakePort(), MetricsSettings())  # no "Duplicated timeseries"
    assert first.registry is not second.registry


def test_metrics_are_off_by_default_and_on_when_enabled() -> None:
    assert front_ends(settings_from_mapping({}, "test")) == []
    enabled = settings_from_mapping({"metrics": {"enabled": True}}, "test")
    assert len(front_ends(enabled)) == 1


def test_without_prometheus_client_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    monkeypatch.delitem(sys.modules, "siamedge.metrics")
    enabled = settings_from_mapping({"metrics": {"enabled": True}}, "test")
    with pytest.raises(ConfigError, match=r"siamedge\[metrics\]"):
        front_ends(enabled)


# ---- a running daemon ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metrics_daemon(
    mosquitto: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Daemon, str]]:
    port = free_port()
    config = daemon_config(
        mosquitto, unique_prefix(), metrics={"enabled": True, "host": HOST, "port": port}
    )
    running = start_daemon(tmp_path_factory.mktemp("metrics"), config)
    yield running, f"http://{HOST}:{port}/metrics"
    assert running.stop() == 0


@pytest.fixture
def client(
    metrics_daemon: tuple[Daemon, str],
    mosquitto: Broker,
    mqtt_collector: Callable[..., MqttCollector],
) -> Iterator[MqttCollector]:
    daemon, _url = metrics_daemon
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    yield collector
    # Acknowledged before the next test's client starts a track (no race between clients).
    request_id = f"stop-all-{uuid.uuid4().hex[:8]}"
    collector.publish(daemon.topic("stop"), json.dumps({"all": True, "request_id": request_id}))
    collector.wait_for(
        daemon.topic("status"),
        where=lambda m: m.get("ack") == "stop" and m.get("request_id") == request_id,
    )


def start_track(collector: MqttCollector, daemon: Daemon, track_id: str) -> None:
    """Start a track on the object's true box and wait for its third result: the daemon
    publishes a frame's results before the endpoint records its report, so by then the report
    of the second, the first with a score, has reached it."""
    statuses = [json.loads(m.payload) for m in collector.messages(daemon.topic("status"))]
    latest = [s for s in statuses if s.get("frame") is not None][-1]
    box = truth_box(current_frame(latest) + 1)
    collector.publish(daemon.topic("start"), json.dumps({"box": list(box), "track_id": track_id}))
    collector.wait_for(
        daemon.topic("results"),
        3,
        where=lambda m: any(t["track_id"] == track_id for t in m["tracks"]),
        timeout_s=60,
    )


def test_a_scrape_of_the_daemon_moves_with_it(
    metrics_daemon: tuple[Daemon, str], client: MqttCollector
) -> None:
    daemon, url = metrics_daemon
    before = scrape(url)
    assert value(before, "siamedge_provider_info", provider="CPUExecutionProvider") == 1
    assert value(before, "siamedge_broker_connected") == 1
    assert value(before, "siamedge_source_state", state="streaming") == 1
    assert value(before, "siamedge_frames_processed_total") >= 1

    start_track(client, daemon, "metered")
    client.publish(daemon.topic("start"), json.dumps({"box": "nope", "request_id": "bad"}))
    client.wait_for(daemon.topic("errors"), where=lambda m: m.get("request_id") == "bad")

    after = scrape(url)
    assert value(after, "siamedge_frames_processed_total") > value(
        before, "siamedge_frames_processed_total"
    )
    assert value(after, "siamedge_frames_captured_total") > value(
        before, "siamedge_frames_captured_total"
    )
    assert 0.0 <= value(after, "siamedge_track_score", track_id="metered") <= 1.0
    assert value(after, "siamedge_active_tracks") >= 1
    assert value(after, "siamedge_commands_total", outcome="rejected") == (
        value(before, "siamedge_commands_total", outcome="rejected") + 1
    )
    assert value(after, "siamedge_commands_total", outcome="accepted") > value(
        before, "siamedge_commands_total", outcome="accepted"
    )
    assert value(after, "siamedge_model_step_seconds_count") > 0
    assert value(after, "siamedge_capture_to_publish_seconds_count") > 0
    assert value(after, "siamedge_fps") > 0


DASHBOARD_METRIC = re.compile(r"\bsiamedge_[a-z_]+\b")


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    queries += [
        variable["query"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    return queries


def test_every_metric_the_dashboard_queries_is_scraped(
    metrics_daemon: tuple[Daemon, str], client: MqttCollector, repo_root: Path
) -> None:
    daemon, url = metrics_daemon
    dashboard = json.loads((repo_root / "docs" / "grafana-siamedge.json").read_text("utf-8"))
    queried = {
        name for query in dashboard_queries(dashboard) for name in DASHBOARD_METRIC.findall(query)
    }
    start_track(client, daemon, "dashboard")  # the per-track series exist while a track runs
    scraped = names(scrape(url))
    assert queried - scraped == set()
    # and the dashboard shows every metric there is
    assert {re.sub(r"_(bucket|sum|count|created)$", "", n) for n in queried} >= {
        f"siamedge_{name}" for name in METRICS
    }


def test_the_readme_table_lists_every_metric_and_source_state(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text("utf-8")
    rows = re.findall(r"^\| `siamedge_(\w+?)(?:\{\w+\})?` \| \w+ \| (.*) \|$", readme, re.M)
    assert {name for name, _ in rows} == set(METRICS)
    source_row = dict(rows)["source_state"]
    assert set(re.findall(r"`(\w+)`", source_row)) == set(SOURCE_STATES)
