"""Loads a SiamMask VOT checkpoint (.pth) into the PyTorch network, strictly.

Reads with torch.load(weights_only=True) only: never unpickles arbitrary objects.
"""

from __future__ import annotations

import errno
import logging
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from siamedge.errors import ModelError
from siamedge.export.network import SiamMaskVOT

log = logging.getLogger(__name__)

STATE_DICT_KEY = "state_dict"
DATA_PARALLEL_PREFIX = "module."
MAX_KEYS_LISTED = 12

ZIP_MAGIC = b"PK\x03\x04"
"""torch.save's format since PyTorch 1.6: a zip archive (torch checks these first bytes too)."""
PICKLE_PROTO = b"\x80"
"""The first byte of a binary pickle: the legacy torch.save format."""
NOT_A_CHECKPOINT = "not a PyTorch checkpoint (torch.save file) siamedge can read"
UNSUPPORTED_OPCODE = "Unsupported operand"
"""torch's weights-only unpickler on an opcode it does not read (e.g. protocol 4's FRAME)."""


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict stored in a .pth file, in any of the layouts people have.

    Accepts {'state_dict': {...}, ...} (the official files), a bare state dict, and keys with the
    `module.` prefix of nn.DataParallel. ModelError when the file is missing, unreadable, not a
    torch.save file, holds objects weights-only loading refuses, or holds no tensors.
    """
    if not path.is_file():
        missing = "is a folder, not a checkpoint file" if path.is_dir() else "not found"
        raise ModelError(f"checkpoint {path}: {missing}")
    try:
        with warnings.catch_warnings():
            # torch warns about formats it half supports; the error below says what is wrong.
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # permission denied, I/O error: the system's reason
            raise ModelError(f"cannot read the checkpoint {path}: {exc.strerror}") from exc
        # torch's zip reader answers EINVAL for an archive cut short (its central directory
        # points past the end): a file problem, not the system's.
        reason = _unreadable_reason(path, exc)
        raise ModelError(f"{path}: {NOT_A_CHECKPOINT}: {reason}") from exc
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        # torch's own message suggests weights_only=False (arbitrary code execution) and may
        # hold ANSI escapes: name the file and the reason instead.
        reason = _unreadable_reason(path, exc)
        raise ModelError(f"{path}: {NOT_A_CHECKPOINT}: {reason}") from exc
    return unwrap_state_dict(loaded, str(path))


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused the file, in a few words, from its first bytes
    and the kind of error."""
    with path.open("rb") as file:
        head = file.read(len(ZIP_MAGIC))
    if not head:
        return "empty file"
    if not head.startswith((ZIP_MAGIC, PICKLE_PROTO)):
        return "not a zip or pickle file"
    if "TorchScript" in str(exc):
        return "a TorchScript archive (torch.jit.save), not a torch.save file"
    if isinstance(exc, pickle.UnpicklingError):
        if UNSUPPORTED_OPCODE in str(exc):
            return "its pickle uses a protocol or opcodes that safe loading does not read"
        return (
            "holds objects other than tensors and plain containers, "
            "which siamedge does not unpickle"
        )
    if head.startswith(ZIP_MAGIC):
        return "a zip file but not a complete torch.save archive"
    return "a pickle but not a torch.save file, or a truncated one"


def unwrap_state_dict(loaded: object, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint object, `state_dict` unwrapped and `module.` stripped."""
    if isinstance(loaded, Mapping) and isinstance(loaded.get(STATE_DICT_KEY), Mapping):
        loaded = loaded[STATE_DICT_KEY]
    if not isinstance(loaded, Mapping):
        raise ModelError(
            f"{where}: expected a state dict or {{'{STATE_DICT_KEY}': ...}}, "
            f"got {type(loaded).__name__}"
        )
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{where}: the checkpoint holds no tensors")
    return {key.removeprefix(DATA_PARALLEL_PREFIX): value for key, value in tensors.items()}


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_LISTED])
    more = len(keys) - MAX_KEYS_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def check_state_dict(net: SiamMaskVOT, state: Mapping[str, torch.Tensor], where: str) -> None:
    """ModelError listing missing and unexpected keys and shape mismatches, if any, else the
    weights that hold NaN or infinite values."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key} {list(state[key].shape)} (expected {list(expected[key].shape)})"
        for key in set(expected) & set(state)
        if state[key].shape != expected[key].shape
    )
    not_finite = sorted(
        key
        for key in set(expected) & set(state)
        if state[key].is_floating_point() and not bool(torch.isfinite(state[key]).all())
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listed(mismatched)}")
    if problems:
        raise ModelError(
            f"{where}: not a SiamMask VOT (ResNet-50, refine) checkpoint: " + "; ".join(problems)
        )
    if not_finite:
        # A training run that diverged: every output would be NaN, which validation reported
        # only as `differs by nan` (and --no-validate not at all).
        raise ModelError(
            f"{where}: {len(not_finite)} weight tensor(s) hold NaN or infinite values "
            f"(a diverged training run?): {_listed(not_finite)}"
        )


def load_network(path: Path) -> SiamMaskVOT:
    """The network with the checkpoint's weights, in eval mode (strict key and shape match)."""
    state = read_checkpoint(path)
    return network_from_state_dict(state, str(path))


def network_from_state_dict(state: Mapping[str, torch.Tensor], where: str) -> SiamMaskVOT:
    """The network loaded strictly from a state dict; ModelError naming every mismatch."""
    net = SiamMaskVOT()
    check_state_dict(net, state, where)
    net.load_state_dict(state, strict=True)
    net.eval()
    log.info("loaded %d tensors from %s", len(state), where)
    return net
