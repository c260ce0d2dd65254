"""What a benchmark needs beyond siamedge's own install (`pip install -e '.[cpu]'`): a package of
one of pyproject.toml's extras. Where it is missing, the benchmark stops with one line naming it
and the command that installs it (exit status 2), not a traceback:

    with needs(EXPORT, "needed to export the seed-0 checkpoint"):
        import torch

prints, where torch is missing, this one line (on stderr):

    trace_drift.py: onnx and torch are not installed (needed to export the seed-0 checkpoint);
    install the export extra: pip install 'siamedge[export]'
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MISSING_EXIT_STATUS = 2


@dataclass(frozen=True)
class Extra:
    """Packages of one of pyproject.toml's extras that benchmarks need together."""

    name: str
    packages: frozenset[str]

    @property
    def install(self) -> str:
        return f"pip install 'siamedge[{self.name}]'"


EXPORT = Extra("export", frozenset({"torch", "onnx"}))
"""The exporter and the PyTorch original."""
FIXTURES = Extra("dev", frozenset({"pytest", "jsonschema"}))
"""The test fixtures (tests/fixtures: servers, the broker) some benchmarks run."""
PYCOCOTOOLS = Extra("dev", frozenset({"pycocotools"}))


@contextlib.contextmanager
def needs(extra: Extra, purpose: str = "") -> Iterator[None]:
    """Imports in the block that need the extra: one of its packages missing stops the benchmark
    with one line naming those of them that are missing and the command that installs them; any
    other import error is raised as it is."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name not in extra.packages:
            raise
        missing = sorted(
            name
            for name in extra.packages
            if name == exc.name or importlib.util.find_spec(name) is None
        )
        script = Path(sys.argv[0]).name
        names = " and ".join([", ".join(missing[:-1]), missing[-1]] if missing[1:] else missing)
        verb = "are" if missing[1:] else "is"
        why = f" ({purpose})" if purpose else ""
        print(
            f"{script}: {names} {verb} not installed{why}; install the {extra.name} extra: "
            f"{extra.install}",
            file=sys.stderr,
        )
        raise SystemExit(MISSING_EXIT_STATUS) from None
