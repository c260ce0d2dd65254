"""The shipped systemd unit: systemd-analyze security and verify, and its MemoryDenyWriteExecute.

systemd-analyze comes with the Debian package `systemd` (scripts/test.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from siamedge import install
from siamedge.cli import EX_CONFIG

SECURITY_OK_LIMIT = 5.0
"""systemd-analyze security: exposure below 5.0 is "OK" (or SAFE, PERFECT); 5.0 is MEDIUM."""
GOOD_LEVELS = ("OK", "SAFE", "PERFECT")
ANALYZE_TIMEOUT_S = 120
_OVERALL = re.compile(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)")


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: install the Debian package systemd")
    return path


@pytest.fixture(scope="session")
def shipped_unit(repo_root: Path) -> Path:
    return repo_root / "systemd" / install.UNIT_NAME


def _unit_settings(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit (all sections), each key with its values in order."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _exposure(systemd_analyze: str, unit: Path) -> tuple[float, str]:
    done = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=ANALYZE_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    match = _OVERALL.search(done.stdout)
    assert match is not None, done.stdout[-2000:]
    return float(match.group(1)), match.group(2)


def _install_args(tmp_path: Path, dev_dir: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    install.add_arguments(parser)
    entry_point = tmp_path / "my venv" / "bin" / "siamedge"  # verify checks the quoting too
    entry_point.parent.mkdir(parents=True)
    entry_point.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    entry_point.chmod(0o755)
    return parser.parse_args(
        [
            "--unit-dir",
            str(tmp_path / "units"),
            "--config-dir",
            str(tmp_path / "etc"),
            "--executable",
            str(entry_point),
            "--dev-dir",
            str(dev_dir),
            "--no-reload",
        ]
    )


def test_shipped_unit_security_exposure_is_ok(systemd_analyze: str, shipped_unit: Path) -> None:
    exposure, level = _exposure(systemd_analyze, shipped_unit)
    assert exposure < SECURITY_OK_LIMIT
    assert level in GOOD_LEVELS


def test_installed_unit_with_jetson_dropin_verifies_and_stays_ok(
    systemd_analyze: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The entry point lies under pytest's tmp_path, below /tmp: as if the service saw it.
    monkeypatch.setattr(install, "PRIVATE_TMP_ROOTS", ())
    monkeypatch.setattr(install, "ACCESS_CHECK_TOP", tmp_path)
    dev_dir = tmp_path / "dev"
    (dev_dir / "nvgpu" / "igpu0").mkdir(parents=True)
    (dev_dir / "nvmap").symlink_to(os.devnull)  # stands in for the Tegra character devices
    (dev_dir / "nvgpu" / "igpu0" / "ctrl").symlink_to(os.devnull)
    assert install.run(_install_args(tmp_path, dev_dir)) == 0
    capsys.readouterr()
    unit = tmp_path / "units" / install.UNIT_NAME
    done = subprocess.run(
        [systemd_analyze, "verify", str(unit)],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit.parent}:"},  # ':' keeps the defaults
        capture_output=True,
        text=True,
        timeout=ANALYZE_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # verify warns, without failing, about settings it ignores (a bad DeviceAllow path ...).
    assert [line for line in done.stderr.splitlines() if "siamedge" in line] == []
    exposure, level = _exposure(systemd_analyze, unit)
    assert exposure < SECURITY_OK_LIMIT
    assert level in GOOD_LEVELS


def test_unit_matches_the_service_contract(shipped_unit: Path) -> None:
    settings = _unit_settings(shipped_unit.read_text(encoding="utf-8"))
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]  # Notifier sends from the main process
    assert settings["RestartPreventExitStatus"] == [str(EX_CONFIG)]
    assert float(settings["WatchdogSec"][0]) > 0
    assert settings["StateDirectory"] == ["siamedge"]  # see providers.default_cache_dir
    assert "char-video4linux rw" in settings["DeviceAllow"]
    # JetPack 6: nvvidconv and nvv4l2decoder reach VIC and NVDEC through the DRM nodes, and
    # nvarguscamerasrc reaches nvargus-daemon through its socket in the host's /tmp.
    assert "char-drm rw" in settings["DeviceAllow"]
    assert settings["BindPaths"] == ["-/tmp/argus_socket"]
    assert "nvargus-daemon.service" in " ".join(settings["After"]).split()
    assert settings["DevicePolicy"] == ["closed"]
    assert settings["MemoryDenyWriteExecute"] == ["yes"]


# --- MemoryDenyWriteExecute=yes --------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, mmap, sys
    from fixtures.mdwe import deny_write_execute

    deny_write_execute()  # first, as systemd installs it before exec
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        sys.exit("a writable+executable mapping was allowed: the filter is not active")

    import numpy as np
    import cv2
    import onnxruntime as ort
    import paho.mqtt.client, pydantic, yaml, systemd.journal, systemd.daemon  # noqa: F401

    model, inputs, outputs = sys.argv[1:4]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = np.load(inputs)
    (y,) = session.run(None, {"x": x})
    mask = (cv2.resize(y[0, 0], (127, 127)) > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    rect = cv2.minAreaRect(max(contours, key=cv2.contourArea))
    np.save(outputs, y)
    print(json.dumps({"rect": rect}))
    """
)


def _conv_model(path: Path) -> None:
    """Conv -> ReLU -> MatMul -> Sigmoid: onnxruntime's convolution and GEMM kernels."""
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    mixing = rng.standard_normal((64, 64)).astype(np.float32) / 8
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("MatMul", ["relu", "m"], ["mixed"]),
            helper.make_node("Sigmoid", ["mixed"], ["y"]),
        ],
        "mdwe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 64, 64])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(mixing, "m")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime 1.17 (the oldest siamedge takes) reads
    onnx.save(model, path)


def test_cpu_inference_runs_under_memory_deny_write_execute(
    tmp_path: Path, repo_root: Path
) -> None:
    model, inputs, outputs = tmp_path / "m.onnx", tmp_path / "x.npy", tmp_path / "y.npy"
    _conv_model(model)
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(inputs, x)
    env = {**os.environ, "PYTHONPATH": f"{repo_root}{os.pathsep}{repo_root / 'tests'}"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(inputs), str(outputs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=ANALYZE_TIMEOUT_S,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": x})
    np.testing.assert_allclose(np.load(outputs), expected, rtol=1e-6, atol=1e-7)
    mask = (cv2.resize(expected[0, 0], (127, 127)) > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    (center, size, angle) = cv2.minAreaRect(max(contours, key=cv2.contourArea))
    assert json.loads(child.stdout)["rect"] == [list(center), list(size), angle]
