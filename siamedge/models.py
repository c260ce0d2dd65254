"""Resolves model references: `builtin` -> the packaged builtin-ncc file, else a path on disk.

Runtime-only: never imports onnx (the builder in builtin_model.py does, for developers).
"""

from __future__ import annotations

import stat
from importlib import resources
from pathlib import Path

from siamedge.errors import ModelError

BUILTIN = "builtin"
BUILTIN_FILE = "builtin-ncc.onnx"
SOURCE_TREE_MODELS = Path(__file__).resolve().parent.parent / "models"


def builtin_model_path() -> Path:
    """The builtin-ncc model: shipped in the wheel, or models/ of a source checkout."""
    packaged = resources.files("siamedge") / "_data" / BUILTIN_FILE
    if packaged.is_file():
        return Path(str(packaged))
    checkout = SOURCE_TREE_MODELS / BUILTIN_FILE
    if checkout.is_file():
        return checkout
    raise ModelError(
        f"the builtin model {BUILTIN_FILE} is missing from this installation; regenerate it with "
        f"`python -m siamedge.builtin_model --out models/{BUILTIN_FILE}` (needs onnx)"
    )


def resolve_model_path(model: str) -> Path:
    """`builtin` or an ONNX file path -> an existing file (ModelError when it is not one)."""
    if model == BUILTIN:
        return builtin_model_path()
    path = Path(model).expanduser()
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise ModelError(f"model file not found: {path}{_relative_note(path)}") from None
    except OSError as exc:  # e.g. a folder the service may not enter (ProtectHome=yes)
        raise ModelError(f"model file {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ModelError(f"model path is not a file: {path}")
    return path


def _relative_note(path: Path) -> str:
    """Where a relative path was looked for: the working directory, not the config file's
    folder (the unit's WorkingDirectory= under systemd)."""
    return "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
