"""Prometheus metrics of the daemon on their own port (`GET /metrics`; extra `metrics`).

A front end like the web view: it sees the service only through siamedge.frontend, never imports
siamedge.service, and is the only module that imports prometheus_client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from siamedge import listener
from siamedge.config import MetricsSettings
from siamedge.fps import FpsMeter
from siamedge.frontend import FrameReport, ServicePort
from siamedge.tracking.result import TrackState

log = logging.getLogger(__name__)

PREFIX = "siamedge"
METRICS_PATH = "/metrics"
SOURCE_STATES = ("starting", "streaming", "stalled", "retrying", "stopped")
"""Every value of siamedge.sources.capture.SourceState (each one a series of source_state)."""
STEP_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
"""Model step time: a few ms on a GPU to a second on a small CPU."""
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Capture -> results published: the step plus the wait in the capture slot and the encoding."""
SERVE_POLL_S = 0.5
REQUEST_TIMEOUT_S = 10.0
"""A connection whose request has not come whole this long after it opened (a scraper gone
mid-request, a half-open link, a port scan, a client trickling a byte at a time) is closed,
instead of holding a thread for ever."""
MAX_CONNECTIONS = 8
"""Connections served at once (a scraper or two need one each); more are closed at once, so a
client trickling a byte at a time on many connections cannot pile up threads."""
MS_PER_S = 1000.0

# name (without the prefix) -> help; the README's metric list and the Grafana dashboard use them.
METRICS: dict[str, str] = {
    "frames_captured_total": "Frames read from the source.",
    "frames_processed_total": "Frames the tracker processed.",
    "frames_dropped_total": "Frames replaced in the capture slot before the tracker took them.",
    "fps": "Frames processed per second, over the last frames.",
    "model_step_seconds": "Model step time per frame, all tracks in one batch.",
    "capture_to_publish_seconds": "Latency from frame capture to its results published.",
    "active_tracks": "Tracks being followed.",
    "track_score": "The model's score of each track on the last frame.",
    "tracks_lost_total": "Times a track went from tracking to lost.",
    "tracks_dropped_total": "Tracks the service ended by itself (the model failed, the frame "
    "size changed).",
    "commands_total": "Commands by outcome (accepted, rejected, dropped_queue_full, expired, "
    "stale, duplicate).",
    "broker_connected": "1 while connected to the MQTT broker.",
    "broker_reconnects_total": "Connections to the broker after the first one.",
    "source_state": "1 for the source's current state, 0 for the others.",
    "source_reopenings_total": "Times the source failed or ended and was reopened.",
    "results_dropped_total": "Results never sent: the broker was unreachable or did not take "
    "them (dropped oldest first).",
    "provider_info": "The onnxruntime execution provider in use (label provider).",
}


def _name(short: str) -> str:
    return f"{PREFIX}_{short}"


def _help(short: str) -> str:
    return METRICS[short]


class _FrameStats:
    """What the frame reports tell: processed frames, fps, the last tracks (any thread reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fps = FpsMeter()
        self._processed = 0
        self._lost = 0
        self._states: dict[str, TrackState] = {}
        self._scores: dict[str, float] = {}

    def add(self, report: FrameReport, now: float) -> None:
        states = {track_id: result.state for track_id, result, _slot in report.tracks}
        scores = {
            track_id: float(result.score)
            for track_id, result, _slot in report.tracks
            if result.score is not None
        }
        newly_lost = sum(
            1
            for track_id, state in states.items()
            if state is TrackState.LOST and self._states.get(track_id) is not TrackState.LOST
        )
        with self._lock:
            self._fps.tick(now)
            self._processed += 1
            self._lost += newly_lost
            self._states = states
            self._scores = scores

    def read(self) -> tuple[int, float, int, int, dict[str, float]]:
        """processed frames, fps, lost tracks, active tracks, {track_id: score}."""
        with self._lock:
            return (
                self._processed,
                self._fps.fps(time.monotonic()),
                self._lost,
                len(self._states),
                dict(self._scores),
            )


class _ServiceCollector(Collector):
    """Builds the snapshot-based metrics at scrape time from the service port."""

    def __init__(self, port: ServicePort, frames: _FrameStats) -> None:
        self._port = port
        self._frames = frames

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics())

    def _metrics(self) -> Iterator[Metric]:
        snapshot = self._port.snapshot()
        counters = snapshot.counters
        processed, fps, lost, active, scores = self._frames.read()

        def counter(short: str, value: float) -> CounterMetricFamily:
            # CounterMetricFamily adds the _total suffix itself.
            return CounterMetricFamily(_name(short.removesuffix("_total")), _help(short), value)

        def gauge(short: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(_name(short), _help(short), value)

        yield counter("frames_captured_total", counters.frames_captured)
        yield counter("frames_processed_total", processed)
        yield counter("frames_dropped_total", counters.frames_dropped)
        yield gauge("fps", fps)
        yield gauge("active_tracks", active)
        track_score = GaugeMetricFamily(
            _name("track_score"), _help("track_score"), labels=["track_id"]
        )
        for track_id, score in sorted(scores.items()):
            track_score.add_metric([track_id], score)
        yield track_score
        yield counter("tracks_lost_total", lost)
        yield counter("tracks_dropped_total", counters.tracks_dropped)
        commands = CounterMetricFamily(
            _name("commands"), _help("commands_total"), labels=["outcome"]
        )
        for outcome, count in counters.commands.items():
            commands.add_metric([outcome], count)
        yield commands
        yield gauge("broker_connected", 1.0 if snapshot.broker.connected else 0.0)
        yield counter("broker_reconnects_total", counters.broker_reconnects)
        source_state = GaugeMetricFamily(
            _name("source_state"), _help("source_state"), labels=["state"]
        )
        for state in SOURCE_STATES:
            source_state.add_metric([state], 1.0 if counters.source_state == state else 0.0)
        yield source_state
        yield counter("source_reopenings_total", counters.source_reopenings)
        yield counter("results_dropped_total", counters.results_dropped)
        provider = GaugeMetricFamily(
            _name("provider_info"), _help("provider_info"), labels=["provider"]
        )
        if snapshot.status is not None:
            provider.add_metric([snapshot.status.provider], 1.0)
        yield provider


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsHttpServer

    def setup(self) -> None:
        super().setup()
        listener.read_within(self, self.server.request_timeout_s)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self.send_error(404, f"only {METRICS_PATH} is served here")
            return
        body = generate_latest(self.server.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics %s: %s", self.address_string(), format % args)


class _MetricsHttpServer(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        self.registry = registry
        self.request_timeout_s = REQUEST_TIMEOUT_S
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._refused = 0
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refused += 1
            log.log(
                logging.WARNING if self._refused == 1 else logging.DEBUG,
                "metrics: connection from %s closed: %d are open already (%d refused so far)",
                client_address[0],
                MAX_CONNECTIONS,
                self._refused,
            )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsEndpoint:
    """The siamedge.frontend.FrontEnd serving `GET /metrics` on metrics.host:metrics.port.

    Its own CollectorRegistry (never the process-wide default one): counters and gauges are read
    from `ServicePort.snapshot()` at scrape time, histograms and track scores from the frame
    reports (the listener only records and returns at once).
    """

    def __init__(self, port: ServicePort, settings: MetricsSettings) -> None:
        self._settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        self._frames = _FrameStats()
        self.registry.register(_ServiceCollector(port, self._frames))
        self._step = Histogram(
            _name("model_step_seconds"),
            _help("model_step_seconds"),
            buckets=STEP_BUCKETS_S,
            registry=self.registry,
        )
        self._latency = Histogram(
            _name("capture_to_publish_seconds"),
            _help("capture_to_publish_seconds"),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._http: _MetricsHttpServer | None = None
        self._thread: threading.Thread | None = None
        port.add_frame_listener(self.on_frame)

    @property
    def url(self) -> str:
        """Where the metrics are served (the bound port once started)."""
        host, port = self._settings.host, self._settings.port
        if self._http is not None:
            port = self._http.server_address[1]
        return listener.url(host, port, METRICS_PATH)

    def on_frame(self, report: FrameReport) -> None:
        """Frame listener: record the frame (main loop)."""
        self._frames.add(report, report.frame.monotonic)
        if report.step_ms is not None:
            self._step.observe(report.step_ms / MS_PER_S)
        if report.latency_ms is not None:
            self._latency.observe(max(0.0, report.latency_ms) / MS_PER_S)

    def start(self) -> None:
        """Listen on metrics.host:metrics.port; ConfigError when that address cannot be had."""
        settings = self._settings
        self._http = listener.bind(
            lambda address: _MetricsHttpServer(address, self.registry),
            settings.host,
            settings.port,
            "metrics",
        )
        self._thread = listener.serve(self._http, SERVE_POLL_S, "metrics-server")
        log.info("Prometheus metrics on %s", self.url)

    def close(self) -> None:
        """Stop serving and join the server thread."""
        http, self._http = self._http, None
        if http is None:
            return
        http.shutdown()
        http.server_close()
        if self._thread is not None:
            self._thread.join()
