"""The `siamedge` command: run (the service), track, inspect, check, watch, sources, schema, export,
install-service.

Parses arguments and maps errors to exit codes; the work lives in the modules it dispatches to.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Protocol

from siamedge import __version__
from siamedge.errors import ConfigError, SiamedgeError
from siamedge.systemd import configure_logging

EX_CONFIG = 78
"""sysexits.h EX_CONFIG: the systemd unit does not restart on it (RestartPreventExitStatus)."""
EX_FAILURE = 1
EX_INTERRUPTED = 130
"""128 + SIGINT."""
EX_BROKEN_PIPE = 141
"""128 + SIGPIPE: the reader of stdout went away (`siamedge track ... | head -1`)."""
EX_TERMINATED = 143
"""128 + SIGTERM."""


class Command(Protocol):
    """A subcommand module: declares its options and runs."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module implementing it, one-line help). Modules load only when chosen, so
# `siamedge --help` never imports onnxruntime or torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("siamedge.run", "run the tracking service (camera -> MQTT)"),
    "track": ("siamedge.offline", "track one box over a file, folder or synthetic clip"),
    "inspect": ("siamedge.inspect", "check a model against the contract and show its metadata"),
    "check": (
        "siamedge.check",
        "run a clip on every execution provider and compare it with the CPU provider",
    ),
    "watch": ("siamedge.watch", "show the live tracks of a running service (from MQTT)"),
    "sources": ("siamedge.devices", "list the /dev/video* cameras and the formats they offer"),
    "schema": ("siamedge.schema", "print the JSON Schema of an MQTT payload (no NAME: the list)"),
    "export": (
        "siamedge.export.command",
        "export a SiamMask VOT PyTorch checkpoint to the contract ONNX model",
    ),
    "install-service": (
        "siamedge.install",
        "install the systemd unit and the example configuration",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (loads every subcommand module)."""
    parser = argparse.ArgumentParser(
        prog="siamedge", description="SiamMask segmentation tracking for edge cameras."
    )
    parser.add_argument("--version", action="version", version=f"siamedge {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        _load(module_name).add_arguments(sub)
    return parser


def import_problem(exc: ImportError) -> str:
    """One line for a dependency that does not import, and what mends it."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and ("multiarray" in str(exc) or "_ARRAY_API" in str(exc)):
        return (
            f"a compiled module does not import ({exc}): it was built against another NumPy "
            f"than the installed {numpy.__version__}; install the NumPy it was built for "
            "(JetPack's OpenCV: pip install 'numpy<2')"
        )
    return (
        f"cannot import {exc.name or 'a dependency'} ({exc}): install siamedge again with its "
        "dependencies (pip install 'siamedge[cpu]'; on a Jetson, JetPack's python3-opencv in a "
        "venv made with --system-site-packages)"
    )


def _load(module_name: str) -> Command:
    module: Command = importlib.import_module(module_name)
    return module


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    _replace_closed_streams()
    said = io.StringIO()  # NumPy's banner and a traceback precede a mismatched cv2's failure
    try:
        with contextlib.redirect_stderr(said):
            parser = build_parser()
    except KeyboardInterrupt:  # Ctrl-C while the subcommands' modules load (about a second)
        return EX_INTERRUPTED
    except ImportError as exc:  # a broken installation: a restart cannot mend it
        print(f"siamedge: {import_problem(exc)}", file=sys.stderr)
        return EX_CONFIG
    sys.stderr.write(said.getvalue())  # what an import said that did not fail
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    terminated = _TerminationFlag()
    if args.command != "run":  # the service stops on its own signal handlers
        signal.signal(signal.SIGTERM, terminated.interrupt)
    try:
        status = _load(COMMANDS[args.command][0]).run(args)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
    except ConfigError as exc:
        print(f"siamedge: configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush
        return EX_BROKEN_PIPE
    except (SiamedgeError, OSError) as exc:  # OSError: a file it was told to read or write
        print(f"siamedge: error: {exc}", file=sys.stderr)
        return EX_FAILURE
    except KeyboardInterrupt:
        return EX_TERMINATED if terminated.raised else EX_INTERRUPTED
    return EX_TERMINATED if terminated.raised else status


class _TerminationFlag:
    """SIGTERM stops a command as Ctrl-C does (the same clean-up: partial files removed,
    outputs closed), and remembers that it was SIGTERM for the exit status."""

    def __init__(self) -> None:
        self.raised = False

    def interrupt(self, signum: int, frame: object) -> None:
        self.raised = True
        raise KeyboardInterrupt


def _replace_closed_streams() -> None:
    """A command started with stdout or stderr closed (`siamedge schema >&-`) writes to
    /dev/null instead of failing on a missing stream."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (for the process)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


if __name__ == "__main__":
    sys.exit(main())
