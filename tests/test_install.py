"""siamedge install-service into temporary unit and config folders (never the real /etc)."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

import pytest

from siamedge import install
from siamedge.errors import ConfigError

SHIPPED_EXEC_START = (
    "ExecStart=/opt/siamedge/venv/bin/siamedge run --config /etc/siamedge/siamedge.yaml"
)


@pytest.fixture
def entry_point(tmp_path: Path) -> Path:
    """A stand-in `siamedge` console script in a venv-like bin folder."""
    path = tmp_path / "venv" / "bin" / "siamedge"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def empty_dev(tmp_path: Path) -> Path:
    path = tmp_path / "dev"
    path.mkdir()
    return path


def _args(tmp_path: Path, entry_point: Path, dev_dir: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    install.add_arguments(parser)
    return parser.parse_args(
        [
            "--unit-dir",
            str(tmp_path / "units"),
            "--config-dir",
            str(tmp_path / "etc" / "siamedge"),
            "--executable",
            str(entry_point),
            "--dev-dir",
            str(dev_dir),
            "--no-reload",
            *extra,
        ]
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_installs_unit_and_config(
    tmp_path: Path,
    entry_point: Path,
    empty_dev: Path,
    repo_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert install.run(_args(tmp_path, entry_point, empty_dev)) == 0
    unit = tmp_path / "units" / "siamedge.service"
    config = tmp_path / "etc" / "siamedge" / "siamedge.yaml"
    exec_start = f"ExecStart={entry_point} run --config {config}"
    shipped = (repo_root / "systemd" / "siamedge.service").read_text(encoding="utf-8")
    assert unit.read_text(encoding="utf-8") == shipped.replace(SHIPPED_EXEC_START, exec_start)
    assert config.read_bytes() == (repo_root / "config" / "siamedge.yaml").read_bytes()
    assert (_mode(unit), _mode(config)) == (0o644, 0o644)
    assert not (tmp_path / "units" / "siamedge.service.d").exists()  # no Jetson nodes
    out = capsys.readouterr().out
    assert "systemctl enable --now siamedge" in out
    assert "journalctl -u siamedge -f" in out
    assert "daemon-reload" not in out


def test_keeps_an_existing_config(
    tmp_path: Path, entry_point: Path, empty_dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "etc" / "siamedge" / "siamedge.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("mqtt:\n  host: broker.lan\n", encoding="utf-8")
    assert install.run(_args(tmp_path, entry_point, empty_dev)) == 0
    assert config.read_text(encoding="utf-8") == "mqtt:\n  host: broker.lan\n"
    assert f"keep the existing configuration {config}" in capsys.readouterr().out


def test_dry_run_writes_nothing(
    tmp_path: Path, entry_point: Path, empty_dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(tmp_path, entry_point, empty_dev, "--dry-run")
    args.no_reload = False
    assert install.run(args) == 0
    assert not (tmp_path / "units").exists()
    assert not (tmp_path / "etc").exists()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"would install {tmp_path / 'units' / 'siamedge.service'}")
    assert f"ExecStart={entry_point} run --config" in lines[0]
    assert "would run systemctl daemon-reload" in lines


def test_jetson_nodes_get_a_device_dropin(
    tmp_path: Path, entry_point: Path, empty_dev: Path
) -> None:
    (empty_dev / "nvgpu" / "igpu0").mkdir(parents=True)
    for name in ("nvmap", "nvhost-ctrl-gpu", "nvgpu/igpu0/ctrl", "video0"):
        (empty_dev / name).symlink_to(os.devnull)  # character devices, as far as stat() goes
    (empty_dev / "nvhost-not-a-device").write_text("", encoding="utf-8")
    (empty_dev / "nvhost-dangling").symlink_to(empty_dev / "missing")
    assert install.tegra_device_nodes(empty_dev) == [
        Path("/dev/nvgpu/igpu0/ctrl"),
        Path("/dev/nvhost-ctrl-gpu"),
        Path("/dev/nvmap"),
    ]
    assert install.run(_args(tmp_path, entry_point, empty_dev)) == 0
    dropin = tmp_path / "units" / "siamedge.service.d" / "10-tegra-devices.conf"
    allowed = [ln for ln in dropin.read_text(encoding="utf-8").splitlines() if "=" in ln]
    assert allowed == [
        "DeviceAllow=/dev/nvgpu/igpu0/ctrl rw",
        "DeviceAllow=/dev/nvhost-ctrl-gpu rw",
        "DeviceAllow=/dev/nvmap rw",
    ]


def test_missing_entry_point_fails_with_a_hint(
    tmp_path: Path, empty_dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "siamedge"
    assert install.run(_args(tmp_path, missing, empty_dev)) == install.EXIT_FAILURE
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "--executable" in err
    assert not (tmp_path / "units").exists()


def test_unwritable_unit_dir_fails_cleanly(
    tmp_path: Path, entry_point: Path, empty_dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "units"
    blocker.write_text("a file where the unit folder should be", encoding="utf-8")
    assert install.run(_args(tmp_path, entry_point, empty_dev)) == install.EXIT_FAILURE
    assert "siamedge install-service:" in capsys.readouterr().err


def test_render_quotes_paths_and_relaxes_protect_home() -> None:
    template = "[Service]\nExecStart=/x run\nProtectHome=yes\n"
    text = install.render_unit(
        template,
        Path("/home/pi/my env/bin/siamedge"),
        Path("/etc/siamedge/50%.yaml"),
        "template",
    )
    assert text.splitlines() == [
        "[Service]",
        'ExecStart="/home/pi/my env/bin/siamedge" run --config /etc/siamedge/50%%.yaml',
        "ProtectHome=read-only",
    ]


def test_render_keeps_protect_home_outside_home_folders() -> None:
    text = install.render_unit(
        "ExecStart=/x\nProtectHome=yes\n",
        Path("/opt/siamedge/venv/bin/siamedge"),
        Path("/etc/siamedge/siamedge.yaml"),
        "template",
    )
    assert "ProtectHome=yes" in text.splitlines()


def test_render_needs_exactly_one_exec_start() -> None:
    with pytest.raises(ConfigError, match=r"custom\.service: expected exactly one ExecStart="):
        install.render_unit("[Service]\n", Path("/x"), Path("/y"), "custom.service")
