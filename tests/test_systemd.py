"""siamedge.systemd against a real notify socket: messages, watchdog, timeouts, logging."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.notify_socket import NotifyReceiver

from siamedge.systemd import (
    HANDLER_NAME,
    SYSLOG_IDENTIFIER,
    Notifier,
    NotifyBackend,
    Watchdog,
    configure_logging,
    extended_timeout,
    stream_is_journal,
    syslog_priority,
)

try:
    from systemd import daemon as _probe  # noqa: F401

    HAVE_SYSTEMD_PYTHON = True
except ImportError:
    HAVE_SYSTEMD_PYTHON = False

BACKENDS: list[NotifyBackend] = ["socket", "libsystemd"]
"""Both send paths; the test command installs systemd-python, so neither is skipped."""

SUBPROCESS_TIMEOUT_S = 60


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> NotifyBackend:
    value: NotifyBackend = request.param
    return value


# --- Notifier ----------------------------------------------------------------------------------


def test_ready_sends_ready_and_status(
    notify_socket: NotifyReceiver, backend: NotifyBackend
) -> None:
    notifier = Notifier(backend)
    assert notifier.enabled
    assert notifier.ready("tracking 0 targets")
    message = notify_socket.receive()
    assert message.text == "READY=1\nSTATUS=tracking 0 targets"
    assert message.pid == os.getpid()
    assert notify_socket.drain() == []


def test_status_keeps_to_one_line(notify_socket: NotifyReceiver, backend: NotifyBackend) -> None:
    assert Notifier(backend).status("camera lost\nretrying in 2 s")
    assert notify_socket.receive().fields == {"STATUS": "camera lost retrying in 2 s"}


def test_watchdog_stopping_and_ready_without_status(
    notify_socket: NotifyReceiver, backend: NotifyBackend
) -> None:
    notifier = Notifier(backend)
    assert notifier.ready()
    assert notifier.watchdog()
    assert notifier.stopping("shutting down")
    assert notifier.stopping()
    texts = [message.text for message in notify_socket.drain()]
    assert texts == ["READY=1", "WATCHDOG=1", "STOPPING=1\nSTATUS=shutting down", "STOPPING=1"]


def test_extend_timeout_is_sent_in_microseconds(
    notify_socket: NotifyReceiver, backend: NotifyBackend
) -> None:
    notifier = Notifier(backend)
    assert notifier.extend_timeout(90)
    assert notifier.extend_timeout(2.5)
    texts = [message.text for message in notify_socket.drain()]
    assert texts == ["EXTEND_TIMEOUT_USEC=90000000", "EXTEND_TIMEOUT_USEC=2500000"]
    with pytest.raises(ValueError, match="positive"):
        notifier.extend_timeout(0)


def test_reloading_carries_the_monotonic_clock(
    notify_socket: NotifyReceiver, backend: NotifyBackend
) -> None:
    before_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(backend).reloading()
    after_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = notify_socket.receive().fields
    assert fields["RELOADING"] == "1"
    assert before_usec <= int(fields["MONOTONIC_USEC"]) <= after_usec


def test_abstract_socket_name(
    abstract_notify_socket: NotifyReceiver, backend: NotifyBackend
) -> None:
    assert abstract_notify_socket.address.startswith("@")
    assert Notifier(backend).ready("abstract")
    assert abstract_notify_socket.receive().text == "READY=1\nSTATUS=abstract"


def test_auto_backend_is_the_socket_that_never_blocks(notify_socket: NotifyReceiver) -> None:
    notifier = Notifier()
    assert notifier.backend == "socket"
    assert notifier.watchdog()
    assert notify_socket.receive().text == "WATCHDOG=1"


FLOOD = textwrap.dedent(
    """
    import sys
    from siamedge.systemd import Notifier

    notifier = Notifier()
    sent = sum(notifier.watchdog() for _ in range(2000))
    print(sent, notifier.backend)
    """
)


def test_a_manager_that_stops_reading_does_not_stop_the_service(
    notify_socket: NotifyReceiver, repo_root: Path
) -> None:
    # libsystemd's sd_notify, the old default where systemd-python is installed, blocked on a
    # full queue with the GIL held: the frame loop, capture and MQTT threads all stopped.
    child = subprocess.run(
        [sys.executable, "-c", FLOOD],
        env={**os.environ, "PYTHONPATH": str(repo_root)},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    sent, backend = child.stdout.split()
    assert backend == "socket"
    assert 0 < int(sent) < 2000  # the queue filled; the rest were dropped, not waited for
    assert "sd_notify ('WATCHDOG=1',) failed" in child.stderr


def test_no_op_without_notify_socket(
    notify_socket: NotifyReceiver, monkeypatch: pytest.MonkeyPatch, backend: NotifyBackend
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    notifier = Notifier(backend)
    assert not notifier.enabled
    assert not notifier.ready("nobody listens")
    assert not notifier.watchdog()
    assert not notifier.extend_timeout(10)
    assert notifier.watchdog_interval() is None
    assert notify_socket.drain() == []


def test_send_failure_is_logged_once_and_never_raised(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    backend: NotifyBackend,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    notifier = Notifier(backend)
    with caplog.at_level(logging.DEBUG, logger="siamedge.systemd"):
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    failures = [record for record in caplog.records if "sd_notify" in record.getMessage()]
    assert [r.levelno for r in failures] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_unsupported_address_disables_the_socket_backend(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify.sock")
    with caplog.at_level(logging.WARNING, logger="siamedge.systemd"):
        notifier = Notifier("socket")
    assert not notifier.enabled
    assert "relative/notify.sock" in caplog.text


# --- watchdog_interval -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("2500000", "self", 2.5),
        ("30000000", "parent", None),
        ("30000000", "not-a-pid", None),
        ("0", None, None),
        ("-5", None, None),
        ("thirty", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    notify_socket: NotifyReceiver,
    monkeypatch: pytest.MonkeyPatch,
    usec: str | None,
    pid: str | None,
    expected: float | None,
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        # "parent" is a real, different process: the pytest runner's parent.
        pids = {"self": str(os.getpid()), "parent": str(os.getppid())}
        monkeypatch.setenv("WATCHDOG_PID", pids.get(pid, pid))
    assert Notifier().watchdog_interval() == expected


# --- Watchdog ----------------------------------------------------------------------------------


def _watchdog_pings(receiver: NotifyReceiver) -> int:
    """Drain after each tick: the kernel queues only net.unix.max_dgram_qlen (often 10)."""
    messages = receiver.drain()
    assert all(message.text == "WATCHDOG=1" for message in messages)
    return len(messages)


def test_watchdog_pings_at_half_interval_while_frames_flow(notify_socket: NotifyReceiver) -> None:
    clock = FakeClock()
    watchdog = Watchdog(Notifier(), interval_s=10.0, stall_s=3.0, clock=clock)
    assert watchdog.enabled
    assert watchdog.seconds_until_due() == 0.0
    ping_times, received = [], 0
    for second in range(31):  # one frame and one tick a second, for 30 s
        clock.now = float(second)
        watchdog.frame_processed()
        if watchdog.tick():
            ping_times.append(second)
        received += _watchdog_pings(notify_socket)
    assert ping_times == [0, 5, 10, 15, 20, 25, 30]
    assert received == len(ping_times)
    assert watchdog.seconds_until_due() == 5.0


def test_watchdog_stops_pinging_when_frames_stall_and_resumes(
    notify_socket: NotifyReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    watchdog = Watchdog(Notifier(), interval_s=4.0, stall_s=3.0, clock=clock)
    ping_times, received = [], 0
    with caplog.at_level(logging.INFO, logger="siamedge.systemd"):
        for second in range(40):
            clock.now = float(second)
            if second <= 10 or second >= 30:  # frames stop after t=10 and come back at t=30
                watchdog.frame_processed()
            if watchdog.tick():
                ping_times.append(second)
            received += _watchdog_pings(notify_socket)
    # Every 2 s while frames flow; still at 12 and 13 (last frame 10, within stall_s = 3),
    # none from 14 (stalled) until frames return at 30.
    assert ping_times == [0, 2, 4, 6, 8, 10, 12, 30, 32, 34, 36, 38]
    assert received == len(ping_times)
    stall_logs = [r for r in caplog.records if "withholding watchdog pings" in r.getMessage()]
    assert len(stall_logs) == 1
    assert any("pings resume" in record.getMessage() for record in caplog.records)


def test_watchdog_keeps_pinging_while_a_lost_source_is_retried(
    notify_socket: NotifyReceiver,
) -> None:
    clock = FakeClock()
    watchdog = Watchdog(Notifier(), interval_s=4.0, stall_s=3.0, clock=clock)
    ping_times = []
    for second in range(20):
        clock.now = float(second)
        if second <= 5:
            watchdog.frame_processed()
        elif second % 2 == 0:  # camera gone: a reopen attempt every 2 s
            watchdog.waiting_for_source()
        if watchdog.tick():
            ping_times.append(second)
        assert _watchdog_pings(notify_socket) == (1 if ping_times[-1] == second else 0)
    assert ping_times == list(range(0, 20, 2))


def test_watchdog_grants_stall_s_before_the_first_frame(notify_socket: NotifyReceiver) -> None:
    clock = FakeClock()
    clock.now = 100.0
    watchdog = Watchdog(Notifier(), interval_s=2.0, stall_s=5.0, clock=clock)
    assert watchdog.tick(now=101.0)
    assert watchdog.tick(now=105.0)
    assert not watchdog.tick(now=106.0)  # created at 100, no frame yet: stalled after 105
    assert _watchdog_pings(notify_socket) == 2


def test_watchdog_from_environment(
    notify_socket: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    watchdog = Watchdog.from_environment(Notifier(), stall_s=10.0, clock=FakeClock())
    assert watchdog.ping_interval_s == 15.0
    assert watchdog.tick()
    assert _watchdog_pings(notify_socket) == 1


def test_watchdog_disabled_without_watchdog_usec(notify_socket: NotifyReceiver) -> None:
    clock = FakeClock()
    watchdog = Watchdog.from_environment(Notifier(), stall_s=10.0, clock=clock)
    assert not watchdog.enabled
    assert watchdog.seconds_until_due() is None
    for second in range(20):
        clock.now = float(second)
        watchdog.frame_processed()
        assert not watchdog.tick()
    assert notify_socket.drain() == []


def test_watchdog_rejects_a_non_positive_stall() -> None:
    with pytest.raises(ValueError, match="stall_s"):
        Watchdog(Notifier(), interval_s=10.0, stall_s=0.0)


# --- extended_timeout --------------------------------------------------------------------------


def _extend_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "siamedge-extend-timeout"]


def test_extended_timeout_repeats_until_the_block_ends(notify_socket: NotifyReceiver) -> None:
    window_s = 0.05
    with extended_timeout(Notifier(), window_s, status="building TensorRT engine"):
        received = [notify_socket.receive() for _ in range(6)]  # 3 rounds of extend + status
        assert len(_extend_threads()) == 1
    assert _extend_threads() == []
    extends = [m.fields for m in received if "EXTEND_TIMEOUT_USEC" in m.fields]
    statuses = [m.fields["STATUS"] for m in received if "STATUS" in m.fields]
    assert extends == [{"EXTEND_TIMEOUT_USEC": "50000"}] * 3
    assert all(re.fullmatch(r"building TensorRT engine \(\d+ s\)", s) for s in statuses)
    assert len(statuses) == 3


def test_extended_timeout_pings_the_watchdog_once_the_service_is_ready(
    notify_socket: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model loaded again while running: the start timeout is over, the watchdog is armed.
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    notifier = Notifier()
    assert notifier.ready()
    notify_socket.receive()
    started = time.monotonic()
    with extended_timeout(notifier, 60.0, status="loading model"):
        received = [notify_socket.receive() for _ in range(6)]
    elapsed_s = time.monotonic() - started
    assert [m.fields for m in received if "STATUS" not in m.fields] == [{"WATCHDOG": "1"}] * 3
    assert elapsed_s < 30.0  # every half WatchdogSec (0.02 s), not every half window (30 s)


def test_extended_timeout_goes_quiet_once_a_stop_is_asked_for(
    notify_socket: NotifyReceiver,
) -> None:
    stop = threading.Event()
    with extended_timeout(Notifier(), 0.05, status="loading model", stop=stop):
        notify_socket.receive()  # the first extension
        stop.set()
        time.sleep(0.1)  # one sent while the stop was being asked for may still come
        notify_socket.drain()
        time.sleep(0.3)  # six periods
        late = notify_socket.drain()
    assert not any("EXTEND_TIMEOUT_USEC" in m.fields for m in late), late


def test_extended_timeout_is_a_no_op_outside_systemd(
    notify_socket: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET")
    with extended_timeout(Notifier(), 0.01):
        assert _extend_threads() == []
    assert notify_socket.drain() == []


# --- across processes --------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from siamedge.systemd import Notifier, Watchdog

    notifier = Notifier(sys.argv[1])
    notifier.ready("child up")
    watchdog = Watchdog.from_environment(notifier, stall_s=10.0)
    watchdog.frame_processed()
    watchdog.tick()
    notifier.stopping()
    """
)


def _run_child(repo_root: Path, backend: NotifyBackend, env: dict[str, str]) -> int:
    """Run CHILD the way systemd starts a service: WATCHDOG_PID is the exec'd process's pid."""
    shell = 'WATCHDOG_PID=${WATCHDOG_PID:-$$}; export WATCHDOG_PID; exec "$@"'
    child_env = {**os.environ, "PYTHONPATH": str(repo_root), **env}
    child = subprocess.run(
        ["/bin/sh", "-c", shell, "sh", sys.executable, "-c", CHILD, backend],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    return child.returncode


def test_child_process_notifies_through_the_socket(
    notify_socket: NotifyReceiver, repo_root: Path, backend: NotifyBackend
) -> None:
    _run_child(repo_root, backend, {"WATCHDOG_USEC": "30000000"})
    messages = notify_socket.drain()
    assert [m.text for m in messages] == ["READY=1\nSTATUS=child up", "WATCHDOG=1", "STOPPING=1"]
    sender_pids = {m.pid for m in messages}
    assert len(sender_pids) == 1
    assert sender_pids != {os.getpid()}  # the child sent them, not this process


def test_child_with_another_process_watchdog_pid_does_not_ping(
    notify_socket: NotifyReceiver, repo_root: Path, backend: NotifyBackend
) -> None:
    _run_child(repo_root, backend, {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
    assert [m.text for m in notify_socket.drain()] == ["READY=1\nSTATUS=child up", "STOPPING=1"]


# --- logging -----------------------------------------------------------------------------------


@pytest.fixture
def restore_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[io.TextIOWrapper]:
    with (tmp_path / "stderr.log").open("w+", encoding="utf-8") as stream:
        yield stream


def _journal_stream_of(stream: io.TextIOWrapper) -> str:
    info = os.fstat(stream.fileno())
    return f"{info.st_dev}:{info.st_ino}"


def _log_lines(stream: io.TextIOWrapper) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_console_logging_has_timestamps(
    restore_root_logger: logging.Logger,
    log_file: io.TextIOWrapper,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    handler = configure_logging("INFO", stream=log_file)
    assert isinstance(handler, logging.StreamHandler)
    assert restore_root_logger.level == logging.INFO
    logging.getLogger("siamedge.test").info("tracking %d targets", 2)
    logging.getLogger("siamedge.test").debug("not shown at INFO")
    lines = _log_lines(log_file)
    assert len(lines) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    siamedge\.test: tracking 2 targets", lines[0]
    )


def test_journal_stream_lines_have_priority_and_no_timestamp(
    restore_root_logger: logging.Logger,
    log_file: io.TextIOWrapper,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(log_file))
    assert stream_is_journal(log_file)
    configure_logging(logging.DEBUG, stream=log_file, native_journal=False)
    log = logging.getLogger("siamedge.test")
    log.debug("d")
    log.info("camera %s opened", "/dev/video0")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert _log_lines(log_file) == [
        "<7>siamedge.test: d",
        "<6>siamedge.test: camera /dev/video0 opened",
        "<4>siamedge.test: w",
        "<3>siamedge.test: e",
        "<2>siamedge.test: c",
    ]


def test_journal_stream_of_another_file_is_not_the_journal(
    restore_root_logger: logging.Logger,
    log_file: io.TextIOWrapper,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with (tmp_path / "other.log").open("w", encoding="utf-8") as other:
        monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(other))
    assert not stream_is_journal(log_file)
    configure_logging("INFO", stream=log_file)
    logging.getLogger("siamedge.test").info("x")
    (line,) = _log_lines(log_file)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    siamedge\.test: x", line)


@pytest.mark.parametrize("value", ["", "garbage", "1:", ":2", "1:2:3"])
def test_malformed_journal_stream_is_ignored(
    log_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", value)
    assert not stream_is_journal(log_file)


def test_native_journal_handler_sends_structured_fields(
    restore_root_logger: logging.Logger,
    log_file: io.TextIOWrapper,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from systemd.journal import JournalHandler

    monkeypatch.setenv("JOURNAL_STREAM", _journal_stream_of(log_file))
    handler = configure_logging("INFO", stream=log_file)
    assert isinstance(handler, JournalHandler)
    # No journald in the test machine: catch what the handler would hand to sd_journal_send.
    sent: list[tuple[tuple[object, ...], dict[str, object]]] = []
    handler.send = lambda *args, **fields: sent.append((args, fields))
    logging.getLogger("siamedge.test").warning("camera %s lost", "/dev/video0")
    assert len(sent) == 1
    args, fields = sent[0]
    assert args == ("siamedge.test: camera /dev/video0 lost",)
    assert fields["SYSLOG_IDENTIFIER"] == SYSLOG_IDENTIFIER
    assert fields["PRIORITY"] == "4"
    assert fields["LOGGER"] == "siamedge.test"
    assert _log_lines(log_file) == []  # nothing doubled onto stderr


def test_configure_logging_is_idempotent(
    restore_root_logger: logging.Logger,
    log_file: io.TextIOWrapper,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure_logging("DEBUG", stream=log_file)
    configure_logging("WARNING", stream=log_file)
    ours = [h for h in restore_root_logger.handlers if h.get_name() == HANDLER_NAME]
    assert len(ours) == 1
    assert restore_root_logger.level == logging.WARNING
    logging.getLogger("siamedge.test").warning("once")
    assert len(_log_lines(log_file)) == 1


@pytest.mark.parametrize(
    ("level", "priority"),
    [(logging.DEBUG, 7), (logging.INFO, 6), (25, 4), (logging.WARNING, 4), (logging.ERROR, 3)],
)
def test_syslog_priority(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority
