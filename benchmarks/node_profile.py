"""Where a track step's time goes, node by node: onnxruntime's own profiler on one provider,
1 and 4 targets side by side.

A provider that launches GPU kernels asynchronously (CUDA) records in each node's time what the
host spent issuing it, so nodes x host time against the step's wall time says how launch-bound
the step is. Feeds are random crops at the tennis target's scale (costs do not depend on the
pixels); the template features come from the model's own init step.

    python benchmarks/node_profile.py MODEL [--provider cuda|cpu] [--targets 1,4] [--runs 20]
        [--top 12] [--option KEY=VALUE ...]

MODEL: a batched export (the If layout or a split track model). --option: a `model:` setting
(e.g. cuda_prefer_nhwc=true), applied as siamedge applies it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from siamedge import contract as c
from siamedge import providers as p
from siamedge.config import ModelSettings
from siamedge.export.spec import TEMPLATE_FEATURE_SHAPE

WARMUP_RUNS = 3
CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
"""Nodes whose time is that of the nodes inside them: left out of the sums."""
US_PER_MS = 1000.0
SCALE_X = 0.15
"""Search crop scale of a mid-sized target (255 px crop of a ~1700 px window)."""


@dataclass(frozen=True)
class Profile:
    """One provider and batch size: wall time per step and host time per op type."""

    step_ms: list[float]
    op_ms: dict[str, float]
    """Op type -> host ms per step, summed over its nodes."""
    op_nodes: dict[str, int]
    """Op type -> nodes run per step."""


def session(model: Path, provider: str, settings: ModelSettings, profile_dir: Path | None) -> Any:
    """A session with siamedge's options for `provider`; profiling into profile_dir if given."""
    options = p.session_options(ort, settings)
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / "step")
    declared = p.read_declaration(ort, model)
    if provider == p.CUDA:
        settings = p.cuda_settings_for(settings, declared.metadata, str(model))
    chosen = [(provider, p.provider_options(provider, settings, Path(tempfile.gettempdir())))]
    if provider != p.CPU:
        chosen.append((p.CPU, {}))
    return ort.InferenceSession(str(model), options, providers=chosen)


def feature_shape(inputs: list[Any]) -> tuple[int, ...]:
    """One target's template features as the model declares them (the builtin model's are
    not SiamMask's); SiamMask's when the declaration leaves a dimension open."""
    declared = next(arg.shape for arg in inputs if arg.name == c.IN_FEATURES)[1:]
    if all(isinstance(dim, int) for dim in declared):
        return tuple(declared)
    return TEMPLATE_FEATURE_SHAPE[1:]


def random_feeds(targets: int, inputs: list[Any]) -> dict[str, np.ndarray]:
    """Track-step feeds (features still zero) for a batched model with these inputs
    (onnxruntime's NodeArgs)."""
    rng = np.random.default_rng(0)
    side = c.INSTANCE_SIZE
    feeds: dict[str, np.ndarray] = {
        c.IN_IMAGE: rng.integers(0, 256, (targets, 3, side, side)).astype(np.float32),
        c.IN_CENTER: np.full((targets, 2), 400.0, np.float32),
        c.IN_SIZE: np.full((targets, 2), 180.0, np.float32),
        c.IN_SCALE: np.full(targets, SCALE_X),
        c.IN_FEATURES: np.zeros((targets, *feature_shape(inputs)), np.float32),
    }
    if c.IN_FIRST_TIME in {arg.name for arg in inputs}:
        feeds[c.IN_FIRST_TIME] = np.asarray(False)
    return feeds


def template_features(model: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The If model's init step on the CPU (a split model's init model is not needed here:
    random features cost the track step the same)."""
    if c.IN_FIRST_TIME not in feeds:
        return np.random.default_rng(1).standard_normal(feeds[c.IN_FEATURES].shape, np.float32)
    cpu = ort.InferenceSession(str(model), providers=[p.CPU])
    init = {**feeds, c.IN_FIRST_TIME: np.asarray(True)}
    names = [out.name for out in cpu.get_outputs()]
    features: np.ndarray = cpu.run(None, init)[names.index(c.OUT_FEATURES)]
    return features


def profile(
    model: Path, provider: str, settings: ModelSettings, targets: int, runs: int
) -> Profile:
    """Profile `runs` track steps of `targets` rows after WARMUP_RUNS unprofiled ones."""
    with tempfile.TemporaryDirectory() as folder:
        run = session(model, provider, settings, Path(folder))
        feeds = random_feeds(targets, run.get_inputs())
        feeds[c.IN_FEATURES] = template_features(model, feeds)
        for _ in range(WARMUP_RUNS + runs):
            run.run(None, feeds)
        events = json.loads(Path(run.end_profiling()).read_text())
    steps = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )[WARMUP_RUNS:]
    start = steps[0]["ts"]
    op_us: Counter[str] = Counter()
    op_count: Counter[str] = Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["ts"] < start:
            continue
        op = event.get("args", {}).get("op_name", "?")
        if op in CONTROL_FLOW:
            continue
        op_us[op] += event["dur"]
        op_count[op] += 1
    return Profile(
        step_ms=[e["dur"] / US_PER_MS for e in steps],
        op_ms={op: us / US_PER_MS / runs for op, us in op_us.items()},
        op_nodes={op: count // runs for op, count in op_count.items()},
    )


def print_table(profiles: dict[int, Profile], top: int) -> None:
    """Op types by host time (the largest batch's), then totals, one column pair per batch."""
    counts = sorted(profiles)
    widest = profiles[counts[-1]]
    ops = sorted(widest.op_ms, key=widest.op_ms.__getitem__, reverse=True)
    listed, rest = ops[:top], ops[top:]

    def row(label: str, cells: list[tuple[str, str]]) -> str:
        return f"{label:<16}" + "".join(f" | {nodes:>5} {ms:>9}" for nodes, ms in cells)

    def sums(n: int, names: list[str]) -> tuple[str, str]:
        prof = profiles[n]
        nodes = sum(prof.op_nodes.get(op, 0) for op in names)
        return str(nodes), f"{sum(prof.op_ms.get(op, 0.0) for op in names):.2f}"

    header = row("op type", [("nodes", f"ms, {n} tgt") for n in counts])
    print(header)
    print("-" * len(header))
    for op in listed:
        print(row(op, [sums(n, [op]) for n in counts]))
    print(row("(the rest)", [sums(n, rest) for n in counts]))
    print(row("all nodes", [sums(n, ops) for n in counts]))
    steps = [("", f"{statistics.median(profiles[n].step_ms):.2f}") for n in counts]
    print(row("step (median)", steps))
    print(
        "ms: host time per step (a CUDA node's is the time to issue its kernels); "
        "step: onnxruntime's model_run"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a batched export (If, or a split track model)")
    parser.add_argument("--provider", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--targets", default="1,4", help="batch sizes, e.g. 1,4")
    parser.add_argument("--runs", type=int, default=20, help="profiled steps per batch size")
    parser.add_argument("--top", type=int, default=12, help="op types listed")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model setting, e.g. cuda_prefer_nhwc=true (repeatable)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    provider = p.PROVIDER_BY_NAME[args.provider]
    if provider not in ort.get_available_providers():
        raise SystemExit(f"this onnxruntime offers no {provider}: {ort.get_available_providers()}")
    options = dict(option.split("=", 1) for option in args.option)
    settings = ModelSettings.model_validate({"providers": [args.provider], **options})
    counts = [int(n) for n in args.targets.split(",")]
    profiles = {n: profile(args.model, provider, settings, n, args.runs) for n in counts}
    print(f"{args.model.name} on {provider} (onnxruntime {ort.__version__}), {args.runs} steps")
    print_table(profiles, args.top)


if __name__ == "__main__":
    main()
