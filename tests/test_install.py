"""siamedge install-service into temporary unit and config folders (never the real /etc)."""

from __future__ import annotations

import argparse
import os
import random
import re
import stat
from pathlib import Path

import pytest

from siamedge import cli, install
from siamedge.errors import ConfigError, SiamedgeError

SHIPPED_EXEC_START = (
    "ExecStart=/opt/siamedge/venv/bin/siamedge run --config /etc/siamedge/siamedge.yaml"
)
STRICT_SERVICE_CHECKS = (install.PRIVATE_TMP_ROOTS, install.ACCESS_CHECK_TOP)
"""What the real command checks, before _service_sees_tmp_path replaces it."""


@pytest.fixture(autouse=True)
def _service_sees_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest keeps tmp_path under /tmp, in folders only root may enter: the service checks
    look below tmp_path only, with no private /tmp (the tests of them name their own)."""
    monkeypatch.setattr(install, "PRIVATE_TMP_ROOTS", ())
    monkeypatch.setattr(install, "ACCESS_CHECK_TOP", tmp_path)


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


def _argv(tmp_path: Path, entry_point: Path, dev_dir: Path, *extra: str) -> list[str]:
    """install-service options into tmp_path; a later option in `extra` wins."""
    return [
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


def _args(tmp_path: Path, entry_point: Path, dev_dir: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    install.add_arguments(parser)
    return parser.parse_args(_argv(tmp_path, entry_point, dev_dir, *extra))


def _random_file(path: Path) -> Path:
    """100 kB of (seeded) random bytes: not UTF-8, as a video or a binary would be."""
    path.write_bytes(random.Random(0).randbytes(100_000))
    return path


def _assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "units").exists()
    assert not (tmp_path / "etc").exists()


DRY_OR_REAL = pytest.mark.parametrize("mode", [("--dry-run",), ()], ids=["dry-run", "real"])


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


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("mqtt:\n  host: broker.lan\n", None),
        ("mqtt:\n  hots: broker.lan\n", "mqtt.hots: Extra inputs are not permitted"),
    ],
)
def test_keeps_an_existing_config_and_notes_when_it_does_not_validate(
    tmp_path: Path,
    entry_point: Path,
    empty_dev: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    problem: str | None,
) -> None:
    config = tmp_path / "etc" / "siamedge" / "siamedge.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(text, encoding="utf-8")
    assert install.run(_args(tmp_path, entry_point, empty_dev)) == 0
    assert config.read_text(encoding="utf-8") == text
    out = capsys.readouterr().out
    assert f"keep the existing configuration {config}" in out
    note = f"note: the configuration kept at {config} does not validate, fix it: "
    if problem is None:
        assert note not in out
    else:
        assert note in out and problem in out


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
    for name in ("nvmap", "nvhost-ctrl-gpu", "nvgpu/igpu0/ctrl", "nvsciipc", "video0"):
        (empty_dev / name).symlink_to(os.devnull)  # character devices, as far as stat() goes
    (empty_dev / "nvhost-not-a-device").write_text("", encoding="utf-8")
    (empty_dev / "nvhost-dangling").symlink_to(empty_dev / "missing")
    assert install.tegra_device_nodes(empty_dev) == [
        Path("/dev/nvgpu/igpu0/ctrl"),
        Path("/dev/nvhost-ctrl-gpu"),
        Path("/dev/nvmap"),
        Path("/dev/nvsciipc"),  # L4T r36 (JetPack 6)
    ]
    assert install.run(_args(tmp_path, entry_point, empty_dev)) == 0
    dropin = tmp_path / "units" / "siamedge.service.d" / "10-tegra-devices.conf"
    allowed = [ln for ln in dropin.read_text(encoding="utf-8").splitlines() if "=" in ln]
    assert allowed == [
        "DeviceAllow=/dev/nvgpu/igpu0/ctrl rw",
        "DeviceAllow=/dev/nvhost-ctrl-gpu rw",
        "DeviceAllow=/dev/nvmap rw",
        "DeviceAllow=/dev/nvsciipc rw",
    ]


def test_missing_entry_point_fails_with_a_hint(tmp_path: Path, empty_dev: Path) -> None:
    missing = tmp_path / "nowhere" / "siamedge"
    with pytest.raises(SiamedgeError, match=r"--executable") as raised:
        install.run(_args(tmp_path, missing, empty_dev))
    assert str(missing) in str(raised.value)
    assert not (tmp_path / "units").exists()


@DRY_OR_REAL
def test_unit_source_that_is_not_text_is_refused(
    tmp_path: Path, entry_point: Path, empty_dev: Path, mode: tuple[str, ...]
) -> None:
    source = _random_file(tmp_path / "random.service")
    args = _args(tmp_path, entry_point, empty_dev, "--unit-source", str(source), *mode)
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(source))}: the unit file is not UTF-8 text \("
    ):
        install.run(args)
    _assert_nothing_written(tmp_path)


@DRY_OR_REAL
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, r"not UTF-8 text \("),
        (b"mqtt:\n  port: many\n", r"mqtt\.port: Input should be a valid integer"),
        (b"nonsense: 1\n", r"nonsense: Extra inputs are not permitted"),
    ],
    ids=["random-bytes", "bad-value", "unknown-key"],
)
def test_invalid_config_source_is_refused_before_writing(
    tmp_path: Path,
    entry_point: Path,
    empty_dev: Path,
    mode: tuple[str, ...],
    content: bytes | None,
    problem: str,
) -> None:
    source = tmp_path / "example.yaml"
    if content is None:
        _random_file(source)
    else:
        source.write_bytes(content)
    args = _args(tmp_path, entry_point, empty_dev, "--config-source", str(source), *mode)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(source))}: {problem}"):
        install.run(args)
    _assert_nothing_written(tmp_path)


def test_invalid_config_source_exits_78_with_one_line(
    tmp_path: Path, entry_point: Path, empty_dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _random_file(tmp_path / "clip.mp4")
    argv = _argv(tmp_path, entry_point, empty_dev, "--config-source", str(source))
    assert cli.main(["install-service", *argv]) == cli.EX_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"siamedge: configuration error: {source}: not UTF-8 text (")
    assert captured.err.count("\n") == 1
    _assert_nothing_written(tmp_path)


def test_config_source_that_is_a_directory_is_named_so(
    tmp_path: Path, entry_point: Path, empty_dev: Path
) -> None:
    args = _args(tmp_path, entry_point, empty_dev, "--config-source", str(empty_dev), "--dry-run")
    with pytest.raises(ConfigError, match=r"is a directory, not a configuration file$"):
        install.run(args)


@DRY_OR_REAL
@pytest.mark.parametrize("option", ["--unit-dir", "--config-dir"])
def test_target_folder_that_is_a_file_is_refused(
    tmp_path: Path, entry_point: Path, empty_dev: Path, mode: tuple[str, ...], option: str
) -> None:
    blocker = tmp_path / "fake.mp4"
    blocker.write_bytes(b"a file where a folder should be")
    args = _args(tmp_path, entry_point, empty_dev, option, str(blocker), *mode)
    with pytest.raises(
        SiamedgeError, match=rf"^{option} {re.escape(str(blocker))} is a file, not a directory$"
    ):
        install.run(args)
    _assert_nothing_written(tmp_path)
    assert blocker.read_bytes() == b"a file where a folder should be"


@DRY_OR_REAL
def test_target_folder_below_a_file_cannot_be_created(
    tmp_path: Path, entry_point: Path, empty_dev: Path, mode: tuple[str, ...]
) -> None:
    blocker = tmp_path / "fake.mp4"
    blocker.write_bytes(b"")
    target = blocker / "siamedge"
    args = _args(tmp_path, entry_point, empty_dev, "--config-dir", str(target), *mode)
    expected = (
        rf"^--config-dir {re.escape(str(target))} cannot be created: "
        rf"{re.escape(str(blocker))} is a file, not a directory$"
    )
    with pytest.raises(SiamedgeError, match=expected):
        install.run(args)
    _assert_nothing_written(tmp_path)


def test_dry_run_refuses_a_unit_dir_in_proc(
    tmp_path: Path, entry_point: Path, empty_dev: Path
) -> None:
    args = _args(tmp_path, entry_point, empty_dev, "--unit-dir", "/proc/x", "--dry-run")
    expected = r"^--unit-dir /proc/x cannot be created: /proc is on a virtual filesystem"
    with pytest.raises(SiamedgeError, match=expected):
        install.run(args)
    _assert_nothing_written(tmp_path)


def test_unwritable_folders_need_root(
    tmp_path: Path,
    entry_point: Path,
    empty_dev: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A dry run notes it (to preview without sudo); a real run refuses before writing."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, how: how != os.W_OK and real_access(path, how))
    assert install.run(_args(tmp_path, entry_point, empty_dev, "--dry-run")) == install.EXIT_OK
    out = capsys.readouterr().out
    assert f"note: this user cannot write in --unit-dir {tmp_path / 'units'}; run it as" in out
    with pytest.raises(SiamedgeError, match=r"^cannot write in --unit-dir .*run it as root"):
        install.run(_args(tmp_path, entry_point, empty_dev))
    _assert_nothing_written(tmp_path)


NOT_BOOTED = (
    "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    "Failed to connect to bus: Host is down"
)


def _systemctl_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str | None) -> Path:
    """PATH holds only a stand-in `systemctl` running `script` (none at all for None); the
    file its arguments are appended to."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl-calls"
    if script is not None:
        systemctl = bin_dir / "systemctl"
        systemctl.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n{script}\n', encoding="utf-8")
        systemctl.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return calls


def _reloading_argv(tmp_path: Path, entry_point: Path, dev_dir: Path) -> list[str]:
    return [a for a in _argv(tmp_path, entry_point, dev_dir) if a != "--no-reload"]


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (f"printf '%s\\n' \"{NOT_BOOTED}\" >&2\nexit 1", " ".join(NOT_BOOTED.split())),
        ("exit 3", "exit status 3"),
        (None, "systemctl not found (is this a systemd host?)"),
    ],
    ids=["not-booted-with-systemd", "silent-failure", "no-systemctl"],
)
def test_a_failed_reload_says_the_files_are_installed_and_what_to_do(
    tmp_path: Path,
    entry_point: Path,
    empty_dev: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    script: str | None,
    reason: str,
) -> None:
    calls = _systemctl_on_path(tmp_path, monkeypatch, script)
    argv = _reloading_argv(tmp_path, entry_point, empty_dev)
    assert cli.main(["install-service", *argv]) == cli.EX_FAILURE
    unit = tmp_path / "units" / "siamedge.service"
    config = tmp_path / "etc" / "siamedge" / "siamedge.yaml"
    assert unit.is_file() and config.is_file()  # installed, and left installed
    if script is not None:
        assert calls.read_text(encoding="utf-8") == "daemon-reload\n"
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"siamedge: error: installed {unit}, {config}, but systemctl daemon-reload failed: "
        f"{reason}; run `systemctl daemon-reload` yourself once systemd runs, then the next "
        "steps (or install with --no-reload to skip the reload)"
    ]
    next_steps = captured.out.split("next steps:\n", 1)[1].splitlines()
    assert next_steps[0] == "  systemctl daemon-reload  (failed here: run it once systemd runs)"
    assert "  systemctl enable --now siamedge" in next_steps


def test_a_reload_that_works_is_not_a_next_step(
    tmp_path: Path,
    entry_point: Path,
    empty_dev: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = _systemctl_on_path(tmp_path, monkeypatch, "exit 0")
    argv = _reloading_argv(tmp_path, entry_point, empty_dev)
    assert cli.main(["install-service", *argv]) == install.EXIT_OK
    assert calls.read_text(encoding="utf-8") == "daemon-reload\n"
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "next steps:\n  edit " in captured.out


@DRY_OR_REAL
def test_a_folder_named_like_the_config_is_refused(
    tmp_path: Path, entry_point: Path, empty_dev: Path, mode: tuple[str, ...]
) -> None:
    config_dir = tmp_path / "etc" / "siamedge"
    (config_dir / "siamedge.yaml").mkdir(parents=True)
    args = _args(tmp_path, entry_point, empty_dev, *mode)
    expected = (
        rf"^--config-dir {re.escape(str(config_dir))}: "
        rf"{re.escape(str(config_dir / 'siamedge.yaml'))} is a directory, not a configuration "
        r"file; move it away or pick another --config-dir$"
    )
    with pytest.raises(SiamedgeError, match=expected):
        install.run(args)
    assert not (tmp_path / "units").exists()
    assert list((config_dir / "siamedge.yaml").iterdir()) == []


@DRY_OR_REAL
def test_a_dangling_config_link_is_refused_not_written_through(
    tmp_path: Path, entry_point: Path, empty_dev: Path, mode: tuple[str, ...]
) -> None:
    config_dir = tmp_path / "etc" / "siamedge"
    config_dir.mkdir(parents=True)
    target = tmp_path / "mnt" / "card" / "siamedge.yaml"  # e.g. an SD card not mounted yet
    (config_dir / "siamedge.yaml").symlink_to(target)
    args = _args(tmp_path, entry_point, empty_dev, *mode)
    expected = (
        rf"^--config-dir {re.escape(str(config_dir))}: "
        rf"{re.escape(str(config_dir / 'siamedge.yaml'))} is a symbolic link to "
        rf"{re.escape(str(target))}, which does not exist; make that file, remove the link or "
        r"pick another --config-dir$"
    )
    with pytest.raises(SiamedgeError, match=expected):
        install.run(args)
    assert not (tmp_path / "units").exists()
    assert not (tmp_path / "mnt").exists()


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


def test_a_venv_made_from_a_python_under_a_home_folder_relaxes_protect_home(
    tmp_path: Path,
) -> None:
    # pyenv and uv keep their Pythons under /root or /home; a venv in /opt links to one, and
    # with ProtectHome=yes the service could not start ("not found", exit 127).
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to("/root/.pyenv/versions/3.11.7/bin/python3.11")
    entry_point = python.parent / "siamedge"
    entry_point.write_text(f"#!{python}\nimport sys\n", encoding="utf-8")
    paths = install.runtime_paths(entry_point)
    assert Path("/root/.pyenv/versions/3.11.7/bin/python3.11") in paths
    template = "ExecStart=/x\nProtectHome=yes\n"
    config = Path("/etc/siamedge/siamedge.yaml")
    assert "ProtectHome=yes" in install.render_unit(template, entry_point, config, "t").split()
    relaxed = install.render_unit(template, entry_point, config, "t", paths)
    assert "ProtectHome=read-only" in relaxed.splitlines()
    # A binary entry point, or one this user cannot read: only its own path counts.
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF")
    assert install.runtime_paths(binary) == [binary.resolve()]
    assert install.runtime_paths(tmp_path / "missing") == [(tmp_path / "missing").resolve()]


def test_render_needs_exactly_one_exec_start() -> None:
    with pytest.raises(ConfigError, match=r"custom\.service: expected exactly one ExecStart="):
        install.render_unit("[Service]\n", Path("/x"), Path("/y"), "custom.service")


# --- what the service's dynamic user can reach ------------------------------------------------

REFUSED = "the installed service could not start: "


def _script(path: Path, interpreter: Path | str = "/bin/sh", mode: int = 0o755) -> Path:
    """An executable `#!interpreter` script at `path`, its new folders open to everyone."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.write_text(f"#!{interpreter}\nexit 0\n", encoding="utf-8")
    path.chmod(mode)
    return path


def _venv_from(python: Path, venv: Path) -> Path:
    """A venv-like `siamedge` script whose `#!` names venv/bin/python, a link to `python`."""
    _script(python)
    link = venv / "bin" / "python"
    link.parent.mkdir(parents=True)
    link.symlink_to(python)
    return _script(venv / "bin" / "siamedge", link)


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder install-service takes for /tmp, which PrivateTmp=yes hides from the service."""
    path = tmp_path / "tmp"
    monkeypatch.setattr(install, "PRIVATE_TMP_ROOTS", (path, tmp_path / "var" / "tmp"))
    return path


def _refused(args: argparse.Namespace, *problems: str) -> None:
    """install.run refuses with exactly these problems."""
    with pytest.raises(SiamedgeError) as raised:
        install.run(args)
    assert str(raised.value) == REFUSED + "; ".join(problems)


@DRY_OR_REAL
def test_an_entry_point_under_a_private_tmp_is_refused(
    tmp_path: Path, private_tmp: Path, empty_dev: Path, mode: tuple[str, ...]
) -> None:
    entry = _script(private_tmp / "checkout" / ".venv" / "bin" / "siamedge")
    _refused(
        _args(tmp_path, entry, empty_dev, *mode),
        f"the entry point {entry} is under {private_tmp}, which PrivateTmp=yes replaces with an "
        f"empty folder for the service: install siamedge into a venv outside {private_tmp}, "
        "e.g. /opt/siamedge/venv, and run its install-service",
    )
    _assert_nothing_written(tmp_path)


def test_a_venv_linked_into_a_private_tmp_is_refused(
    tmp_path: Path, private_tmp: Path, empty_dev: Path
) -> None:
    python = private_tmp / "python" / "bin" / "python3.11"
    entry = _venv_from(python, tmp_path / "opt" / "venv")
    _refused(
        _args(tmp_path, entry, empty_dev),
        f"its interpreter {python} is under {private_tmp}, which PrivateTmp=yes replaces with "
        f"an empty folder for the service: make the venv from a Python outside {private_tmp}, "
        "e.g. /usr/bin/python3 -m venv /opt/siamedge/venv",
    )
    _assert_nothing_written(tmp_path)


def test_a_config_dir_under_a_private_tmp_is_refused(
    tmp_path: Path, private_tmp: Path, entry_point: Path, empty_dev: Path
) -> None:
    var_tmp = tmp_path / "var" / "tmp"
    config = var_tmp / "siamedge" / "siamedge.yaml"
    _refused(
        _args(tmp_path, entry_point, empty_dev, "--config-dir", str(config.parent)),
        f"the configuration {config} is under {var_tmp}, which PrivateTmp=yes replaces with an "
        f"empty folder for the service: pick a --config-dir outside {var_tmp}, e.g. /etc/siamedge",
    )
    assert not (tmp_path / "units").exists()
    assert not var_tmp.exists()


@DRY_OR_REAL
@pytest.mark.parametrize("home_mode", [0o700, 0o750, 0o754], ids=["0700", "0750", "0754"])
def test_a_python_in_a_folder_closed_to_others_is_refused(
    tmp_path: Path, empty_dev: Path, mode: tuple[str, ...], home_mode: int
) -> None:
    """/root is 0700, and pyenv keeps its Pythons there: the service's uid cannot reach them,
    whatever ProtectHome= says; its group bits (0750) or read bit (0754) do not help it."""
    home = tmp_path / "root"
    python = home / ".pyenv" / "versions" / "3.11.7" / "bin" / "python3.11"
    entry = _venv_from(python, tmp_path / "opt" / "venv")
    home.chmod(home_mode)
    _refused(
        _args(tmp_path, entry, empty_dev, *mode),
        f"its interpreter {python} is below {home} (mode {home_mode:04o}), which the service's "
        f"dynamic user cannot enter: make the venv from a Python outside {home}, e.g. "
        f"/usr/bin/python3 -m venv /opt/siamedge/venv (or chmod o+x {home})",
    )
    _assert_nothing_written(tmp_path)


def test_a_python_in_a_folder_others_may_enter_is_accepted(tmp_path: Path, empty_dev: Path) -> None:
    home = tmp_path / "root"
    entry = _venv_from(home / "python" / "bin" / "python3.11", tmp_path / "opt" / "venv")
    home.chmod(0o711)  # enter, not list
    assert install.run(_args(tmp_path, entry, empty_dev)) == install.EXIT_OK


def test_each_folder_at_fault_is_named_once(
    tmp_path: Path, private_tmp: Path, empty_dev: Path
) -> None:
    """A checkout under /tmp whose venv comes from a pyenv Python: both are named, the venv's
    own python link (also under /tmp) not again."""
    home = tmp_path / "root"
    python = home / ".pyenv" / "bin" / "python3.11"
    entry = _venv_from(python, private_tmp / "checkout" / ".venv")
    home.chmod(0o700)
    closed = tmp_path / "closed"
    config = closed / "siamedge" / "siamedge.yaml"
    closed.mkdir(mode=0o700)
    _refused(
        _args(tmp_path, entry, empty_dev, "--config-dir", str(config.parent)),
        f"the entry point {entry} is under {private_tmp}, which PrivateTmp=yes replaces with an "
        f"empty folder for the service: install siamedge into a venv outside {private_tmp}, "
        "e.g. /opt/siamedge/venv, and run its install-service",
        f"its interpreter {python} is below {home} (mode 0700), which the service's dynamic "
        f"user cannot enter: make the venv from a Python outside {home}, e.g. /usr/bin/python3 "
        f"-m venv /opt/siamedge/venv (or chmod o+x {home})",
        f"the configuration {config} is below {closed} (mode 0700), which the service's "
        f"dynamic user cannot enter: pick a --config-dir outside {closed}, e.g. /etc/siamedge "
        f"(or chmod o+x {closed})",
    )


@DRY_OR_REAL
@pytest.mark.parametrize(
    ("shebang", "file_mode", "needs"),
    [
        (True, 0o750, ("read and run", "rx")),
        (True, 0o751, ("read and run", "rx")),
        (False, 0o754, ("run", "x")),
    ],
    ids=["script-0750", "script-0751", "binary-0754"],
)
def test_an_entry_point_others_cannot_run_is_refused(
    tmp_path: Path,
    empty_dev: Path,
    mode: tuple[str, ...],
    shebang: bool,
    file_mode: int,
    needs: tuple[str, str],
) -> None:
    """A `#!` script is read by its interpreter too; a binary only needs to be run."""
    entry = _script(tmp_path / "venv" / "bin" / "siamedge", mode=file_mode)
    if not shebang:
        entry.write_bytes(b"\x7fELF")
    _refused(
        _args(tmp_path, entry, empty_dev, *mode),
        f"the entry point {entry} has mode {file_mode:04o}, but the service's dynamic user "
        f"must {needs[0]} it: chmod o+{needs[1]} {entry}",
    )
    _assert_nothing_written(tmp_path)


def test_a_kept_config_others_cannot_read_is_refused(
    tmp_path: Path, entry_point: Path, empty_dev: Path
) -> None:
    config_dir = tmp_path / "etc" / "siamedge"
    config_dir.mkdir(parents=True)
    target = tmp_path / "secrets" / "siamedge.yaml"  # the unit names the link; the mode is its
    target.parent.mkdir()
    target.write_text("mqtt:\n  host: broker.lan\n", encoding="utf-8")
    target.chmod(0o640)
    (config_dir / "siamedge.yaml").symlink_to(target)
    _refused(
        _args(tmp_path, entry_point, empty_dev),
        f"the configuration {config_dir / 'siamedge.yaml'} has mode 0640, but the service's "
        f"dynamic user must read it: chmod o+r {config_dir / 'siamedge.yaml'}",
    )
    assert not (tmp_path / "units").exists()


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ("", ()),
        ("DynamicUser=no\nPrivateTmp=false\n", ()),
        ("PrivateTmp=yes\n", ("tmp",)),
        ("DynamicUser = true\n", ("tmp", "home")),
    ],
    ids=["neither", "both-off", "private-tmp", "dynamic-user"],
)
def test_only_what_the_unit_hides_is_checked(
    tmp_path: Path,
    private_tmp: Path,
    empty_dev: Path,
    settings: str,
    refused: tuple[str, ...],
) -> None:
    """A unit template of one's own that runs as a user of its own (no DynamicUser=) and
    keeps /tmp is installed as before."""
    home = tmp_path / "root"
    python = home / "bin" / "python3"
    entry = _venv_from(python, private_tmp / "venv")
    home.chmod(0o700)
    source = tmp_path / "custom.service"
    source.write_text(f"[Service]\nExecStart=/x\n{settings}", encoding="utf-8")
    args = _args(tmp_path, entry, empty_dev, "--unit-source", str(source), "--dry-run")
    if not refused:
        assert install.run(args) == install.EXIT_OK
        return
    with pytest.raises(SiamedgeError) as raised:
        install.run(args)
    message = str(raised.value)
    assert (f"{entry} is under {private_tmp}" in message) == ("tmp" in refused)
    assert (f"{python} is below {home} (mode 0700)" in message) == ("home" in refused)


def test_the_command_checks_all_of_tmp_and_every_folder_by_default() -> None:
    private_tmp, top = STRICT_SERVICE_CHECKS
    assert (private_tmp, top) == ((Path("/tmp"), Path("/var/tmp")), Path("/"))
    need = install.ServiceNeed("the entry point", Path("/var/tmp/v/bin/siamedge"), 0, "fix {where}")
    assert install.service_problems([need]) == [
        "the entry point /var/tmp/v/bin/siamedge is under /var/tmp, which PrivateTmp=yes "
        "replaces with an empty folder for the service: fix /var/tmp"
    ]


def test_service_needs_are_the_entry_point_its_python_and_the_config(tmp_path: Path) -> None:
    python = tmp_path / "python3.11"
    entry = _venv_from(python, tmp_path / "venv")
    config = tmp_path / "etc" / "siamedge.yaml"
    needs = [(n.what, n.path, n.bits) for n in install.service_needs(entry, config)]
    read_run, run = stat.S_IROTH | stat.S_IXOTH, stat.S_IXOTH
    assert needs == [
        ("the entry point", entry, read_run),
        ("its interpreter", entry.parent / "python", run),
        ("its interpreter", python, run),
        ("the configuration", config, stat.S_IROTH),
    ]
