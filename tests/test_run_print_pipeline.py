"""`siamedge run --print-pipeline`: the pipeline a configuration runs, passwords hidden, exit 0,
and no service started; for the other kinds, what the source is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from siamedge.cli import EX_CONFIG, main
from siamedge.config import SourceSettings
from siamedge.run import RTSP_HINT
from siamedge.sources.presets import csi_pipeline

RUN_TIMEOUT_S = 60.0


def write_config(tmp_path: Path, source_yaml: str) -> Path:
    path = tmp_path / "siamedge.yaml"
    path.write_text("source:\n" + source_yaml, encoding="utf-8")
    return path


def print_pipeline(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["run", *argv, "--print-pipeline"]) == 0
    output = capsys.readouterr().out
    assert output.count("\n") == 1, output
    return output.strip()


def test_csi_config_prints_its_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        "  kind: csi\n  sensor_id: 1\n  width: 1280\n  height: 720\n  fps: 60\n  flip: 2\n",
    )
    expected = csi_pipeline(
        SourceSettings(kind="csi", sensor_id=1, width=1280, height=720, fps=60, flip=2)
    )

    assert print_pipeline(["-c", str(config)], capsys) == expected
    assert "sensor-id=1" in expected and "flip-method=2" in expected


def test_rtsp_config_prints_its_pipeline_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        "  kind: rtsp\n  uri: rtsp://admin:s3cret@192.168.1.20:554/stream1\n"
        "  decoder: nvv4l2decoder\n",
    )

    printed = print_pipeline(["--config", str(config)], capsys)

    assert "s3cret" not in printed
    assert printed.startswith(
        'rtspsrc location="rtsp://192.168.1.20:554/stream1" latency=200 protocols=tcp '
        'tcp-timeout=10000000 user-id="admin" user-pw="***" ! rtph264depay ! h264parse ! '
        "nvv4l2decoder ! nvvidconv"
    )


def test_a_users_own_pipeline_is_printed_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path,
        "  uri: >-\n    uridecodebin uri=rtsp://u:s3cret@cam/x ! videoconvert !\n"
        "    appsink drop=true\n",
    )

    printed = print_pipeline(["-c", str(config)], capsys)

    assert printed == "uridecodebin uri=rtsp://u:***@cam/x ! videoconvert ! appsink drop=true"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "synthetic 1280x720 x300: a synthetic source, not a GStreamer pipeline"),
        (
            ["--source", "/dev/video0"],
            "camera /dev/video0: a camera source, not a GStreamer pipeline",
        ),
        (
            ["--source", "rtsp://admin:s3cret@cam/live"],
            "stream rtsp://admin:***@cam/live: a stream source, not a GStreamer pipeline; "
            + RTSP_HINT,
        ),
    ],
)
def test_other_kinds_say_what_the_source_is(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert print_pipeline(argv, capsys) == expected


def test_a_uri_naming_no_source_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--source", "no-such-thing", "--print-pipeline"]) == EX_CONFIG
    assert "source.uri" in capsys.readouterr().err


def test_the_console_command_prints_and_exits_without_starting_the_service(
    tmp_path: Path,
) -> None:
    # mqtt points at a closed port: a started service would log connection attempts.
    config = write_config(tmp_path, "  kind: csi\n")
    config.write_text(
        config.read_text(encoding="utf-8") + "mqtt:\n  host: 127.0.0.1\n  port: 9\n",
        encoding="utf-8",
    )

    done = subprocess.run(
        [sys.executable, "-m", "siamedge.cli", "run", "-c", str(config), "--print-pipeline"],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == csi_pipeline(SourceSettings(kind="csi")) + "\n"
    assert done.stderr == ""
