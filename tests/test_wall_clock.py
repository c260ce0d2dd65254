"""The service under a wall clock that jumps: a board without a battery clock boots in the past
and NTP steps it by years. Waits are measured on the monotonic clock."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.daemon import daemon_config, unique_prefix
from fixtures.mosquitto import Broker
from fixtures.waiting import wait_until

from siamedge.config import Settings
from siamedge.errors import CommandError
from siamedge.frontend import Request
from siamedge.service import Service, unset_clock_warning

MAX_AGE_S = 2.0
YEAR_S = 400 * 86400.0


class Answers:
    """A Responder that keeps what it was told, with the monotonic time."""

    def __init__(self) -> None:
        self.rejected_at: list[tuple[float, str]] = []

    def accepted(self, track_id: str | None, request_id: str | None) -> None:
        raise AssertionError(f"a start without frames was accepted: {track_id}")

    def rejected(self, error: CommandError) -> None:
        self.rejected_at.append((time.monotonic(), error.reason))


@pytest.fixture
def frameless_service(
    mosquitto: Broker, tmp_path: Path
) -> Iterator[tuple[Service, queue.Queue[Request]]]:
    """A running service whose source (a missing file) gives no frames, with an inbox."""
    config = daemon_config(
        mosquitto,
        unique_prefix(),
        source={"uri": str(tmp_path / "missing.mp4"), "kind": "file"},
        mqtt={"command_max_age_s": MAX_AGE_S},
    )
    service = Service(Settings.model_validate(config))
    inbox: queue.Queue[Request] = queue.Queue()

    def drain() -> list[Request]:
        taken = []
        while not inbox.empty():
            taken.append(inbox.get())
        return taken

    service.add_inbox(drain)
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        wait_until(lambda: service.snapshot().status is not None, "the service to run", 60.0)
        yield service, inbox
    finally:
        service.stop()
        runner.join(30.0)


@pytest.mark.parametrize("step_s", [YEAR_S, -2 * 3600.0])
def test_a_start_waiting_for_a_frame_expires_by_the_time_it_waited(
    frameless_service: tuple[Service, queue.Queue[Request]],
    monkeypatch: pytest.MonkeyPatch,
    step_s: float,
) -> None:
    # A step forward expired it at once ("34560001.5 s old"); a step back kept it waiting
    # until the clock came back, so a camera back meanwhile would start an old box.
    _, inbox = frameless_service
    answers = Answers()
    sent = time.monotonic()
    inbox.put(Request("start", b'{"box": [10, 10, 40, 40]}', answers))
    wait_until(inbox.empty, "the service to take the start")
    time.sleep(0.5)  # well inside the loop turn that took it, and before it expires
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + step_s)
    wait_until(lambda: bool(answers.rejected_at), "the stale answer", 30.0)
    ((answered, reason),) = answers.rejected_at
    assert answered - sent >= MAX_AGE_S
    waited_s = float(reason.split(" ")[1])
    assert MAX_AGE_S <= waited_s < MAX_AGE_S + 10.0, reason  # printed to 0.1 s
    assert reason.startswith("stale: ") and "s old and still no frame to start on" in reason


def test_a_clock_that_was_never_set_is_named_at_start() -> None:
    assert unset_clock_warning(1_514_764_800.0) == (
        "the system clock says 2018-01-01 00:00:00 UTC, before this release of siamedge: not "
        "set yet (no battery clock, no NTP sync)? Commands with sent_at are refused until it "
        "is, and results carry its timestamps"
    )
    assert unset_clock_warning(time.time()) is None
