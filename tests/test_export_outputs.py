"""The export's output files: checked before the export, written all or none (no torch needed)."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from siamedge.errors import ModelError
from siamedge.export.outputs import OutputFile, check_outputs, write_all


def _model(path: Path) -> OutputFile:
    return OutputFile("the model", path)


def _init(path: Path) -> OutputFile:
    return OutputFile("the init model", path)


def _no_space() -> bytes:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_check_outputs_names_each_path_that_cannot_be_written(tmp_path: Path) -> None:
    checkpoint = tmp_path / "c.pth"
    checkpoint.write_bytes(b"weights")
    hard_link = tmp_path / "hard.onnx"
    hard_link.hardlink_to(checkpoint)
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = {
        hard_link: f"it is the checkpoint {checkpoint}; choose another output file",
        folder: "it is a directory",
        Path(os.devnull): "it is not a regular file",
        checkpoint / "sub" / "m.onnx": f"{checkpoint} is not a directory",
    }
    for path, problem in cases.items():
        with pytest.raises(ModelError) as caught:
            check_outputs(checkpoint, [_model(tmp_path / "fine.onnx"), _init(path)])
        assert str(caught.value) == f"cannot write the init model to {path}: {problem}"
    check_outputs(checkpoint, [_model(tmp_path / "new" / "folders" / "m.onnx")])
    assert checkpoint.read_bytes() == b"weights"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.pth", "folder", "hard.onnx"]


def test_write_all_writes_every_file_as_a_plain_write_would(tmp_path: Path) -> None:
    out = tmp_path / "cam" / "m.onnx"
    init = tmp_path / "cam" / "m.init.onnx"
    sizes = write_all([(_model(out), lambda: b"track"), (_init(init), lambda: b"init!!")])
    assert sizes == [5, 6]
    assert (out.read_bytes(), init.read_bytes()) == (b"track", b"init!!")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert out.stat().st_mode == init.stat().st_mode == plain.stat().st_mode
    assert sorted(path.name for path in out.parent.iterdir()) == ["m.init.onnx", "m.onnx"]


def test_a_failed_write_leaves_nothing_new_and_keeps_the_older_model(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"older model")
    init = tmp_path / "m.init.onnx"
    with pytest.raises(ModelError) as caught:
        write_all([(_model(out), lambda: b"new track"), (_init(init), _no_space)])
    assert str(caught.value) == f"cannot write the init model to {init}: No space left on device"
    assert out.read_bytes() == b"older model"
    assert [path.name for path in tmp_path.iterdir()] == ["m.onnx"]


def test_an_interrupt_while_writing_leaves_nothing_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or SIGTERM, which the command line turns into one) that arrives while a file's
    bytes are being written: the half-written temporary file goes too."""
    write_bytes = Path.write_bytes

    def interrupted(path: Path, data: bytes) -> int:
        write_bytes(path, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    out = tmp_path / "new" / "m.onnx"
    with pytest.raises(KeyboardInterrupt):
        write_all([(_model(out), lambda: b"new track model")])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_move_into_place_leaves_nothing_new(tmp_path: Path) -> None:
    """A directory that appears at an output path after the up-front check: the files written
    beside it and the folder made for them go again."""
    folder = tmp_path / "new"
    out = folder / "m.onnx"
    init = folder / "m.init.onnx"

    def init_then_a_directory_at_out() -> bytes:
        out.mkdir()
        return b"init"

    with pytest.raises(ModelError, match=re.escape(f"cannot write the model to {out}: Is a")):
        write_all([(_model(out), lambda: b"track"), (_init(init), init_then_a_directory_at_out)])
    assert [path.name for path in folder.iterdir()] == ["m.onnx"]
    assert out.is_dir() and not init.exists()


def test_a_failed_write_removes_the_folders_it_made(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "m.onnx"
    with pytest.raises(ModelError, match="No space left on device"):
        write_all([(_model(out), _no_space)])
    assert not list(tmp_path.iterdir())
