"""TensorRT engine folders: one per model content, the most recently used kept."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from siamedge import engine_cache as ec
from siamedge.errors import ModelError


def _model(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_model_exported_again_under_its_name_gets_another_folder(tmp_path: Path) -> None:
    model = _model(tmp_path / "models" / "siammask.onnx", b"weights of the first export")
    first = ec.engine_dir(tmp_path / "trt", model)
    assert first.parent == tmp_path / "trt" and first.name.startswith("siammask-")
    assert ec.engine_dir(tmp_path / "trt", model) == first  # the same bytes, the same folder
    model.write_bytes(b"weights of the second export")
    assert ec.engine_dir(tmp_path / "trt", model) != first
    copy = _model(tmp_path / "elsewhere" / "siammask.onnx", b"weights of the first export")
    assert ec.engine_dir(tmp_path / "trt", copy) == first


def test_the_digest_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    model = _model(tmp_path / "m.onnx", b"abc" * ec.READ_CHUNK_BYTES)  # three chunks
    assert ec.model_digest(model) == hashlib.sha256(model.read_bytes()).hexdigest()[:16]


def test_an_unreadable_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.onnx: cannot read the model"):
        ec.model_digest(tmp_path / "nope.onnx")


def test_only_the_most_recently_used_engine_folders_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="siamedge.engine_cache")
    cache = tmp_path / "trt"
    models = [_model(tmp_path / f"v{i}" / "m.onnx", f"version {i}".encode()) for i in range(5)]
    folders = [ec.engine_dir(cache, model) for model in models]
    for age, folder in enumerate(folders):  # v0 used first, v4 last
        folder.mkdir(parents=True)
        os.utime(folder, (1_000_000 + age, 1_000_000 + age))
    (cache / "TensorrtExecutionProvider_cache_sm87.timing").write_bytes(b"timing")
    (cache / "notes").mkdir()
    again = ec.use_engine_dir(cache, models[1], keep=3)  # v1 is used again: the newest now
    assert again == folders[1]
    kept = sorted(entry.name for entry in cache.iterdir())
    assert kept == sorted(
        [
            "TensorrtExecutionProvider_cache_sm87.timing",
            "notes",
            folders[1].name,
            folders[3].name,
            folders[4].name,
        ]
    )
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed")]
    assert len(removed) == 2 and all("not used lately" in line for line in removed)


def test_an_engine_folder_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    model = _model(tmp_path / "m.onnx", b"model")
    blocker = tmp_path / "trt"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(ModelError, match=r"TensorRT engine folder .* cannot be created"):
        ec.use_engine_dir(blocker, model)
