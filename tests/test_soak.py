"""CI's soak run: benchmarks/soak.py for 2 minutes, a broker restart every 40 s, read back from
its JSON: what a short run can show (the daemon stays up, recovers, leaks no fd or thread,
answers every command); speed and RSS are printed, never asserted.

Never judges results/s or latency: on a shared 2-core runner they measure the neighbours.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import pytest

SOAK_MINUTES = 2.0
BROKER_RESTART_S = 40.0
SAMPLE_S = 5.0
RUN_TIMEOUT_S = 330.0
"""The soak's 120 s, the daemon's start (model load, first frame) and the end's reply wait on a
loaded machine; the limit only stops a hung run."""
INVALID_CASES = (
    "malformed_json",
    "wrong_type",
    "unknown_track",
    "negative_box",
    "unknown_field",
    "not_a_track_id",
)


@pytest.fixture(scope="module")
def soak(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run the soak once for the module: its output folder and its JSON."""
    out = tmp_path_factory.mktemp("soak")
    command = [
        sys.executable,
        str(repo_root / "benchmarks" / "soak.py"),
        "--minutes", str(SOAK_MINUTES),
        "--out", str(out),
        "--sample-s", str(SAMPLE_S),
        "--broker-restart-s", str(BROKER_RESTART_S),
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    print(completed.stdout)  # the table and the figures (pytest shows them with -rP)
    daemon_log = out / "daemon.log"
    tail = daemon_log.read_text(errors="replace")[-3000:] if daemon_log.exists() else ""
    assert completed.returncode == 0, (
        f"soak exited {completed.returncode}:\n{completed.stdout[-4000:]}\n"
        f"{completed.stderr[-3000:]}\ndaemon log:\n{tail}"
    )
    return out, json.loads((out / "soak.json").read_text())


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_soak_daemon_stays_up_and_recovers_from_every_broker_restart(
    soak: tuple[Path, dict[str, Any]],
) -> None:
    _, record = soak
    assert record["daemon_died_at_s"] is None
    assert record["daemon_exit_status"] == 0
    restarts = record["restarts"]
    assert [round(r["t_s"] / BROKER_RESTART_S) for r in restarts] == [1, 2]
    samples = record["samples"]
    bounds = [r["t_s"] for r in restarts] + [SOAK_MINUTES * 60.0]
    for restart, next_restart in zip(restarts, bounds[1:], strict=True):
        assert restart["recovery_s"] is not None, f"no results after the restart at {restart}"
        # results kept arriving in every sample after the reconnection, up to the next restart
        after = [
            s
            for s in samples
            if restart["t_s"] + restart["recovery_s"] + SAMPLE_S < s["t_s"] <= next_restart
        ]
        assert after, f"no sample between the restart at {restart['t_s']} s and the next"
        assert all(s["results_per_s"] > 0 for s in after), after
    assert all(s["viewer_parts_per_s"] > 0 for s in samples), "the MJPEG viewer starved"


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_soak_fds_and_threads_stay_flat_after_warm_up(soak: tuple[Path, dict[str, Any]]) -> None:
    _, record = soak
    warmup_s = 0.2 * SOAK_MINUTES * 60.0
    steady = [s for s in record["samples"] if s["t_s"] > warmup_s and not s["after_restart"]]
    assert len(steady) >= 8, steady
    for name in ("fds", "threads"):
        values = [s[name] for s in steady]
        assert max(values) == min(values), f"{name} over the steady samples: {values}"
    # back to that level after every restart (a sample during one may catch a socket between
    # close and reconnect: those are the ones left out above)
    for restart in record["restarts"]:
        assert any(s["t_s"] > restart["t_s"] for s in steady), restart


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_soak_every_command_gets_its_reply(soak: tuple[Path, dict[str, Any]]) -> None:
    _, record = soak
    commands = record["commands"]
    assert set(commands) == {"valid", *INVALID_CASES}
    for case in INVALID_CASES:
        counts = commands[case]
        assert counts["sent"] >= 10, (case, counts)
        assert counts == {"sent": counts["sent"], "ack": 0, "error": counts["sent"]}, case
    assert commands["valid"]["sent"] >= 40
    assert commands["valid"]["ack"] == commands["valid"]["sent"], commands["valid"]
    assert record["unanswered"] == []
    assert record["wrong_replies"] == []
    assert record["unmatched_errors"] == 0
    # A QoS 1 redelivery after a broker restart is answered again, never carried out twice.
    assert record["redelivered_wrong"] == []
    assert record["executions"] == record["acked"]
    assert record["acked"]["start"] >= 20 and record["acked"]["stop"] >= 20, record["acked"]
    assert record["error_summaries"] == 0


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_soak_writes_its_plot_and_samples(soak: tuple[Path, dict[str, Any]]) -> None:
    out, record = soak
    image = cv2.imread(str(out / "soak.png"))
    assert image is not None
    assert image.shape[1] >= 800
    assert image.shape[0] >= 600
    assert (image < 128).any(), "the plot is blank"
    # one every SAMPLE_S; a loaded machine may make the last one miss the end of the run
    assert len(record["samples"]) >= round(SOAK_MINUTES * 60.0 / SAMPLE_S) - 1
    goals = {goal["name"]: goal for goal in record["goals"]}
    checked = [goal for goal in goals.values() if goal["applies"]]
    assert all(goal["passed"] for goal in checked), checked
    # a 2-minute run prints RSS growth and the rate against the first window; it does not judge
    assert [name for name, goal in goals.items() if not goal["applies"]] == [
        "RSS growth after warm-up < 2.0 MB",
        "results/s of the last window within 2% of the first",
    ]


def _soak_module() -> Any:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_further_replies_are_sorted_into_redeliveries_repeats_and_wrong_ones() -> None:
    soak = _soak_module()
    record = soak.RunRecord(minutes=1.0, sample_s=5.0, broker_restart_s=40.0)
    duplicate = ("error", "duplicate: request_id 'r' was received already; not carried out again")
    replies = {
        "refused-first": [duplicate, ("ack", None)],  # the redelivery's refusal came first
        "ack-twice": [("ack", None), ("ack", None)],  # the broker delivered the ack again
        "rejected-twice": [("error", "bad box"), ("error", "bad box")],
        "ack-after-error": [("error", "bad box"), ("ack", None)],
        "other-reason": [("error", "bad box"), ("error", "no track 'x'")],
    }
    commands = []
    for request_id, received in replies.items():
        command = soak.Command(request_id, "valid", "start", 0.0, list(received))
        soak.sort_further_replies(record, command)
        commands.append(command)
    assert [c.reply for c in commands] == ["ack", "ack", "error", "error", "error"]
    assert commands[0].reason is None and commands[2].reason == "bad box"
    assert record.redelivered == 1
    assert record.repeated_replies == 2
    assert record.redelivered_wrong == [
        "ack-after-error: ack None after ('error', 'bad box')",
        "other-reason: error \"no track 'x'\" after ('error', 'bad box')",
    ]


def test_executions_are_counted_from_the_daemon_log() -> None:
    soak = _soak_module()
    log = "\n".join(
        [
            "2026-11-27 23:23:40,645 INFO    siamedge.tracks: stopped track(s) soak3",
            "2026-11-27 23:23:40,958 INFO    siamedge.tracks: started track soak3 at box [1, 2]",
            "2026-11-27 23:23:41,000 INFO    siamedge.tracks: restarted track soak1 at box [1, 2]",
            "2026-11-27 23:23:41,244 INFO    siamedge.messaging.client: MQTT start command "
            "rejected: started track soak9",  # quoted in a reason: not carried out
            "2026-11-27 23:23:46,675 INFO    siamedge.service: shutting down",
        ]
    )
    assert soak.executions_in_log(log) == {"start": 2, "stop": 1}
