"""`siamedge install-service`: installs the systemd unit, a Jetson device drop-in and the config.

Never overwrites an existing configuration file, and never enables or starts the service.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from siamedge.config import load_settings, read_config_text, settings_from_text
from siamedge.errors import ConfigError, SiamedgeError

UNIT_NAME = "siamedge.service"
CONFIG_NAME = "siamedge.yaml"
DROPIN_NAME = "10-tegra-devices.conf"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_CONFIG_DIR = Path("/etc/siamedge")
DEFAULT_DEV_DIR = Path("/dev")
ENTRY_POINT = "siamedge"

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent
# Shipped files: inside the wheel under siamedge/_data, in a source checkout at the top level.
UNIT_SOURCES = (PACKAGE_DIR / "_data" / UNIT_NAME, CHECKOUT_DIR / "systemd" / UNIT_NAME)
CONFIG_SOURCES = (PACKAGE_DIR / "_data" / CONFIG_NAME, CHECKOUT_DIR / "config" / CONFIG_NAME)

TEGRA_NODE_PATTERNS = ("nvmap", "nvhost-*", "nvgpu/*/*", "host1x-fence", "nvdla*", "nvsciipc")
"""Jetson GPU, DLA and memory-manager nodes, relative to /dev; which exist varies by L4T."""
HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))
"""Hidden by ProtectHome=yes; an entry point or config below them needs ProtectHome=read-only."""
PRIVATE_TMP_ROOTS = (Path("/tmp"), Path("/var/tmp"))
"""Empty to the service: PrivateTmp=yes (DynamicUser=yes implies it) mounts its own there."""
ACCESS_CHECK_TOP = Path("/")
"""Where the dynamic user's folder check starts: the folders at and above it count as open."""
ENTRY_FIX = (
    "install siamedge into a venv outside {where}, e.g. /opt/siamedge/venv, and run its "
    "install-service"
)
PYTHON_FIX = (
    "make the venv from a Python outside {where}, e.g. /usr/bin/python3 -m venv /opt/siamedge/venv"
)
CONFIG_FIX = "pick a --config-dir outside {where}, e.g. /etc/siamedge"

FILE_MODE = 0o644
DIR_MODE = 0o755
EXIT_OK = 0
ROOT_HINT = "run it as root (sudo)"

_EXEC_START = re.compile(r"^ExecStart=.*$", re.MULTILINE)
_PROTECT_HOME = re.compile(r"^ProtectHome=.*$", re.MULTILINE)


@dataclass(frozen=True)
class ServiceNeed:
    """A file the service runs or reads as its own user to start."""

    what: str
    """How messages name it: "the entry point", "its interpreter", "the configuration"."""
    path: Path
    bits: int
    """The "other" bits it needs: S_IXOTH to run it, S_IROTH to read it (a script, a config)."""
    fix: str
    """What to do instead, with {where} for the folder it must not be in."""


@dataclass(frozen=True)
class Plan:
    """Everything install-service is about to write or run."""

    unit_path: Path
    unit_text: str
    dropin_path: Path | None
    dropin_text: str | None
    config_path: Path
    config_source: Path | None
    """None: a configuration is already there and stays as it is."""
    config_text: str | None
    """The validated text of config_source, as it will be written."""
    reload: bool
    notes: tuple[str, ...]
    unwritable: tuple[str, ...] = ()
    """Target folders this user may not write to: an error for a real run, a note for a dry one."""


def _unit_quote(arg: str) -> str:
    """One ExecStart argument, quoted for systemd.service(5) when it needs it."""
    escaped = arg.replace("%", "%%")
    if re.search(r"[\s\"'\\$;]", escaped):
        return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def _is_below(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def render_unit(
    template: str,
    executable: Path,
    config_path: Path,
    origin: str,
    runs_from: Sequence[Path] = (),
) -> str:
    """The unit text with ExecStart running `executable run --config config_path`.

    Paths under /home, /root or /run/user (among them `runs_from`: what else the service reads
    to start, see runtime_paths) turn ProtectHome=yes into read-only, or the service could not
    see them. `origin` names the template in errors.
    """
    if len(_EXEC_START.findall(template)) != 1:
        raise ConfigError(f"{origin}: expected exactly one ExecStart= line")
    command = " ".join(_unit_quote(str(a)) for a in (executable, "run", "--config", config_path))
    text = _EXEC_START.sub(lambda _: f"ExecStart={command}", template)
    if any(_is_below(path, HOME_ROOTS) for path in (executable, config_path, *runs_from)):
        text = _PROTECT_HOME.sub("ProtectHome=read-only", text)
    return text


def runtime_paths(executable: Path) -> list[Path]:
    """Where the entry point really runs from: the entry point and the interpreter its `#!`
    line names, with their symlinks resolved. A venv's python is a link to the Python it was
    made with (pyenv and uv keep theirs under /root or /home), whose standard library the
    service reads too."""
    paths = [executable.resolve()]
    try:
        with executable.open("rb") as script:
            first_line = script.readline(4096)
    except OSError:
        return paths
    if first_line.startswith(b"#!") and (words := first_line[2:].split()):
        interpreter = Path(os.fsdecode(words[0]))
        paths += [interpreter, interpreter.resolve()]
    return paths


def service_needs(executable: Path, config_path: Path) -> list[ServiceNeed]:
    """What the service runs and reads to start, each as written and with its symlinks
    resolved: the entry point and its interpreter (see runtime_paths), which the kernel runs,
    a `#!` entry point read by that interpreter too, and the configuration, read."""
    entry, *interpreters = runtime_paths(executable)
    entry_bits = stat.S_IXOTH | (stat.S_IROTH if interpreters else 0)  # a #! script is read
    needs = [ServiceNeed("the entry point", p, entry_bits, ENTRY_FIX) for p in (executable, entry)]
    needs += [ServiceNeed("its interpreter", p, stat.S_IXOTH, PYTHON_FIX) for p in interpreters]
    needs += [
        ServiceNeed("the configuration", p, stat.S_IROTH, CONFIG_FIX)
        for p in (config_path, config_path.resolve())
    ]
    by_path: dict[Path, ServiceNeed] = {}
    for need in needs:
        by_path.setdefault(need.path, need)
    return list(by_path.values())


def _hidden_problem(need: ServiceNeed, root: Path) -> str:
    return (
        f"{need.what} {need.path} is under {root}, which PrivateTmp=yes replaces with an empty "
        f"folder for the service: {need.fix.format(where=root)}"
    )


def _access_problem(need: ServiceNeed, top: Path) -> tuple[Path, str] | None:
    """The folder or file that keeps the dynamic user from `need`, and why; None if none."""
    try:
        for folder in reversed(need.path.parents):
            if top in folder.parents and not (mode := folder.stat().st_mode) & stat.S_IXOTH:
                return folder, (
                    f"{need.what} {need.path} is below {folder} (mode {stat.S_IMODE(mode):04o}), "
                    "which the service's dynamic user cannot enter: "
                    f"{need.fix.format(where=folder)} (or chmod o+x {folder})"
                )
        mode = need.path.stat().st_mode
    except OSError:  # missing (a configuration still to be written): nothing to judge
        return None
    if mode & need.bits == need.bits:
        return None
    read, run = need.bits & stat.S_IROTH, need.bits & stat.S_IXOTH
    how = " and ".join(verb for verb, needed in (("read", read), ("run", run)) if needed)
    rights = "r" * bool(read) + "x" * bool(run)
    return need.path.resolve(), (
        f"{need.what} {need.path} has mode {stat.S_IMODE(mode):04o}, but the service's dynamic "
        f"user must {how} it: chmod o+{rights} {need.path}"
    )


def service_problems(
    needs: Sequence[ServiceNeed],
    private_tmp: tuple[Path, ...] = PRIVATE_TMP_ROOTS,
    top: Path | None = ACCESS_CHECK_TOP,
) -> list[str]:
    """Why the service could not reach `needs`: one message per folder or file at fault.

    A path under `private_tmp` is not there for it: PrivateTmp=yes mounts an empty folder
    there. DynamicUser=yes runs it as a uid allocated at start, which owns none of these files
    and is in none of their groups, so only their "other" bits count (not what root, who
    installs it, may do; group bits are not counted, not even for SupplementaryGroups=video):
    execute (enter, not list) on every folder on the way below `top`, and on the file the
    `bits` of its need. `top` None skips these (the unit runs as a user of its own). ACLs are
    not read.
    """
    problems: dict[Path, str] = {}
    for need in needs:
        if hidden := [root for root in private_tmp if _is_below(need.path, (root,))]:
            problems.setdefault(hidden[0], _hidden_problem(need, hidden[0]))
        elif top is not None and (found := _access_problem(need, top)) is not None:
            problems.setdefault(*found)
    return list(problems.values())


def _unit_flag(text: str, key: str) -> bool:
    """Whether the unit's last `key=` line turns it on (systemd's yes, true, on or 1)."""
    values = re.findall(rf"^\s*{key}\s*=(.*)$", text, re.MULTILINE)
    return bool(values) and values[-1].strip().lower() in ("yes", "true", "on", "1")


def _unit_problems(unit_text: str, executable: Path, config_path: Path) -> list[str]:
    """service_problems, as far as the unit hides /tmp and runs as a dynamic user."""
    dynamic = _unit_flag(unit_text, "DynamicUser")  # which implies PrivateTmp=yes
    return service_problems(
        service_needs(executable, config_path),
        PRIVATE_TMP_ROOTS if dynamic or _unit_flag(unit_text, "PrivateTmp") else (),
        ACCESS_CHECK_TOP if dynamic else None,
    )


def tegra_device_nodes(dev_dir: Path) -> list[Path]:
    """Jetson GPU/DLA/nvmap character devices present under `dev_dir`, as /dev paths, sorted."""
    found = {path for pattern in TEGRA_NODE_PATTERNS for path in dev_dir.glob(pattern)}
    return sorted(DEFAULT_DEV_DIR / p.relative_to(dev_dir) for p in found if _is_char_device(p))


def _is_char_device(path: Path) -> bool:
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except OSError:  # a dangling link, or gone since the glob
        return False


def render_device_dropin(nodes: list[Path]) -> str:
    """A drop-in allowing the given device nodes (the unit's DevicePolicy=closed hides them)."""
    lines = [
        "# Written by `siamedge install-service` from the Jetson (Tegra) device nodes present",
        "# at install time; run it again after an L4T upgrade.",
        "[Service]",
        *(f"DeviceAllow={node} rw" for node in nodes),
    ]
    return "\n".join(lines) + "\n"


def _first_existing(candidates: tuple[Path, ...], what: str) -> Path:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise SiamedgeError(f"no shipped {what} found (looked at {tried}); pass its path")


def _read_unit_template(path: Path) -> str:
    """The text of a unit template; SiamedgeError if unreadable, ConfigError if not text."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiamedgeError(f"{path}: cannot read the unit file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: the unit file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


def _read_config_source(path: Path) -> str:
    """The text of the configuration to install, validated like `siamedge run` would."""
    if path.is_dir():
        raise ConfigError(f"--config-source {path} is a directory, not a configuration file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    text = read_config_text(path)
    settings_from_text(text, str(path))  # ConfigError naming the file and the problem
    return text


def _existing_config_problem(path: Path) -> list[str]:
    """A note when the configuration already installed (kept as it is) would not start."""
    try:
        load_settings(path)
    except ConfigError as exc:
        return [f"the configuration kept at {path} does not validate, fix it: {exc}"]
    return []


def _kind(path: Path) -> str:
    return "a file, not a directory" if path.is_file() else "not a directory"


def _writable_dir(option: str, path: Path) -> bool:
    """Whether this user can write in `path`, made on the way if missing; raises if nobody can.

    Looks at the folder, or the nearest existing one above it, without writing anything.
    """
    absolute = path.absolute()
    existing = next(p for p in (absolute, *absolute.parents) if os.path.exists(p))
    what = f"{option} {path}"
    if existing != absolute:
        what += f" cannot be created: {existing}"
    if not existing.is_dir():
        raise SiamedgeError(f"{what} is {_kind(existing)}")
    if os.statvfs(existing).f_blocks == 0:  # proc, sysfs: not even root can create files there
        raise SiamedgeError(f"{what} is on a virtual filesystem (like /proc or /sys)")
    return os.access(existing, os.W_OK)


def make_plan(args: argparse.Namespace) -> Plan:
    """Check every input and work out what to write, without touching anything."""
    unit_source: Path = args.unit_source or _first_existing(UNIT_SOURCES, "unit file")
    # absolute() and not resolve(): a venv's python is a symlink that must stay one.
    executable: Path = (args.executable or Path(sys.executable).parent / ENTRY_POINT).absolute()
    config_path: Path = args.config_dir.absolute() / CONFIG_NAME
    if not executable.is_file() or not os.access(executable, os.X_OK):
        raise SiamedgeError(
            f"no executable siamedge entry point at {executable}: install siamedge into this "
            "environment first (pip install 'siamedge[cpu,systemd]') or pass --executable"
        )
    template = _read_unit_template(unit_source)
    unit_text = render_unit(
        template, executable, config_path, str(unit_source), runtime_paths(executable)
    )

    notes = []
    if "ProtectHome=read-only" in unit_text:
        notes.append(
            "ExecStart, its Python or the configuration lives under a home folder: "
            "ProtectHome=read-only instead of yes; the service's dynamic user must be able to "
            "read it"
        )
    nodes = tegra_device_nodes(args.dev_dir)
    dropin_path = args.unit_dir / f"{UNIT_NAME}.d" / DROPIN_NAME if nodes else None
    dropin_text = render_device_dropin(nodes) if nodes else None
    targets = [("--unit-dir", args.unit_dir)]
    if dropin_path is not None:
        targets.append(("the drop-in folder", dropin_path.parent))

    config_source: Path | None = None
    config_text: str | None = None
    if config_path.exists() and not config_path.is_file():
        kind = "a directory" if config_path.is_dir() else "not a regular file"
        raise SiamedgeError(
            f"--config-dir {args.config_dir}: {config_path} is {kind}, not a configuration "
            "file; move it away or pick another --config-dir"
        )
    if config_path.is_symlink() and not config_path.exists():
        raise SiamedgeError(
            f"--config-dir {args.config_dir}: {config_path} is a symbolic link to "
            f"{os.readlink(config_path)}, which does not exist; make that file, remove the link "
            "or pick another --config-dir"
        )
    if not config_path.exists():
        config_source = args.config_source or _first_existing(CONFIG_SOURCES, "configuration")
        config_text = _read_config_source(config_source)
        targets.append(("--config-dir", args.config_dir))
    else:
        notes.extend(_existing_config_problem(config_path))
    unwritable = tuple(f"{opt} {path}" for opt, path in targets if not _writable_dir(opt, path))
    if problems := _unit_problems(unit_text, executable, config_path):
        raise SiamedgeError(f"the installed service could not start: {'; '.join(problems)}")
    return Plan(
        unit_path=args.unit_dir / UNIT_NAME,
        unit_text=unit_text,
        dropin_path=dropin_path,
        dropin_text=dropin_text,
        config_path=config_path,
        config_source=config_source,
        config_text=config_text,
        reload=not args.no_reload,
        notes=tuple(notes),
        unwritable=unwritable,
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(FILE_MODE)


def _describe(plan: Plan, dry_run: bool) -> list[str]:
    verb = "would " if dry_run else ""
    exec_start = next(ln for ln in plan.unit_text.splitlines() if ln.startswith("ExecStart="))
    lines = [f"{verb}install {plan.unit_path} ({exec_start})"]
    if plan.dropin_path is not None and plan.dropin_text is not None:
        count = plan.dropin_text.count("DeviceAllow=")
        lines.append(f"{verb}install {plan.dropin_path} ({count} Jetson device nodes)")
    if plan.config_source is None:
        lines.append(f"keep the existing configuration {plan.config_path}")
    else:
        lines.append(f"{verb}copy {plan.config_source} to {plan.config_path}")
    if plan.reload:
        lines.append(f"{verb}run systemctl daemon-reload")
    lines.extend(f"note: {note}" for note in plan.notes)
    lines.extend(
        f"note: this user cannot write in {target}; {ROOT_HINT}" for target in plan.unwritable
    )
    return lines


class ReloadError(SiamedgeError):
    """The files are installed, but `systemctl daemon-reload` failed (systemd not running...)."""

    def __init__(self, written: Sequence[Path], reason: str) -> None:
        self.written = tuple(written)
        self.reason = reason
        names = ", ".join(str(path) for path in written)
        super().__init__(
            f"installed {names}, but systemctl daemon-reload failed: {reason}; "
            "run `systemctl daemon-reload` yourself once systemd runs, then the next steps "
            "(or install with --no-reload to skip the reload)"
        )


def _daemon_reload() -> str | None:
    """Run `systemctl daemon-reload`: None, or why it failed (one line)."""
    try:
        done = subprocess.run(
            ["systemctl", "daemon-reload"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return "systemctl not found (is this a systemd host?)"
    except OSError as exc:
        return f"cannot run systemctl: {exc.strerror or exc}"
    if done.returncode == 0:
        return None
    said = " ".join(done.stderr.split())
    return said or f"exit status {done.returncode}"


def apply(plan: Plan) -> None:
    """Write the files and reload systemd.

    Raises OSError when a file cannot be written, ReloadError (a SiamedgeError) when they
    all are but the reload fails: the files stay installed.
    """
    files = [(plan.unit_path, plan.unit_text)]
    if plan.dropin_path is not None and plan.dropin_text is not None:
        files.append((plan.dropin_path, plan.dropin_text))
    if plan.config_text is not None:
        files.append((plan.config_path, plan.config_text))
    for path, text in files:
        _write(path, text)
    if plan.reload and (reason := _daemon_reload()) is not None:
        raise ReloadError([path for path, _ in files], reason)


NEXT_STEPS = """\
next steps:{reload}
  edit {config}
  systemctl enable --now siamedge
  systemctl status siamedge
  journalctl -u siamedge -f"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge install-service`."""
    parser.add_argument(
        "--unit-dir", type=Path, default=DEFAULT_UNIT_DIR, help="where the unit goes (%(default)s)"
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=DEFAULT_CONFIG_DIR,
        help="where siamedge.yaml goes; an existing one is kept (%(default)s)",
    )
    parser.add_argument(
        "--config-source",
        type=Path,
        help="example configuration to copy (default: the shipped one)",
    )
    parser.add_argument("--unit-source", type=Path, help="unit template (default: the shipped one)")
    parser.add_argument(
        "--executable",
        type=Path,
        help="the siamedge entry point ExecStart runs (default: next to this Python)",
    )
    parser.add_argument(
        "--dev-dir",
        type=Path,
        default=DEFAULT_DEV_DIR,
        help="where to look for Jetson device nodes (%(default)s)",
    )
    parser.add_argument("--no-reload", action="store_true", help="skip systemctl daemon-reload")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done")


def run(args: argparse.Namespace) -> int:
    """Install (or with --dry-run, describe) the service; prints the next steps.

    Every input is checked before anything is written. Returns EXIT_OK (0) when done; every
    failure raises, like the rest of siamedge: ConfigError for a bad template or configuration
    source (`siamedge` exits 78), SiamedgeError otherwise (exits 1). That includes ReloadError:
    the files are installed but `systemctl daemon-reload` failed (systemd not PID 1, as in a
    container or chroot); the next steps are printed first, with the reload as the first one,
    and the error names the installed files and what to do.
    """
    plan = make_plan(args)
    if plan.unwritable and not args.dry_run:
        raise SiamedgeError(f"cannot write in {', '.join(plan.unwritable)}; {ROOT_HINT}")
    for line in _describe(plan, args.dry_run):
        print(line)
    if args.dry_run:
        return EXIT_OK
    try:
        apply(plan)
    except PermissionError as exc:
        raise SiamedgeError(f"{exc}; {ROOT_HINT}") from None
    except OSError as exc:
        raise SiamedgeError(f"installing failed: {exc}") from None
    except ReloadError:
        reload = "\n  systemctl daemon-reload  (failed here: run it once systemd runs)"
        print(NEXT_STEPS.format(reload=reload, config=plan.config_path), flush=True)
        raise
    print(NEXT_STEPS.format(reload="", config=plan.config_path))
    return EXIT_OK
