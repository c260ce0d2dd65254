"""The declared dependency bounds: scripts/oldest-versions.txt pins each to its lower bound."""

from __future__ import annotations

from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

RUNTIME_EXTRAS = {"cpu", "gpu", "systemd", "metrics"}
"""The extras a board installs (export and dev are for a desktop)."""


def _pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "=="
            pins[requirement.name.lower()] = Version(specifier.version)
    return pins


def _runtime_requirements() -> list[Requirement]:
    found = []
    for text in requires("siamedge") or []:
        requirement = Requirement(text)
        marker = str(requirement.marker or "")
        if not marker or any(f'extra == "{extra}"' in marker for extra in RUNTIME_EXTRAS):
            found.append(requirement)
    return found


def test_every_runtime_lower_bound_is_pinned_for_the_oldest_test_run(repo_root: Path) -> None:
    pins = _pins(repo_root / "scripts" / "oldest-versions.txt")
    requirements = _runtime_requirements()
    assert {r.name.lower() for r in requirements} >= {"numpy", "onnxruntime", "pydantic"}
    for requirement in requirements:
        name = requirement.name.lower()
        (bound,) = (s for s in requirement.specifier if s.operator == ">=")
        if name == "onnxruntime-gpu":  # the same releases as onnxruntime, not installable here
            name = "onnxruntime"
        pinned = pins[name]
        lowest = Version(bound.version)
        # 4.8 is opencv-python-headless 4.8.0.76: the pin is the bound's first release.
        assert pinned.release[: len(lowest.release)] == lowest.release, (name, pinned, lowest)
        assert pinned in requirement.specifier, (name, pinned)
