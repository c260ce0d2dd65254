"""Every benchmark runs to its table at its smallest size: a benchmark nobody can run is found
here, not on the day a GPU is lent (the engine's run options once broke every timed benchmark,
gpu.py included, at their first model call). Figures are printed, never judged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

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
    # builtin model on the tennis frames of ../shared/reference
    ("large_target.py", ["--frames", "8"], "kept+finish+message"),
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


def _run_without(repo_root: Path, hidden: list[str], script: str, *arguments: str) -> Any:
    """The benchmark run as if the packages `hidden` were not installed."""
    runner = (
        "import runpy, sys\n"
        f"for name in {hidden!r}: sys.modules[name] = None\n"
        f"sys.argv = [{script!r}, *{list(arguments)!r}]\n"
        f"sys.path.insert(0, {str(repo_root / 'benchmarks')!r})\n"
        f"runpy.run_path({str(repo_root / 'benchmarks' / script)!r}, run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", runner],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=BENCHMARK_TIMEOUT_S,
        check=False,
    )


def test_gpu_py_says_what_it_needs_without_torch(repo_root: Path, tmp_path: Path) -> None:
    # A `[cpu]` install has no torch: gpu.py --help ended in a ModuleNotFoundError traceback.
    hidden = ["torch", "onnx"]
    assert _run_without(repo_root, hidden, "gpu.py", "--help").returncode == 0
    options = ["--cpu-only", "--models", str(tmp_path), "--frames", "4", "--cpu-frames", "4"]
    done = _run_without(repo_root, hidden, "gpu.py", *options)  # no exports there to run
    assert (done.returncode, done.stderr.splitlines()[-1]) == (
        2,
        "gpu.py: onnx and torch are not installed (needed to export the seed-0 checkpoint); "
        "install the export extra: pip install 'siamedge[export]'",
    )


def test_a_benchmark_on_the_test_fixtures_names_the_dev_extra(repo_root: Path) -> None:
    done = _run_without(repo_root, ["pytest"], "freshness.py", "--seconds", "1")
    assert (done.returncode, done.stderr.strip()) == (
        2,
        "freshness.py: pytest is not installed (for the test fixtures it serves its sources "
        "with); install the dev extra: pip install 'siamedge[dev]'",
    )
