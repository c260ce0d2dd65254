"""The daemon's life: sd_notify, shutdown and last will, broker restarts, failing sources,
bad configuration and a broken model; each test runs its own daemon subprocess."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime
import pytest
from fixtures.daemon import Daemon, daemon_config, unique_prefix, wait_online
from fixtures.media import write_video
from fixtures.mosquitto import Broker, MqttCollector, free_port
from fixtures.notify_socket import Notification, NotifyReceiver

from siamedge.cli import EX_CONFIG
from siamedge.config import Settings
from siamedge.engine import Engine
from siamedge.messaging.client import MqttClient
from siamedge.models import builtin_model_path
from siamedge.providers import PROVIDER_BY_NAME
from siamedge.service import EX_SOFTWARE, MODEL_FAILURES_BEFORE_RESTART, Service

DaemonFactory = Callable[..., Daemon]
CollectorFactory = Callable[..., MqttCollector]


def status_where(
    collector: MqttCollector, daemon: Daemon, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def report(m: dict[str, Any]) -> bool:  # acks share the topic; skip them
        return ("source" in m or m.get("online") is False) and check(m)

    message = collector.wait_for(daemon.topic("status"), where=report, timeout_s=30)[0]
    payload: dict[str, Any] = json.loads(message.payload)
    return payload


def notifications_until(receiver: NotifyReceiver, key: str) -> list[Notification]:
    """Datagrams up to and including the first one that sets `key`."""
    received = []
    while True:
        note = receiver.receive(timeout=60)
        received.append(note)
        if key in note.fields:
            return received


def wait_for_log(daemon: Daemon, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in daemon.log:
        assert time.monotonic() < deadline, daemon.log
        time.sleep(0.05)


def assert_pings_withheld(notify_socket: NotifyReceiver, daemon: Daemon) -> None:
    """No WATCHDOG=1 for 1.5 s, 2.5 s from now (past a watchdog_stall_s of 1 s), and the log
    says why; then the daemon stops cleanly."""
    time.sleep(2.5)
    wait_for_log(daemon, "withholding watchdog pings")
    notify_socket.drain()
    time.sleep(1.5)
    late = notify_socket.drain()
    assert not any("WATCHDOG" in note.fields for note in late), late
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_sd_notify_ready_watchdog_status_and_stopping(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    notify_socket: NotifyReceiver,
) -> None:
    config = daemon_config(mosquitto, unique_prefix())
    daemon = daemon_factory(config, env={"WATCHDOG_USEC": "1000000"})
    collector = mqtt_collector(mosquitto, daemon.topics)

    before_ready = notifications_until(notify_socket, "READY")
    ready = before_ready[-1]
    assert ready.pid == daemon.process.pid
    assert ready.fields["READY"] == "1"
    # READY comes after the model, the source and the broker: its status says so
    assert "source streaming" in ready.fields["STATUS"]
    assert "broker connected" in ready.fields["STATUS"]
    assert "CPUExecutionProvider" in ready.fields["STATUS"]
    assert not any("WATCHDOG" in note.fields for note in before_ready)
    # the retained online status was sent before READY; this subscriber, on another connection,
    # may get it a moment after the notification
    collector.wait_for(daemon.topic("status"), where=lambda m: m.get("online") is True)

    after = [notify_socket.receive()]
    while sum(note.fields.get("WATCHDOG") == "1" for note in after) < 3:
        assert len(after) < 30, after  # status lines come as often: pings are not the exception
        after.append(notify_socket.receive())
    statuses = [note.fields["STATUS"] for note in after if "STATUS" in note.fields]
    assert any(" fps, 0 track(s)" in text for text in statuses)

    daemon.signal(signal.SIGTERM)
    stopping = notifications_until(notify_socket, "STOPPING")[-1]
    assert stopping.fields["STOPPING"] == "1"
    assert daemon.wait() == 0
    offline = status_where(collector, daemon, lambda m: m.get("online") is False)
    assert offline["reason"] == "shutdown"
    assert "shutting down" in daemon.log


def test_a_shutdown_ends_the_tracks_on_mqtt_before_going_offline(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    daemon = daemon_factory(daemon_config(mosquitto, unique_prefix()))
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    collector.publish(daemon.topic("start"), json.dumps({"box": [100, 100, 80, 60]}))
    collector.wait_for(daemon.topic("results"), where=lambda m: bool(m["tracks"]), timeout_s=30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    status_where(collector, daemon, lambda m: m.get("online") is False)
    arrived = [
        (message.topic, json.loads(message.payload))
        for message in collector.messages()
        if message.topic in (daemon.topic("results"), daemon.topic("status"))
    ]
    offline_at = next(i for i, (_, m) in enumerate(arrived) if m.get("online") is False)
    results = [m for topic, m in arrived[:offline_at] if topic == daemon.topic("results")]
    assert results[-1]["tracks"] == []
    assert results[-2]["tracks"], "the track ran until the shutdown"
    assert results[-1]["frame"] == results[-2]["frame"]  # no frame is made up for it


def test_a_stop_while_the_broker_is_awaited_ends_the_start_without_ready(
    mosquitto: Broker, daemon_factory: DaemonFactory, notify_socket: NotifyReceiver
) -> None:
    config = daemon_config(mosquitto, unique_prefix(), mqtt={"port": free_port()})
    daemon = daemon_factory(config)
    wait_for_log(daemon, "MQTT connecting")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    sent = notify_socket.drain()
    assert any("STOPPING" in note.fields for note in sent), sent
    assert not any("READY" in note.fields for note in sent), sent
    assert not re.search(r"siamedge \S+ running", daemon.log), daemon.log


def test_a_stop_during_the_model_load_ends_the_start_without_ready(
    mosquitto: Broker, notify_socket: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM while a TensorRT engine builds: the build cannot be interrupted, but once it
    # returns the service stops at once (it went on to READY and "running" before stopping).
    service = Service(Settings.model_validate(daemon_config(mosquitto, unique_prefix())))
    load = Engine.load

    def load_then_stop(*args: Any, **kwargs: Any) -> Engine:
        service.stop()  # the signal handler's part
        return load(*args, **kwargs)

    monkeypatch.setattr(Engine, "load", load_then_stop)
    assert service.run() == 0
    sent = [note.fields for note in notify_socket.drain()]
    assert sent[-1]["STOPPING"] == "1", sent
    assert not any("READY" in fields for fields in sent), sent


def test_a_failure_while_starting_stops_the_threads_already_started(
    mosquitto: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The capture thread was started outside the clean-up: a failing MQTT start left it
    # running (the audit's empty mqtt.host ended in "terminate called without an active
    # exception").
    service = Service(Settings.model_validate(daemon_config(mosquitto, unique_prefix())))

    def refuse(self: MqttClient) -> None:
        raise OSError("the network stack said no")

    monkeypatch.setattr(MqttClient, "start", refuse)
    with pytest.raises(OSError, match="the network stack said no"):
        service.run()
    assert [t.name for t in threading.enumerate() if t.name.startswith("capture ")] == []


class SilentServer:
    """A TCP server that accepts connections and never answers: a camera stream that hangs.

    stream_first_s: the first connection gets an MJPEG stream for that long, then is closed
    (a camera that streamed, dropped out, and hangs every reconnection)."""

    def __init__(self, stream_first_s: float = 0.0) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stream_first_s = stream_first_s
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self._stream_first_s > 0 and not self._clients:
                threading.Thread(target=self._stream, args=(client,), daemon=True).start()
            self._clients.append(client)

    def _stream(self, client: socket.socket) -> None:
        image = np.full((120, 160, 3), 90, np.uint8)
        jpeg = cv2.imencode(".jpg", image)[1].tobytes()
        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n"
        end = time.monotonic() + self._stream_first_s
        with contextlib.suppress(OSError):
            client.recv(4096)
            client.sendall(
                b"HTTP/1.0 200 OK\r\n"
                b"Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
            )
            while time.monotonic() < end:
                client.sendall(part % (len(jpeg), jpeg))
                time.sleep(0.05)
        client.close()

    def close(self) -> None:
        self._sock.close()
        for client in self._clients:
            client.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_watchdog_pings_stop_when_the_source_hangs(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    notify_socket: NotifyReceiver,
    silent_server: SilentServer,
) -> None:
    config = daemon_config(
        mosquitto,
        unique_prefix(),
        source={"uri": f"http://127.0.0.1:{silent_server.port}/video.mjpg", "open_timeout_s": 60},
        service={"watchdog_stall_s": 1.0},
    )
    daemon = daemon_factory(config, env={"WATCHDOG_USEC": "400000"})
    ready = notifications_until(notify_socket, "READY")[-1]
    assert "source starting" in ready.fields["STATUS"]
    assert_pings_withheld(notify_socket, daemon)


@pytest.mark.parametrize(
    ("signum", "exit_status", "reason"),
    [
        # A closed terminal or `systemctl kill -s HUP` killed the daemon, which left its last
        # will ('connection lost'), and systemd saw no failure to restart.
        (signal.SIGHUP, 0, "shutdown"),
        (signal.SIGKILL, -signal.SIGKILL, "connection lost"),
    ],
)
def test_the_offline_status_tells_a_shutdown_from_a_lost_connection(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    signum: int,
    exit_status: int,
    reason: str,
) -> None:
    daemon = daemon_factory(daemon_config(mosquitto, unique_prefix()))
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    daemon.signal(signum)
    assert daemon.wait() == exit_status
    offline = status_where(collector, daemon, lambda m: m.get("online") is False)
    assert offline["reason"] == reason


def test_broker_restart_reconnects_and_commands_work_again(
    mosquitto_factory: Callable[..., Broker],
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
) -> None:
    broker = mosquitto_factory()
    daemon = daemon_factory(daemon_config(broker, unique_prefix()))
    first = mqtt_collector(broker, daemon.topics)
    wait_online(first, daemon)
    first.close()

    broker.stop()
    time.sleep(1.0)
    assert daemon.process.poll() is None
    broker.start()

    again = mqtt_collector(broker, daemon.topics)
    wait_online(again, daemon)  # retained status is re-published after the reconnect
    command = {"box": [200, 150, 120, 90], "track_id": "back", "request_id": "r-back"}
    again.publish(daemon.topic("start"), json.dumps(command))
    again.wait_for(daemon.topic("status"), where=lambda m: m.get("request_id") == "r-back")
    again.wait_for(
        daemon.topic("results"),
        5,
        where=lambda m: any(t["track_id"] == "back" for t in m["tracks"]),
    )
    assert "MQTT connected" in daemon.log
    assert daemon.process.poll() is None


def test_a_file_that_disappears_is_retried_and_comes_back(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    tmp_path: Path,
) -> None:
    video = write_video(tmp_path / "clip.avi", size_wh=(160, 120))
    kept = tmp_path / "kept.avi"
    config = daemon_config(mosquitto, unique_prefix(), source={"uri": str(video), "loop": False})
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)

    shutil.move(video, kept)
    gone = status_where(
        collector, daemon, lambda m: m.get("online") and str(video) in (m["source"]["error"] or "")
    )
    assert gone["source"]["open"] is False

    shutil.move(kept, video)
    back = status_where(
        collector,
        daemon,
        lambda m: (
            m.get("online") and m["source"]["open"] and (m["frame"] or 0) > (gone["frame"] or 0)
        ),
    )
    assert back["source"]["error"] is None
    assert "ended" in daemon.log  # the clip does not loop: it ends, and is reopened
    assert daemon.process.poll() is None


def test_a_missing_camera_is_retried_and_reported(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    config = daemon_config(mosquitto, unique_prefix(), source={"uri": "/dev/video97"})
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    status = wait_online(collector, daemon, with_frames=False)
    status = status_where(collector, daemon, lambda m: bool(m["source"]["error"]))
    assert "/dev/video97 does not exist" in status["source"]["error"]
    assert status["source"]["open"] is False
    collector.publish(
        daemon.topic("start"), json.dumps({"box": [1, 1, 10, 10], "request_id": "r1"})
    )
    time.sleep(1.0)
    assert daemon.process.poll() is None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"mqtt": {"hots": "x"}}, "mqtt.hots: Extra inputs are not permitted"),
        (
            {"source": {"uri": "no-such-thing"}},
            "source uri 'no-such-thing': cannot tell what it is",
        ),
        (
            {"tracker": {"max_tracks": "many"}},
            "tracker.max_tracks: Input should be a valid integer",
        ),
        (
            {"source": {"uri": "videotestsrc ! fakesink"}},
            "source.uri: gstreamer `videotestsrc ! fakesink`: the pipeline must end in `appsink`",
        ),
    ],
)
def test_bad_config_exits_78_naming_key_and_file(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    section: dict[str, dict[str, str]],
    message: str,
) -> None:
    config = daemon_config(mosquitto, unique_prefix())
    for name, values in section.items():
        config[name] = {**config.get(name, {}), **values}
    daemon = daemon_factory(config)
    assert daemon.wait() == EX_CONFIG
    assert f"configuration error: {daemon.config_path}: " in daemon.log
    assert message in daemon.log


@pytest.mark.parametrize("model", ["builtin", "models/arrives-later.onnx"])
def test_providers_this_onnxruntime_lacks_exit_78_naming_the_key(
    mosquitto: Broker, daemon_factory: DaemonFactory, model: str
) -> None:
    # A model file that is not there yet was waited for, and the first copy of it ended the
    # running daemon with 78, which systemd does not restart.
    offered = onnxruntime.get_available_providers()
    missing = [short for short, name in PROVIDER_BY_NAME.items() if name not in offered]
    if not missing:
        pytest.skip("this onnxruntime offers every provider siamedge knows")
    config = daemon_config(mosquitto, unique_prefix(), model={"path": model, "providers": missing})
    daemon = daemon_factory(config)
    assert daemon.wait() == EX_CONFIG
    assert (
        f"configuration error: {daemon.config_path}: model.providers: none of the requested "
        f"execution providers {missing} is available; this onnxruntime offers {offered}"
    ) in daemon.log
    assert "retrying when the file changes" not in daemon.log


def test_a_broken_model_keeps_the_service_up_until_it_is_replaced(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.onnx"
    model.write_text("not a model\n")
    config = daemon_config(
        mosquitto,
        unique_prefix(),
        model={"path": str(model)},
        service={"model_retry_s": 0.3},
    )
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    status = wait_online(collector, daemon, with_frames=False)
    assert status["model"].startswith("not loaded: ")
    assert "model.onnx: cannot load the model" in status["model"]
    assert status["provider"] == "none"

    collector.publish(
        daemon.topic("start"), json.dumps({"box": [1, 1, 40, 40], "request_id": "r1"})
    )
    reason = json.loads(collector.wait_for(daemon.topic("errors"))[0].payload)["reason"]
    assert reason.startswith("no model loaded: ")

    shutil.copyfile(builtin_model_path(), model)
    loaded = status_where(collector, daemon, lambda m: m.get("provider") == "CPUExecutionProvider")
    assert loaded["model"] == str(model)
    command = {"box": [200, 150, 120, 90], "track_id": "ok", "request_id": "r2"}
    collector.publish(daemon.topic("start"), json.dumps(command))
    collector.wait_for(daemon.topic("status"), where=lambda m: m.get("request_id") == "r2")
    collector.wait_for(daemon.topic("results"), 3, where=lambda m: bool(m["tracks"]))


def test_a_model_that_fails_on_a_target_drops_it_and_the_service_goes_on(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    batched_toy_model: Callable[..., Path],
) -> None:
    # As a GPU provider can fail at run time: the daemon exited 1 and systemd's restart lost
    # every track. The toy's track model fails for targets from x = 200 on (each step moves a
    # target 1 px right), its init model from x = 400 on; the warm-up (x = 127.5) passes.
    model = batched_toy_model(
        "failing.onnx", split=True, track_fails_from_x=200, init_fails_from_x=400
    )
    metrics = free_port()
    config = daemon_config(
        mosquitto,
        unique_prefix(),
        model={"path": str(model)},
        metrics={"enabled": True, "port": metrics},
    )
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)

    def start(request_id: str, x: int) -> None:
        command = {"box": [x, 100, 40, 40], "track_id": request_id, "request_id": request_id}
        collector.publish(daemon.topic("start"), json.dumps(command))

    def tracking(m: dict[str, Any]) -> list[str]:
        return [t["track_id"] for t in m["tracks"]]

    start("steps", 0)  # centre x 20: 180 steps before the model fails on it
    start("falls", 300)  # starts, then the model fails on its first step
    dropped = json.loads(
        collector.wait_for(daemon.topic("errors"), where=lambda m: "track_id" in m)[0].payload
    )
    assert dropped["track_id"] == "falls"
    assert dropped["reason"].startswith(
        f"track 'falls' dropped: the model step failed: {model}: inference failed: "
    )
    assert "indices element out of data bounds" in dropped["reason"]
    # The batched call failed; each target tried alone: the one the model takes goes on.
    collector.wait_for(daemon.topic("results"), where=lambda m: tracking(m) == ["steps"])
    collector.publish(daemon.topic("stop"), json.dumps({"track_id": "steps"}))
    # The status counts it (a status sent before the drop also shows no track: wait for both).
    status_where(
        collector, daemon, lambda m: m.get("track_ids") == [] and m.get("tracks_dropped") == 1
    )
    assert [json.loads(m.payload)["track_id"] for m in collector.messages(daemon.topic("errors"))
            if "track_id" in json.loads(m.payload)] == ["falls"]  # fmt: skip

    start("never", 500)  # the init model fails: the start is refused, with the reason
    error = json.loads(
        collector.wait_for(daemon.topic("errors"), where=lambda m: m.get("request_id") == "never")[
            0
        ].payload
    )
    assert error["reason"].startswith(f"not started: {model}: inference failed: ")

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as response:
        scraped = response.read().decode()
    assert "\nsiamedge_tracks_dropped_total 1.0\n" in scraped

    start("again", 100)  # the service goes on: a target the model can take tracks
    collector.wait_for(daemon.topic("results"), 3, where=lambda m: tracking(m) == ["again"])
    assert daemon.process.poll() is None
    assert "Traceback" not in daemon.log
    assert "\x1b[" not in daemon.log  # no onnxruntime line in colour


def test_a_model_that_keeps_failing_exits_for_systemd_to_restart_the_service(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    batched_toy_model: Callable[..., Path],
) -> None:
    # A GPU left in a bad state fails every call; the daemon looked healthy for ever.
    model = batched_toy_model("broken.onnx", split=True, track_fails_from_x=128)
    config = daemon_config(mosquitto, unique_prefix(), model={"path": str(model)})
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    for attempt in range(MODEL_FAILURES_BEFORE_RESTART):
        command = {"box": [300, 100, 40, 40], "request_id": f"r{attempt}"}
        collector.publish(daemon.topic("start"), json.dumps(command))
        collector.wait_for(daemon.topic("errors"), attempt + 1, where=lambda m: "track_id" in m)
    assert daemon.wait() == EX_SOFTWARE
    assert (
        f"the model failed {MODEL_FAILURES_BEFORE_RESTART} calls in a row (the last: {model}: "
        "inference failed: "
    ) in daemon.log
    assert "so that systemd restarts the service" in daemon.log


def test_a_track_dropped_by_a_resolution_change_is_said_on_the_errors_topic(
    mosquitto: Broker,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
    tmp_path: Path,
) -> None:
    # The track vanished from the results with the reason only in the log.
    folder = tmp_path / "frames"
    folder.mkdir()
    noise = np.random.default_rng(0)
    for index, (width, height) in enumerate([(320, 240)] * 10 + [(160, 120)] * 10):
        image = noise.integers(0, 256, (height, width, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{index:03d}.png"), image)
    config = daemon_config(
        mosquitto, unique_prefix(), source={"uri": str(folder), "fps": 20, "loop": True}
    )
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    command = {"box": [10, 10, 40, 40], "track_id": "cam", "request_id": "r1"}
    collector.publish(daemon.topic("start"), json.dumps(command))
    message = collector.wait_for(daemon.topic("errors"), where=lambda m: "track_id" in m)[0]
    dropped = json.loads(message.payload)
    assert dropped["track_id"] == "cam"
    assert dropped["reason"] in {
        f"track 'cam' dropped: frame size changed from {old} to {new}; restart the target"
        for old, new in [((320, 240), (160, 120)), ((160, 120), (320, 240))]
    }
    status_where(collector, daemon, lambda m: m.get("track_ids") == [])
    assert daemon.process.poll() is None


def test_watchdog_pings_stop_when_a_reopen_hangs(
    mosquitto: Broker, daemon_factory: DaemonFactory, notify_socket: NotifyReceiver
) -> None:
    # The first open hanging stopped the pings; a reopen hanging (the camera streamed, dropped
    # out and now never answers) kept them going for ever, and systemd never restarted it.
    server = SilentServer(stream_first_s=2.0)
    try:
        config = daemon_config(
            mosquitto,
            unique_prefix(),
            source={
                "uri": f"http://127.0.0.1:{server.port}/video.mjpg",
                "open_timeout_s": 60,
                "read_timeout_s": 1,
            },
            service={"watchdog_stall_s": 1.0},
        )
        daemon = daemon_factory(config, env={"WATCHDOG_USEC": "400000"})
        notifications_until(notify_socket, "READY")
        wait_for_log(daemon, "reopening in")
        assert_pings_withheld(notify_socket, daemon)  # past the backoff, into the hung reopen
    finally:
        server.close()
