"""TensorRT engine folders: one per model file's content and build settings, the few most
recently used kept.

Hashes model files and manages folders under the cache folder; never reads a graph or opens a
session, and never touches what it did not name (the timing cache, other files).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from siamedge.errors import ModelError

log = logging.getLogger(__name__)

DIGEST_CHARS = 16
"""Hex characters of the model's SHA-256 in its folder name."""

ENGINE_FOLDERS_KEPT = 6
"""Engine folders kept (the most recently used): a model and a few earlier versions of it (a
split model takes two folders, track and init)."""

READ_CHUNK_BYTES = 1 << 20

_ENGINE_FOLDER = re.compile(rf"^.+-[0-9a-f]{{{DIGEST_CHARS}}}$")


def model_digest(model: Path, build: str = "") -> str:
    """The first DIGEST_CHARS hex characters of the SHA-256 of the model file's bytes (followed
    by `build`, when given)."""
    digest = hashlib.sha256()
    try:
        with model.open("rb") as stream:
            while chunk := stream.read(READ_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(f"{model}: cannot read the model: {exc.strerror}") from None
    if build:
        digest.update(b"\0" + build.encode("utf-8"))
    return digest.hexdigest()[:DIGEST_CHARS]


def engine_dir(cache_dir: Path, model: Path, build: str = "") -> Path:
    """Where the model's TensorRT engines live: cache_dir/<file stem>-<digest of its content
    and `build`>.

    onnxruntime names an engine after the model's file name, tensor names and library
    versions, its precision and DLA core (the profiles it checks against a file beside the
    engine), not its weights or constants: a model
    exported again under the same name (new weights, other hyper-parameters) would load the old
    engine and compute with the old numbers. Its own folder per content cannot. build: the
    settings an engine is built with that onnxruntime does not name it after (TF32, the
    builder's optimisation level, the workspace), so that changing one builds a new engine.
    """
    return cache_dir / f"{model.stem}-{model_digest(model, build)}"


def use_engine_dir(
    cache_dir: Path, model: Path, keep: int = ENGINE_FOLDERS_KEPT, build: str = ""
) -> Path:
    """The model's engine folder, created or marked as just used, once the engine folders
    beyond the `keep` most recently used are removed (a folder that cannot be removed is
    logged and left)."""
    folder = engine_dir(cache_dir, model, build)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)
    except OSError as exc:
        raise ModelError(
            f"TensorRT engine folder {folder} cannot be created: {exc.strerror}"
        ) from None
    folders = [
        entry
        for entry in cache_dir.iterdir()
        if entry.is_dir() and _ENGINE_FOLDER.match(entry.name)
    ]
    folders.sort(key=lambda entry: entry.stat().st_mtime_ns, reverse=True)
    for stale in folders[max(keep, 1) :]:  # the first is the folder just used
        try:
            shutil.rmtree(stale)
        except OSError as exc:
            log.warning("TensorRT engine folder %s cannot be removed: %s", stale, exc.strerror)
        else:
            log.info("removed TensorRT engine folder %s (not used lately)", stale)
    return folder


def empty(folder: Path) -> None:
    """Remove every engine in folder, keeping the folder (engines TensorRT cannot load)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
