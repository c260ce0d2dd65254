"""`siamedge watch` against a real mosquitto: plain lines through a pipe, the table redrawn in
place on a terminal (a pty), Ctrl-C, --config, an unreachable broker; and its formatting."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fixtures.mosquitto import Broker, MqttCollector, TlsFiles, free_port

from siamedge.cli import main as cli_main
from siamedge.client import Status, TrackDropped, parse_results
from siamedge.messaging.connection import NO_MQTT_ANSWER
from siamedge.messaging.protocol import encode_results, encode_status, track_dropped_message
from siamedge.messaging.topics import Topics
from siamedge.tracking.result import MaskWindow, TrackResult, TrackState
from siamedge.watch import (
    EX_UNAVAILABLE,
    View,
    apply,
    plain_lines,
    screen_rows,
    status_line,
    table_lines,
)

pytestmark = pytest.mark.timeout(60)

Collect = Callable[..., MqttCollector]
CAPTURE_TIME = 1_700_000_000.0
LATENCY_S = 0.0125
PUBLISH_EVERY_S = 0.05
EXIT_TIMEOUT_S = 20.0


def track(center: tuple[float, float], score: float, state: TrackState) -> TrackResult:
    bits = np.ones((4, 4), dtype=np.bool_)
    mask = MaskWindow(bits, (10, 10), (640, 360), np.zeros((0, 2), np.int32))
    return TrackResult(
        center_xy=center,
        size_wh=(100.0, 60.25),
        bbox_xywh=(center[0] - 50, center[1] - 30, 100.0, 60.25),
        rotated_box=((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)),
        score=score,
        state=state,
        mask=mask,
    )


def results_payload(frame: int) -> bytes:
    return encode_results(
        frame,
        CAPTURE_TIME,
        (640, 360),
        [
            ("t1", track((320.5, 180.25), 0.93, TrackState.TRACKING)),
            ("cat", track((50.0, 60.0), 0.2, TrackState.LOST)),
        ],
        publish_time=CAPTURE_TIME + LATENCY_S,
    )


EXPECTED_LINES = [
    "frame 7 t1 tracking center=320.5,180.2 size=100.0x60.2 score=0.930 latency=12.5ms",
    "frame 7 cat lost center=50.0,60.0 size=100.0x60.2 score=0.200 latency=12.5ms",
]


@pytest.fixture
def publishing(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect
) -> Iterator[Callable[[bytes], None]]:
    """`publish(payload)`: sends a results message again and again until the test ends."""
    collector = mqtt_collector(mosquitto, [])
    topics = Topics.for_prefix(mqtt_prefix)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(payload: bytes) -> None:
        def loop() -> None:
            while not stop.is_set():
                collector.publish(topics.results, payload)
                stop.wait(PUBLISH_EVERY_S)

        thread = threading.Thread(target=loop, daemon=True)
        threads.append(thread)
        thread.start()

    yield start
    stop.set()
    for thread in threads:
        thread.join()


def watch_command(broker: Broker, prefix: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "siamedge.cli",
        "watch",
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--topic-prefix",
        prefix,
        *extra,
    ]


def child_env(repo_root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(repo_root)}


def test_plain_lines_for_each_results_message(
    mosquitto: Broker, mqtt_prefix: str, publishing: Callable[[bytes], None], repo_root: Path
) -> None:
    publishing(results_payload(7))
    done = subprocess.run(
        watch_command(mosquitto, mqtt_prefix, "--count", "2", "--seconds", "15"),
        capture_output=True,
        env=child_env(repo_root),
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == EXPECTED_LINES * 2
    assert b"\x1b[" not in done.stdout  # no terminal codes into a pipe


def test_a_track_the_daemon_dropped_is_shown_with_its_reason(
    mosquitto: Broker,
    mqtt_prefix: str,
    mqtt_collector: Collect,
    publishing: Callable[[bytes], None],
    repo_root: Path,
) -> None:
    publishing(results_payload(7))
    reason = "track 'cat' dropped: frame size changed from (640, 360) to (320, 240)"
    collector = mqtt_collector(mosquitto, [])
    errors = Topics.for_prefix(mqtt_prefix).errors
    watcher = subprocess.Popen(
        watch_command(mosquitto, mqtt_prefix, "--seconds", "15"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(repo_root),
    )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().decode().rstrip("\n") in EXPECTED_LINES  # subscribed
        why = "frame size changed from (640, 360) to (320, 240)"
        collector.publish(errors, json.dumps(track_dropped_message("cat", why)))
        for line in iter(watcher.stdout.readline, b""):
            if not line.startswith(b"frame "):
                assert line.decode() == reason + "\n"
                break
        else:
            raise AssertionError("watch ended without showing the dropped track")
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=EXIT_TIMEOUT_S)
    view = apply(View(), TrackDropped("cat", reason))
    assert table_lines(view, "subscribed")[1] == reason


def test_config_file_names_the_broker(
    mosquitto: Broker,
    mqtt_prefix: str,
    publishing: Callable[[bytes], None],
    repo_root: Path,
    tmp_path: Path,
) -> None:
    config = tmp_path / "siamedge.yaml"
    config.write_text(
        f"mqtt:\n  host: {mosquitto.host}\n  port: {mosquitto.port}\n"
        f'  topic_prefix: "{mqtt_prefix}"\n',
        encoding="utf-8",
    )
    publishing(results_payload(7))
    done = subprocess.run(
        [sys.executable, "-m", "siamedge.cli", "watch", "--config", str(config), "--count", "1"],
        capture_output=True,
        env=child_env(repo_root),
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == EXPECTED_LINES


def _run_in_pty(
    command: list[str], repo_root: Path, *, until: bytes | None = None, interrupt: bool = False
) -> tuple[int, bytes]:
    """Run `command` on a pseudo-terminal; with `interrupt`, press Ctrl-C once `until` shows."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command, stdin=follower, stdout=follower, stderr=follower, env=child_env(repo_root)
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    interrupted = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if interrupt and not interrupted and until is not None and until in output:
                process.send_signal(signal.SIGINT)
                interrupted = True
            if process.poll() is not None and not ready:
                break
        return process.wait(EXIT_TIMEOUT_S), output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def test_on_a_terminal_the_table_is_redrawn_in_place(
    mosquitto: Broker, mqtt_prefix: str, publishing: Callable[[bytes], None], repo_root: Path
) -> None:
    publishing(results_payload(7))
    code, output = _run_in_pty(
        watch_command(mosquitto, mqtt_prefix, "--count", "5", "--seconds", "15"), repo_root
    )
    assert code == 0, output
    text = output.decode()
    assert text.startswith("\x1b[?25l")  # cursor hidden while drawing...
    assert text.endswith("\x1b[?25h")  # ...and shown again at the end
    assert "\x1b[J" in text  # earlier drawings are cleared and drawn over
    last = text.rsplit("\x1b[J", 1)[-1].removesuffix("\x1b[?25h").replace("\r\n", "\n")
    lines = last.splitlines()
    assert lines[1] == "frame 7  latency 12.5 ms"
    assert lines[2].split() == ["TRACK", "STATE", "CENTER", "SIZE", "SCORE", "LATENCY"]
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[3:]]
    assert cells == [
        ["t1", "tracking", "320.5, 180.2", "100.0 x 60.2", "0.930", "12.5 ms"],
        ["cat", "lost", "50.0, 60.0", "100.0 x 60.2", "0.200", "12.5 ms"],
    ]


def test_ctrl_c_ends_it_cleanly(mosquitto: Broker, mqtt_prefix: str, repo_root: Path) -> None:
    code, output = _run_in_pty(
        watch_command(mosquitto, mqtt_prefix), repo_root, until=b"no results yet", interrupt=True
    )
    assert code == 0, output
    assert output.endswith(b"\x1b[?25h")
    assert b"Traceback" not in output


def watch_port(port: int, repo_root: Path) -> subprocess.CompletedProcess[bytes]:
    """`siamedge watch` for one second against 127.0.0.1:port."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "siamedge.cli",
            "watch",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--seconds",
            "1",
        ],
        capture_output=True,
        env=child_env(repo_root),
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )


def test_an_unreachable_broker_is_reported(mqtt_prefix: str, repo_root: Path) -> None:
    port = free_port()
    done = watch_port(port, repo_root)
    assert done.returncode == EX_UNAVAILABLE
    assert f"no connection to 127.0.0.1:{port}: cannot connect" in done.stderr.decode()


def test_a_tls_listener_is_not_reported_as_a_normal_disconnection(
    mosquitto_factory: Callable[..., Broker], mqtt_tls_files: TlsFiles, repo_root: Path
) -> None:
    broker = mosquitto_factory(listener_config=mqtt_tls_files.listener_config())
    done = watch_port(broker.port, repo_root)
    assert done.returncode == EX_UNAVAILABLE
    stderr = done.stderr.decode()
    assert f"no connection to 127.0.0.1:{broker.port}: {NO_MQTT_ANSWER}" in stderr
    assert "Normal disconnection" not in stderr


def test_a_server_that_never_answers_is_not_said_to_have_closed(
    silent_server: int, repo_root: Path
) -> None:
    # watch's own disconnect at the end was reported as the server closing the connection.
    done = watch_port(silent_server, repo_root)
    assert done.returncode == EX_UNAVAILABLE
    stderr = done.stderr.decode()
    assert f"no connection to 127.0.0.1:{silent_server}: connecting" in stderr
    assert "closed the connection" not in stderr


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--count", "0", "must be at least 1, got 0"),
        ("--count", "-3", "must be at least 1, got -3"),
        ("--seconds", "-1", "must be a finite number above 0, got -1"),
        ("--seconds", "0", "must be a finite number above 0, got 0"),
        ("--seconds", "nan", "must be a finite number above 0, got nan"),
        ("--seconds", "inf", "must be a finite number above 0, got inf"),
        ("--port", "99999", "must be between 1 and 65535, got 99999"),
        ("--port", "0", "must be between 1 and 65535, got 0"),
    ],
)
def test_bad_flags_are_usage_errors(
    flag: str, value: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: accepted, then an immediate exit (69 or 0), a watch that never stopped (nan),
    # or a configuration error about mqtt.port (exit 78). Never reaches a broker: the
    # unreachable 127.0.0.1:1 would make a parsed command exit 69, not 2.
    with pytest.raises(SystemExit) as exited:
        cli_main(["watch", "--host", "127.0.0.1", "--port", "1", "--seconds", "1", flag, value])
    assert exited.value.code == 2
    assert f"argument {flag}: {reason}" in capsys.readouterr().err


def test_a_bad_port_is_a_usage_error_of_the_command(repo_root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "siamedge.cli", "watch", "--port", "99999", "--seconds", "1"],
        capture_output=True,
        env=child_env(repo_root),
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "argument --port: must be between 1 and 65535, got 99999" in stderr
    assert "configuration error" not in stderr


def status_of(payload: bytes) -> Status:
    report = json.loads(payload)
    return Status(online=report["online"], report=report)


def test_a_long_line_counts_the_rows_it_wraps_onto() -> None:
    # A dropped track's reason (about 250 characters) took 4 rows of 80 and was counted as
    # one: every redraw left the old status and reason lines on the screen.
    reason = "track 'cat' dropped: " + "x" * 230
    assert screen_rows(["status", reason, "", "frame 7"], 80) == 1 + 4 + 1 + 1
    assert screen_rows([reason], 1000) == 1
    assert screen_rows(["ab"], 0) == 2


def test_status_and_results_lines() -> None:
    # Acks and malformed messages never reach the view: siamedge.client drops them
    # (tests/test_client.py).
    view = View()
    offline = json.dumps({"online": False, "version": "1.2", "reason": "shutdown"}).encode()
    view = apply(view, status_of(offline))
    assert status_line(view.status, "subscribed") == "siamedge 1.2 offline (shutdown)"
    assert status_line(view.status, "cannot connect: refused") == "broker: cannot connect: refused"
    assert table_lines(view, "subscribed")[1] == "no results yet"

    from siamedge.messaging.protocol import SourceStatus, StatusReport

    report = StatusReport(
        "m", "CPUExecutionProvider", SourceStatus("s", True), 29.97, 0, ("t1",), 4, "rle", 1.0
    )
    view = apply(view, status_of(encode_status(report)))
    assert status_line(view.status, "subscribed").endswith(
        "CPUExecutionProvider · 30.0 fps · 1/4 tracks"
    )
    view = apply(view, parse_results(json.loads(results_payload(7))))
    assert view.results_seen == 1
    assert view.results is not None
    assert plain_lines(view.results) == EXPECTED_LINES
    empty = parse_results(json.loads(encode_results(8, CAPTURE_TIME, (640, 360), [])))
    assert plain_lines(empty) == ["frame 8 (no tracks)"]
    assert table_lines(apply(view, empty), "subscribed")[-1] == "(no tracks)"
