"""Native libraries' output through logging, each line once: the line keys and levels, the
repeat filter, real FFmpeg output in a process of its own, and the daemon retrying a camera."""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest
from fixtures.daemon import Daemon, daemon_config, unique_prefix, wait_online
from fixtures.mosquitto import WAIT_TIMEOUT_S, Broker, MqttCollector, free_port

from siamedge.native_log import NativeOutput, RepeatFilter, line_key, line_level, relay

RUN_TIMEOUT_S = 60

FFMPEG_REFUSED = (
    "[tcp @ 0x55d36d270480] Connection to tcp://127.0.0.1:9?timeout=0 failed: Connection refused"
)
OPENCV_WARN = (
    "[ WARN:0@0.015] global cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available "
    "but can't be used to capture by name"
)
GLIB_CRITICAL = (
    "(python3:4242): GStreamer-CRITICAL **: 21:50:03.123: Trying to dispose element pipeline0, "
    "but it is in PLAYING instead of the NULL state."
)


@pytest.mark.parametrize(
    ("first", "again"),
    [
        (FFMPEG_REFUSED, FFMPEG_REFUSED.replace("0x55d36d270480", "0x55d36d2a1b00")),
        (OPENCV_WARN, OPENCV_WARN.replace("0@0.015", "0@31.207")),
        (GLIB_CRITICAL, GLIB_CRITICAL.replace("4242", "77").replace("21:50:03.123", "22:01:09.5")),
    ],
)
def test_a_line_said_again_has_the_same_key(first: str, again: str) -> None:
    assert line_key(first) == line_key(again)


def test_what_tells_lines_apart_stays_in_the_key() -> None:
    other_port = FFMPEG_REFUSED.replace("127.0.0.1:9", "127.0.0.1:10")
    assert line_key(FFMPEG_REFUSED) != line_key(other_port)
    assert line_key("NvMMLiteOpen : Block : BlockType = 261") == (
        "NvMMLiteOpen : Block : BlockType = 261"
    )


@pytest.mark.parametrize(
    ("line", "level"),
    [
        (FFMPEG_REFUSED, logging.WARNING),
        ("[h264 @ 0x7f01c8] error while decoding MB 12 4, bytestream -5", logging.WARNING),
        (OPENCV_WARN, logging.WARNING),
        ("[ERROR:0@1.2] global cap_gstreamer.cpp:1436 open OpenCV | GStreamer: x", logging.ERROR),
        (GLIB_CRITICAL, logging.WARNING),
        ("(siamedge:12): GLib-ERROR **: 10:00:00.000: out of memory", logging.ERROR),
        ("NvMMLiteOpen : Block : BlockType = 261", logging.INFO),
        ("You need to explicitly set elements to the NULL state before", logging.INFO),
    ],
)
def test_the_level_is_read_off_the_line(line: str, level: int) -> None:
    assert line_level(line) == level


def test_a_repeat_comes_at_debug_and_at_its_level_again_after_the_reminder() -> None:
    repeats = RepeatFilter(reminder_s=600.0)
    moved = FFMPEG_REFUSED.replace("0x55d36d270480", "0x1")
    assert repeats.admit(FFMPEG_REFUSED, now=0.0) == (logging.WARNING, 0)
    assert repeats.admit(moved, now=30.0) == (logging.DEBUG, 0)
    assert repeats.admit(moved, now=60.0) == (logging.DEBUG, 0)
    assert repeats.admit(OPENCV_WARN, now=61.0) == (logging.WARNING, 0)
    assert repeats.admit(FFMPEG_REFUSED, now=600.5) == (logging.WARNING, 2)
    assert repeats.admit(FFMPEG_REFUSED, now=601.0) == (logging.DEBUG, 0)


def test_only_so_many_lines_are_remembered() -> None:
    repeats = RepeatFilter(keys_kept=2)
    for line in ("a", "b", "c"):
        assert repeats.admit(line, now=0.0) == (logging.INFO, 0)
    assert repeats.admit("c", now=1.0) == (logging.DEBUG, 0)
    assert repeats.admit("a", now=1.0) == (logging.INFO, 0)  # forgotten: the oldest


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )


def test_ffmpeg_and_glib_lines_are_logged_once_and_python_output_stays_as_it_was() -> None:
    port = free_port()
    done = _run(
        f"""
        import logging, os, sys
        import cv2
        from siamedge.native_log import NativeOutput
        from siamedge.systemd import configure_logging

        with NativeOutput():
            configure_logging(logging.INFO)
            critical = {GLIB_CRITICAL.encode()!r}
            for attempt in range(3):
                cv2.VideoCapture("rtsp://127.0.0.1:{port}/live", cv2.CAP_FFMPEG)
                os.write(2, critical.replace(b"4242", str(attempt).encode()) + b"\\n")
            os.write(1, b"NvMMLiteOpen : Block : BlockType = 261\\n")
            print("printed by Python")
            sys.stderr.write("written by Python\\n")
        os.write(2, b"native again, after\\n")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "printed by Python\n"
    err = done.stderr.splitlines()
    refused = [line for line in err if f"Connection to tcp://127.0.0.1:{port}" in line]
    assert len(refused) == 1, done.stderr
    assert " WARNING siamedge.native: [tcp @ 0x" in refused[0]
    critical = [line for line in err if "GStreamer-CRITICAL" in line]
    assert len(critical) == 1 and " WARNING siamedge.native: (python3:0)" in critical[0]
    assert any(
        line.endswith(" INFO    siamedge.native: NvMMLiteOpen : Block : BlockType = 261")
        for line in err
    ), done.stderr
    assert "written by Python" in err
    assert err[-1] == "native again, after"


def test_a_relay_that_falls_behind_drops_native_lines_and_never_blocks_the_writer() -> None:
    done = _run(
        """
        import os, signal
        from siamedge.native_log import NativeOutput

        with NativeOutput() as native:
            os.kill(native.relay_pid, signal.SIGSTOP)  # reads nothing from now on
            written = 0
            try:
                for _ in range(64):  # 4 MiB, far beyond any pipe's buffer
                    written += os.write(2, b"x" * 65535 + b"\\n")
            except BlockingIOError:
                print(f"refused after {written} bytes", flush=True)
            os.kill(native.relay_pid, signal.SIGCONT)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused after ")


def test_what_a_library_writes_just_before_it_aborts_the_daemon_is_logged() -> None:
    # A C++ library's last words, written and aborted on with the GIL held (ctypes.PyDLL): a
    # reader thread in the dying process could not have logged them.
    done = _run(
        """
        import ctypes, logging, os
        from siamedge.native_log import NativeOutput
        from siamedge.systemd import configure_logging

        libc = ctypes.PyDLL(None)
        with NativeOutput():
            configure_logging(logging.INFO)
            logging.getLogger("test").info("started")
            words = (
                b"terminate called after throwing an instance of 'std::runtime_error'\\n"
                b"  what():  CUDA failure 2: out of memory\\n"
            )
            libc.write(2, words, len(words))
            libc.abort()
        """
    )
    assert done.returncode == -signal.SIGABRT
    err = done.stderr.splitlines()
    assert any(line.endswith(" INFO    test: started") for line in err), done.stderr
    assert any(
        line.endswith(
            " ERROR   siamedge.native: terminate called after throwing an instance of "
            "'std::runtime_error'"
        )
        for line in err
    ), done.stderr
    assert any(
        line.endswith(" ERROR   siamedge.native:   what():  CUDA failure 2: out of memory")
        for line in err
    ), done.stderr


def test_closing_logs_what_is_left_while_a_child_still_holds_the_pipe() -> None:
    # A process the daemon started keeps descriptors 1 and 2: the relay must not wait for it.
    done = _run(
        """
        import logging, os, subprocess
        from siamedge.native_log import NativeOutput
        from siamedge.systemd import configure_logging

        with NativeOutput():
            configure_logging(logging.INFO)
            child = subprocess.Popen(["sleep", "30"], stdout=1, stderr=2)
            os.write(2, b"written before closing\\n")
        print(f"child running: {child.poll() is None}", flush=True)
        child.kill()
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "child running: True\n"
    assert " INFO    siamedge.native: written before closing" in done.stderr
    # A relay waiting for the child would be killed after JOIN_TIMEOUT_S, and that logged.
    assert "the native output relay ended" not in done.stderr, done.stderr


def test_the_relay_logs_what_the_pipe_holds_when_its_lifeline_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source_read, source_write = os.pipe()
    lifeline_read, lifeline_write = os.pipe()
    os.write(source_write, b"first\n[ WARN:0@1.5] second\nno line end")
    os.close(lifeline_write)  # the write end of source stays open
    with caplog.at_level(logging.DEBUG, logger="siamedge.native"):
        relay(source_read, lifeline_read)
    for fd in (source_read, source_write, lifeline_read):
        os.close(fd)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "first"),
        (logging.WARNING, "[ WARN:0@1.5] second"),
        (logging.INFO, "no line end"),
    ]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_open_without_descriptors_left_is_a_no_op_that_leaks_none() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    filler: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_descriptors() + 64, hard))
    try:
        try:
            while True:
                filler.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for free in range(1, 8):  # fail at each of the dups and pipes in turn
            for fd in filler[-free:]:
                os.close(fd)
            del filler[-free:]
            before = open_descriptors()
            output = NativeOutput()
            output.open()  # no OSError out of it
            assert output.relay_pid is None
            assert open_descriptors() == before
            filler += [os.open(os.devnull, os.O_RDONLY) for _ in range(free)]
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


DaemonFactory = Callable[..., Daemon]
CollectorFactory = Callable[..., MqttCollector]


def test_the_daemon_logs_ffmpegs_reason_for_a_camera_that_is_down_once(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    # FFmpeg and OpenCV wrote their lines to the journal at every reopen attempt, for ever.
    port = free_port()
    config = daemon_config(
        mosquitto,
        unique_prefix(),
        source={"uri": f"rtsp://127.0.0.1:{port}/live", "reopen_min_s": 0.1, "reopen_max_s": 0.2},
        service={"log_level": "DEBUG"},
    )
    daemon = daemon_factory(config)
    wait_online(mqtt_collector(mosquitto, daemon.topics), daemon, with_frames=False)
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while "(attempt 4)" not in daemon.log:
        assert time.monotonic() < deadline, daemon.log
        time.sleep(0.1)
    refused = f"Connection to tcp://127.0.0.1:{port}"
    lines = [line for line in daemon.log.splitlines() if refused in line]
    assert len([line for line in lines if " WARNING siamedge.native: [tcp @ 0x" in line]) == 1
    assert len([line for line in lines if " DEBUG   siamedge.native: [tcp @ 0x" in line]) >= 3
    assert all("siamedge.native: " in line for line in lines), lines
    assert not [line for line in daemon.log.splitlines() if line.startswith(("[tcp @", "[ WARN"))]
    assert daemon.process.poll() is None
