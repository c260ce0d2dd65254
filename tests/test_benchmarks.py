"""Every benchmark runs to its table at its smallest size: a benchmark nobody can run is found
here, not on the day a GPU is lent (the engine's run options once broke every timed benchmark,
gpu.py included, at their first model call). Figures are printed, never judged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK_TIMEOUT_S = 600.0
"""Only stops a hung run: the slowest here (trace_drift.py) takes ~80 s on a 2-core machine."""

# (script, arguments, a line fragment of its table); {models}: the seed-0 checkpoint and its
# exports (fixture seed0_models), {builtin}: the builtin model.
WITHOUT_TORCH = [
    ("pipeline.py", ["--frames", "5"], "4 targets cost at most"),
    ("bench_mjpeg.py", ["--frames", "20"], "reader               age"),
    ("bench_sources.py", ["--frames", "20"], "read image folder (jpg)"),
    ("builtin_model.py", ["--runs", "5", "--no-clips"], "track 1 thread"),
    ("encoding.py", ["--number", "3"], "rle (window only)"),
    ("freshness.py", ["--seconds", "2"], "| file, played in real time |"),
    ("latency.py", ["--seconds", "3"], "30 fps camera |      1 |"),
    ("node_profile.py", ["--provider", "cpu", "--runs", "2", "{builtin}"], "all nodes"),
    ("web_clients.py", ["--seconds", "3", "--rounds", "1", "--clients", "2"], " viewers "),
]
WITH_TORCH = [
    (
        "gpu.py",
        [
            "--cpu-only", "--models", "{models}", "--frames", "5", "--cpu-frames", "5",
            "--sizes", "480p", "--targets", "1,4", "--precisions", "fp32", "--skip-graph",
        ],
        "siamedge, CPU provider",
    ),
    ("node_profile.py", ["--provider", "cpu", "--runs", "1", "{models}/fp32.onnx"], "all nodes"),
    # builtin model, but gpu.py's helpers (frames, boxes) import the exporter
    ("large_target.py", ["--frames", "8"], "kept+finish+message"),
    ("trace_drift.py", ["--configs", "cpu", "--models", "{models}"], "target 0 of 4"),
    ("export_layouts.py", ["--runs", "2", "--models", "{models}"], "split.onnx"),
    (
        "reference.py",
        [
            "--frames", "5", "--checkpoint", "{models}/siammask_seed0.pth",
            "--model", "{models}/fp32.onnx",
        ],
        "(a) PyTorch ref (b) siamedge",
    ),
    (
        "public_export_bugs.py",
        ["--checkpoint", "{models}/siammask_seed0.pth"],
        "Bug 1 (penalty against a baked size)",
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder for the benchmarks without torch (none writes there)."""
    return tmp_path_factory.mktemp("benchmark-models")


@pytest.fixture(scope="module")
def seed0_models(repo_root: Path, reference_dir: Path, models_dir: Path) -> Path:
    """models_dir with the seed-0 checkpoint and its exports, written as the GPU run writes them
    (its `models` step) and reused by every benchmark given --models."""
    script = repo_root / "benchmarks" / "shared_reference.py"
    command = [sys.executable, str(script), str(models_dir)]
    command += ["--make-checkpoint", str(reference_dir / "make_checkpoint.py")]
    subprocess.run(command, cwd=repo_root, check=True, timeout=BENCHMARK_TIMEOUT_S)
    return models_dir


def run_benchmark(repo_root: Path, script: str, arguments: list[str], models: Path) -> str:
    """The benchmark's standard output; fails the test with its output when it exits non-zero."""
    builtin = repo_root / "models" / "builtin-ncc.onnx"
    command = [
        sys.executable,
        str(repo_root / "benchmarks" / script),
        *(arg.format(models=models, builtin=builtin) for arg in arguments),
    ]
    done = subprocess.run(
        command,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=BENCHMARK_TIMEOUT_S,
        check=False,
    )
    print(done.stdout)  # the figures (pytest shows them with -rP)
    assert done.returncode == 0, (
        f"{script} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.mark.parametrize(("script", "arguments", "table"), WITHOUT_TORCH)
def test_a_benchmark_runs_to_its_table(
    repo_root: Path, models_dir: Path, script: str, arguments: list[str], table: str
) -> None:
    assert table in run_benchmark(repo_root, script, arguments, models_dir)


@pytest.mark.torch
@pytest.mark.parametrize(("script", "arguments", "table"), WITH_TORCH)
def test_a_benchmark_of_the_exported_model_runs_to_its_table(
    repo_root: Path, seed0_models: Path, script: str, arguments: list[str], table: str
) -> None:
    assert table in run_benchmark(repo_root, script, arguments, seed0_models)
