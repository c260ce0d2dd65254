"""One-way dependencies between the service and its front ends (STYLE.md, "Seams worth keeping
clean"): front ends import siamedge.frontend, never siamedge.service; the service and the
interface module never import a front end (the web view, the metrics endpoint); only the
composition root (siamedge/run.py) knows both. prometheus_client has one owner: siamedge.metrics.

Every import statement counts, at module level or inside a function or `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "siamedge"
COMPOSITION_ROOT = "siamedge.run"
SERVICE = "siamedge.service"
INTERFACE = "siamedge.frontend"
WEB = "siamedge.web"
METRICS = "siamedge.metrics"
PROMETHEUS = "prometheus_client"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in the file `path` names (see imports_in)."""
    return imports_in(
        path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
    )


def imports_in(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module an import statement in `source` (module `module`) names, relative ones
    resolved; for `from a import b` both `a` and `a.b` (b may be a submodule)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package[: len(package) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def names_module(imports: set[str], module: str) -> set[str]:
    return {name for name in imports if name == module or name.startswith(module + ".")}


def package_modules() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_only_the_composition_root_imports_the_service() -> None:
    offenders = {
        module: sorted(names_module(imports, SERVICE))
        for module, imports in package_modules().items()
        if module not in {SERVICE, COMPOSITION_ROOT} and names_module(imports, SERVICE)
    }
    assert offenders == {}, f"front ends import {INTERFACE}, not {SERVICE}: {offenders}"


def test_only_the_composition_root_and_the_web_package_import_the_web_package() -> None:
    offenders = {
        module: sorted(names_module(imports, WEB))
        for module, imports in package_modules().items()
        if module != COMPOSITION_ROOT
        and not (module == WEB or module.startswith(WEB + "."))
        and names_module(imports, WEB)
    }
    assert offenders == {}, f"only {COMPOSITION_ROOT} wires the web view: {offenders}"


def test_only_the_composition_root_imports_the_metrics_endpoint() -> None:
    offenders = {
        module: sorted(names_module(imports, METRICS))
        for module, imports in package_modules().items()
        if module not in {METRICS, COMPOSITION_ROOT} and names_module(imports, METRICS)
    }
    assert offenders == {}, f"only {COMPOSITION_ROOT} wires the metrics endpoint: {offenders}"


def test_the_metrics_endpoint_is_a_front_end() -> None:
    """It reaches the service through the interface only, and knows nothing of the web view."""
    imports = imported_modules(PACKAGE / "metrics.py")
    assert INTERFACE in imports
    assert names_module(imports, SERVICE) == set()
    assert names_module(imports, WEB) == set()
    assert names_module(imports, COMPOSITION_ROOT) == set()


def test_only_the_metrics_endpoint_imports_prometheus_client() -> None:
    offenders = {
        module: sorted(names_module(imports, PROMETHEUS))
        for module, imports in package_modules().items()
        if module != METRICS and names_module(imports, PROMETHEUS)
    }
    assert offenders == {}, f"one owner per outside library: {offenders}"


def test_the_interface_imports_neither_side() -> None:
    imports = imported_modules(PACKAGE / "frontend.py")
    assert names_module(imports, SERVICE) == set()
    assert names_module(imports, WEB) == set()
    assert names_module(imports, COMPOSITION_ROOT) == set()


def test_the_checker_sees_every_kind_of_import() -> None:
    """The walk finds lazy, TYPE_CHECKING and relative imports (guards the guard)."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from siamedge.service import Service\n"
        "def f():\n"
        "    import siamedge.service\n"
        "    from .. import service\n"
        "    from ..service import Request\n"
        "    from . import server\n"
    )
    imports = imports_in(source, "siamedge.web.probe")
    assert names_module(imports, SERVICE) == {SERVICE, f"{SERVICE}.Service", f"{SERVICE}.Request"}
    assert "siamedge.web.server" in imports
    assert "siamedge.web.commands" in imports_in(
        "from .commands import WebInbox", WEB, is_package=True
    )


@pytest.mark.parametrize(
    ("imported", "absent"),
    [
        ("siamedge.web.server", SERVICE),
        ("siamedge.frontend", SERVICE),
        ("siamedge.service", WEB),
        ("siamedge.frontend", WEB),
        ("siamedge.metrics", SERVICE),
        ("siamedge.metrics", WEB),
        ("siamedge.service", METRICS),
        ("siamedge.service", PROMETHEUS),
        ("siamedge.web.server", METRICS),
    ],
)
def test_loading_one_side_does_not_load_the_other(imported: str, absent: str) -> None:
    """The same at run time, transitive imports included."""
    code = (
        "import sys\n"
        f"import {imported}\n"
        f"prefix = {absent!r}\n"
        "print(sorted(m for m in sys.modules if m == prefix or m.startswith(prefix + '.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
