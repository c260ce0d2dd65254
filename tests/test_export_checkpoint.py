"""read_checkpoint on files cut short and on files the system cannot read: a truncated torch.save
archive is named as one, and only real OS errors get the system's message."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
import torch

from siamedge.cli import main
from siamedge.errors import ModelError
from siamedge.export.checkpoint import read_checkpoint

pytestmark = pytest.mark.torch

TRUNCATED = "a zip file but not a complete torch.save archive"
NOT_A_CHECKPOINT = "not a PyTorch checkpoint (torch.save file) siamedge can read"
TENSOR_FLOATS = 5000
"""About 20 kB of tensor data: the first 10 kB (the audit's cut) end inside it."""
PROC_MEM = Path("/proc/self/mem")
"""A regular file whose first bytes cannot be read (EIO): a real OS error, without root's
exemption from file permissions."""


def _saved_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(TENSOR_FLOATS), "b": torch.ones(3)}}, buffer)
    return buffer.getvalue()


def _einval_from_torch(path: Path) -> bool:
    """Whether torch.load itself answers OSError(EINVAL) for this file (the case under test)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        return exc.errno == errno.EINVAL
    except Exception:
        return False
    return False


@pytest.mark.parametrize("keep", [10_000, -100, -1], ids=["first-10kB", "all-but-100", "all-but-1"])
def test_a_truncated_checkpoint_is_named_as_one_not_as_an_os_error(
    keep: int, tmp_path: Path
) -> None:
    """torch's zip reader raised OSError(EINVAL): `cannot read the checkpoint ...: Invalid
    argument` sent people looking for a system fault."""
    data = _saved_checkpoint()
    path = tmp_path / "ck_trunc.pth"
    path.write_bytes(data[:keep])
    assert _einval_from_torch(path), "this torch no longer answers EINVAL: the test is moot"
    with pytest.raises(ModelError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path}: {NOT_A_CHECKPOINT}: {TRUNCATED}"


def test_a_checkpoint_cut_before_its_data_is_named_as_truncated_too(tmp_path: Path) -> None:
    # torch raises RuntimeError here, not OSError: both cuts read the same.
    path = tmp_path / "ck_short.pth"
    path.write_bytes(_saved_checkpoint()[:100])
    with pytest.raises(ModelError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path}: {NOT_A_CHECKPOINT}: {TRUNCATED}"


def test_the_whole_checkpoint_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ck.pth"
    path.write_bytes(_saved_checkpoint())
    assert sorted(read_checkpoint(path)) == ["b", "w"]


def test_export_command_on_a_truncated_checkpoint_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ck_trunc.pth"
    path.write_bytes(_saved_checkpoint()[:10_000])
    out = tmp_path / "x.onnx"
    assert main(["export", "--checkpoint", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"siamedge: error: {path}: {NOT_A_CHECKPOINT}: {TRUNCATED}\n"
    assert "Invalid argument" not in err
    assert not out.exists()


def test_an_os_error_reading_the_file_keeps_the_systems_message() -> None:
    with pytest.raises(ModelError) as caught:
        read_checkpoint(PROC_MEM)
    assert str(caught.value) == f"cannot read the checkpoint {PROC_MEM}: Input/output error"
