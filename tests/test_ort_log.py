"""onnxruntime's own output through logging: parsing, collapsing, pass-through, fd 2 safety."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import onnxruntime as ort
import pytest
from fixtures.onnxruntime_gpu_text import (
    REAL_CUDA_FAILURE,
    REAL_FALLBACK_PRINT,
    REAL_TRT_LIBRARY_ERROR,
    cudnn_lines,
)

from siamedge import ort_log
from siamedge.models import resolve_model_path

ORT_LOGGER = "siamedge.onnxruntime"


def ort_messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == ORT_LOGGER and record.levelno >= level
    ]


@pytest.fixture
def default_severity_restored() -> Iterator[None]:
    """onnxruntime's default logger is process-wide: put it back to warning after the test."""
    yield
    ort.set_default_logger_severity(ort_log.severity("warning"))


def test_verbose_session_lines_come_out_on_the_logger_not_on_stderr(
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    default_severity_restored: None,
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    options = ort.SessionOptions()
    ort_log.apply_severity(ort, options, "verbose")
    assert options.log_severity_level == 0
    with ort_log.captured():
        ort.InferenceSession(
            str(resolve_model_path("builtin")), options, providers=["CPUExecutionProvider"]
        )
    out, err = capfd.readouterr()
    assert ":onnxruntime:" not in err
    assert out == ""
    levels = {
        record.levelno
        for record in caplog.records
        if record.name == ORT_LOGGER and record.levelno < logging.WARNING
    }
    assert levels == {logging.DEBUG, logging.INFO}  # verbose -> DEBUG, info -> INFO
    messages = ort_messages(caplog)
    assert any("Initializing session." in message for message in messages)
    assert all("\x1b" not in message for message in messages)


def test_warning_severity_keeps_a_cpu_session_quiet(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    options = ort.SessionOptions()
    ort_log.apply_severity(ort, options, "warning")
    with ort_log.captured():
        ort.InferenceSession(
            str(resolve_model_path("builtin")), options, providers=["CPUExecutionProvider"]
        )
    assert capfd.readouterr().err == ""
    # onnxruntime 1.17 says what it folded, collapsed to one line at DEBUG (see below).
    assert ort_messages(caplog, logging.INFO) == []


def test_real_provider_failure_text_is_parsed_and_kept_off_the_warnings(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    with ort_log.captured() as output:
        os.write(2, (REAL_TRT_LIBRARY_ERROR + REAL_CUDA_FAILURE).encode())
        print(REAL_FALLBACK_PRINT, end="")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert output.provider_problem("TensorrtExecutionProvider") == "missing library libcublas.so.13"
    assert output.provider_problem("CUDAExecutionProvider") == "missing library libcublasLt.so.13"
    assert output.provider_problem("CPUExecutionProvider") is None
    assert [line.severity for line in output.lines] == ["E", "W", "E", "W"]
    assert output.lines[0].location == "provider_bridge_ort.cc:2430 operator()"
    assert output.lines[0].message.endswith("No such file or directory")
    fallback = output.fallbacks[0]
    assert fallback.fallback == "['CUDAExecutionProvider', 'CPUExecutionProvider']"
    assert ort_log.short_ort_error(fallback.error).startswith("Please install TensorRT libraries")
    # providers.py reports these as one line per provider: here they are DEBUG only.
    assert ort_messages(caplog, logging.INFO) == []
    assert len(ort_messages(caplog)) == 5


def test_reason_from_onnxruntime_when_no_library_is_named() -> None:
    only_create_failure = REAL_CUDA_FAILURE.split("\n\x1b[m\n")[1]
    with ort_log.captured() as output:
        os.write(2, only_create_failure.encode())
    assert output.provider_problem("CUDAExecutionProvider") == "requires cuDNN 9.* and CUDA 13.*"


def test_cudnn_repeats_collapse_to_one_line_each(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    with ort_log.captured() as output:
        os.write(2, cudnn_lines(7).encode())
    assert capfd.readouterr().err == ""
    assert len(output.lines) == 14
    records = [record for record in caplog.records if record.name == ORT_LOGGER]
    assert [record.levelno for record in records] == [logging.WARNING, logging.ERROR]
    assert records[0].getMessage() == (
        "OP Conv(/track/conv0) running in Fallback mode. May be extremely slow."
        " [conv.cc:425 UpdateState] (7 such lines)"
    )
    assert "No execution plans support the graph. " in records[1].getMessage()
    assert records[1].getMessage().endswith("(7 such lines)")


# onnxruntime 1.17.3 creating a CPU session of the builtin model (52 such lines; the file holds
# no initializer: they are constants onnxruntime folded and then found unused).
ORT_1_17_UNUSED_INITIALIZERS = "".join(
    f"\x1b[0;93m2026-12-07 12:58:21.733628702 [W:onnxruntime:, graph.cc:3593 "
    f"CleanUnusedInitializersAndNodeArgs] Removing initializer '{name}'. It is not used by any "
    "node and should be removed from the model.\x1b[m\n"
    for name in ("init/077_ReduceSum", "init/031_Cast", "track/const043_grid_y")
)


def test_onnxruntime_1_17s_unused_initializer_lines_are_one_debug_line(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # They were 52 warnings in the journal on every start with onnxruntime 1.17 (JetPack 6).
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    with ort_log.captured() as output:
        os.write(2, ORT_1_17_UNUSED_INITIALIZERS.encode())
    assert capfd.readouterr().err == ""
    assert len(output.lines) == 3
    records = [record for record in caplog.records if record.name == ORT_LOGGER]
    assert [(record.levelno, record.getMessage()) for record in records] == [
        (
            logging.DEBUG,
            "Removing initializer 'init/077_ReduceSum'. It is not used by any node and should be "
            "removed from the model. [graph.cc:3593 CleanUnusedInitializersAndNodeArgs] "
            "(3 such lines)",
        )
    ]


def test_a_single_cudnn_line_is_logged_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    with ort_log.captured():
        os.write(2, cudnn_lines(1).encode())
    assert ort_messages(caplog)[0].endswith("[conv.cc:425 UpdateState]")


def test_other_text_passes_through_unchanged_and_in_order(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    with ort_log.captured():
        os.write(2, b"before: not onnxruntime\n")
        os.write(2, cudnn_lines(2).encode())
        os.write(2, b"2026-11-27 10:00:00 [W something else] looks like a log line\npartial")
        print("a print of some other library")
    out, err = capfd.readouterr()
    assert err == (
        "before: not onnxruntime\n"
        "2026-11-27 10:00:00 [W something else] looks like a log line\npartial"
    )
    assert out == "a print of some other library\n"
    assert len(ort_messages(caplog)) == 2


def test_other_threads_lines_reach_stderr_in_order(capfd: pytest.CaptureFixture[str]) -> None:
    started, release = threading.Event(), threading.Event()

    def writer() -> None:
        started.set()
        for index in range(50):
            os.write(2, f"thread line {index}\n".encode())
        release.wait(timeout=10)

    thread = threading.Thread(target=writer)
    with ort_log.captured():
        thread.start()
        started.wait(timeout=10)
        os.write(2, REAL_TRT_LIBRARY_ERROR.encode())
        release.set()
        thread.join(timeout=10)
    err = capfd.readouterr().err
    assert err.splitlines() == [f"thread line {index}" for index in range(50)]


def test_fd2_and_stdout_are_restored_when_the_block_raises(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    before = os.fstat(2)
    with pytest.raises(RuntimeError, match="session failed"), ort_log.captured():
        os.write(2, b"written inside\n" + cudnn_lines(1).encode())
        raise RuntimeError("session failed")
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)
    os.write(2, b"written after\n")
    print("printed after")
    out, err = capfd.readouterr()
    assert err == "written inside\nwritten after\n"
    assert out == "printed after\n"
    assert len(ort_messages(caplog)) == 2


def test_nested_blocks_route_each_line_once(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    with ort_log.captured() as outer:
        os.write(2, b"outer text\n")
        with ort_log.captured() as inner:
            os.write(2, REAL_TRT_LIBRARY_ERROR.encode() + b"inner text\n")
    assert capfd.readouterr().err == "outer text\ninner text\n"
    assert len(inner.lines) == 1
    assert outer.lines == []
    assert len(ort_messages(caplog)) == 1


def test_severity_names() -> None:
    assert [ort_log.severity(name) for name in ("verbose", "info", "warning", "error")] == [
        0,
        1,
        2,
        3,
    ]


def test_short_error_drops_source_path_and_signature(tmp_path: Path) -> None:
    text = (
        "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043"
        " onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 :"
        " FAIL : Failed to load library x.so with error: y\nsecond line"
    )
    assert ort_log.short_ort_error(text) == "Failed to load library x.so with error: y"
    assert ort_log.short_ort_error(f"plain message about {tmp_path}") == (
        f"plain message about {tmp_path}"
    )


def test_run_time_fallback_print_is_parsed_too(capfd: pytest.CaptureFixture[str]) -> None:
    """Session.run prints a shorter block when a provider fails while running."""
    with ort_log.captured() as output:
        print(
            "EP Error: CUDA failure 700: an illegal memory access using ['CUDAExecutionProvider']"
        )
        print("Falling back to ['CPUExecutionProvider'] and retrying.")
        print("unrelated")
    assert capfd.readouterr().out == "unrelated\n"
    assert output.fallbacks[0].error == "CUDA failure 700: an illegal memory access"
    assert output.provider_problem("CUDAExecutionProvider") == (
        "CUDA failure 700: an illegal memory access"
    )


def speaking(*texts: str) -> Callable[[bool], None]:
    """A model call that writes the next of `texts` to fd 2 each time it runs."""
    said = iter(texts)

    def run(captured: bool) -> None:
        os.write(2, next(said).encode())

    return run


def test_a_session_that_repeats_cudnn_lines_on_every_run_logs_them_once(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    capture = ort_log.RunCapture()
    runs = 5
    run = speaking(*[cudnn_lines(1)] * runs)
    assert [capture.run(("session", 4), run) for _ in range(runs)] == [None] * runs
    assert capfd.readouterr().err == ""
    assert capture.is_noisy(("session", 4))
    loud = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.levelno for record in loud] == [logging.WARNING, logging.ERROR]
    assert "running in Fallback mode" in loud[0].getMessage()
    assert "No execution plans support the graph" in loud[1].getMessage()
    quiet = [record for record in caplog.records if record.levelno == logging.DEBUG]
    assert len(quiet) == 2 * (runs - 1)


SESSION_WARNING = (
    "\x1b[0;93m2026-11-27 10:00:00.123456789 [W:onnxruntime:, session_state.cc:1598"
    " VerifyEachNodeIsAssignedToAnEp] Some nodes were not assigned to the preferred execution"
    " providers which may or may not have an negative impact on performance.\x1b[m\n"
)


def test_a_session_without_cudnn_repeats_is_captured_only_on_its_first_runs(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    capture = ort_log.RunCapture()
    run = speaking(SESSION_WARNING, "", "unrelated text after the watched runs\n")
    for _ in range(3):
        capture.run(("session", 1), run)
    assert not capture.is_noisy(("session", 1))
    assert capfd.readouterr().err == "unrelated text after the watched runs\n"
    assert [message.split(" [")[0] for message in ort_messages(caplog, logging.WARNING)] == [
        "Some nodes were not assigned to the preferred execution providers which may or may"
        " not have an negative impact on performance."
    ]


def test_a_session_that_warns_on_every_run_stays_captured_and_says_it_once(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # A session warning (an output of another shape than declared) went raw to stderr, in
    # colour, once per frame after the watched runs: 904 lines in 30 s.
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    capture = ort_log.RunCapture()
    runs = 6
    run = speaking(*[SESSION_WARNING] * runs)
    for _ in range(runs):
        capture.run(("session", 1), run)
    assert capture.is_noisy(("session", 1))
    assert capfd.readouterr().err == ""
    assert len(ort_messages(caplog, logging.WARNING)) == 1
    assert len(ort_messages(caplog, logging.DEBUG)) == runs


def test_cudnn_repeats_in_a_first_run_keep_the_key_captured(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ORT_LOGGER)
    capture = ort_log.RunCapture()
    # As on an H200 with the fp16 export: many lines on the first run, none on the second,
    # three again when another clip starts.
    run = speaking(cudnn_lines(9), "", "", cudnn_lines(3))
    for _ in range(4):
        capture.run(("session", 4), run)
    assert capture.is_noisy(("session", 4))
    assert capfd.readouterr().err == ""
    assert len(ort_messages(caplog, logging.WARNING)) == 2
    # Each key is watched on its own: another batch size starts over.
    capture.run(("session", 1), speaking("not onnxruntime\n"))
    assert not capture.is_noisy(("session", 1))
    assert capfd.readouterr().err == "not onnxruntime\n"
