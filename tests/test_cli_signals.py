"""The command line's commands under signals and closed streams: SIGTERM stops them as Ctrl-C
does (outputs complete, exit 143), a reader that goes away ends them quietly (exit 141), and a
closed stdout is not a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
from fixtures.waiting import wait_until

from siamedge.cli import EX_BROKEN_PIPE, EX_INTERRUPTED, EX_TERMINATED
from siamedge.config import SyntheticSettings
from siamedge.sources.synthetic import SyntheticClip

STARTUP_S = 60.0
"""For the child's imports and model load on a loaded runner: a hang bound, not a speed claim."""


def siamedge(repo_root: Path, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    """`siamedge ARGS` as a child process (stderr piped)."""
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "siamedge.cli", *args], env=env, stderr=subprocess.PIPE, **kwargs
    )


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigterm_stops_track_with_complete_outputs(repo_root: Path, tmp_path: Path) -> None:
    out, video = tmp_path / "r.jsonl", tmp_path / "o.mp4"
    x, y, w, h = SyntheticClip(SyntheticSettings()).truth(0).box_xywh
    child = siamedge(
        repo_root,
        "track",
        "--source",
        "synthetic",
        "--box",
        f"{x},{y},{w},{h}",
        "--out",
        str(out),
        "--video",
        str(video),
        "--providers",
        "cpu",
    )
    try:
        wait_until(lambda: lines_in(out) >= 3, "three tracked frames", STARTUP_S)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=STARTUP_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == EX_TERMINATED, stderr
    assert b"Traceback" not in stderr
    frames = [json.loads(line)["frame"] for line in out.read_text().splitlines()]
    assert frames == list(range(len(frames))) and len(frames) >= 3
    capture = cv2.VideoCapture(str(video))  # finalised: an unclosed mp4 has no index to read
    written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    readable = capture.read()[0]
    capture.release()
    assert readable and written >= len(frames) - 1


def test_a_reader_that_went_away_ends_the_command_quietly(repo_root: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe fails with EPIPE
    try:
        child = siamedge(repo_root, "schema", "results", stdout=write_end)
        _, stderr = child.communicate(timeout=STARTUP_S)
    finally:
        os.close(write_end)
    assert child.returncode == EX_BROKEN_PIPE
    assert stderr == b""


def test_track_into_a_pipe_whose_reader_went_away_ends_quietly(repo_root: Path) -> None:
    x, y, w, h = SyntheticClip(SyntheticSettings()).truth(0).box_xywh
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        child = siamedge(
            repo_root,
            *("track", "--source", "synthetic", "--box", f"{x},{y},{w},{h}", "--frames", "5"),
            *("--out", "/dev/stdout", "--providers", "cpu"),
            stdout=write_end,
        )
        _, stderr = child.communicate(timeout=STARTUP_S)
    finally:
        os.close(write_end)
    assert child.returncode == EX_BROKEN_PIPE, stderr
    assert b"error" not in stderr


def test_a_closed_stdout_is_not_a_crash(repo_root: Path) -> None:
    closed = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m siamedge.cli schema results >&-'],
        env={**os.environ, "PYTHONPATH": str(repo_root)},
        capture_output=True,
        timeout=STARTUP_S,
        check=False,
    )
    assert closed.returncode == 0, closed.stderr
    assert closed.stderr == b""


CTRL_C_WHILE_LOADING = """
import os, signal, sys
from siamedge import cli
load = cli._load
def loading(name):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while the subcommands' modules load
    return load(name)
cli._load = loading
sys.exit(cli.main(["run", "--config", "never-read.yaml"]))
"""


def test_ctrl_c_while_the_modules_load_is_not_a_traceback(repo_root: Path) -> None:
    # The first second of `siamedge run` printed a KeyboardInterrupt traceback.
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_WHILE_LOADING],
        env=env,
        capture_output=True,
        timeout=STARTUP_S,
        check=False,
    )
    assert done.returncode == EX_INTERRUPTED
    assert done.stderr == b""
