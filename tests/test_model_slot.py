"""The service's model slot with a model file it may not read: the reason is kept, the service
goes on, and fixing the permissions (not only the content) gets the model loaded."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from siamedge.config import Settings
from siamedge.models import builtin_model_path
from siamedge.service import ModelSlot
from siamedge.systemd import Notifier

# Root reads everything; the child drops the capabilities that let it (as systemd's
# ProtectHome= or a DynamicUser would leave the service without them).
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]

CHILD = textwrap.dedent(
    """
    import sys, time
    from siamedge.config import Settings
    from siamedge.service import ModelSlot
    from siamedge.systemd import Notifier

    settings = Settings.model_validate(
        {"model": {"path": sys.argv[1], "providers": ["cpu"]}, "service": {"model_retry_s": 0.01}}
    )
    slot = ModelSlot(settings, Notifier())
    slot.load()
    print("error:", slot.error, flush=True)
    sys.stdin.readline()  # the parent fixed the permissions
    loaded = slot.retry_if_changed(time.monotonic() + 1.0)
    print("loaded:", loaded, slot.error, flush=True)
    """
)


@pytest.fixture
def model_copy(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "model.onnx"
    shutil.copyfile(builtin_model_path(), path)
    yield path
    folder.chmod(0o755)


def run_child(model: Path, lock: Path, mode_after: int) -> tuple[str, str]:
    """The child's error line with `lock` at mode 000, and its retry line after `lock` gets
    `mode_after`."""
    lock.chmod(0o000)
    child = subprocess.Popen(
        [*UNPRIVILEGED, sys.executable, "-c", CHILD, str(model)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    error = child.stdout.readline()
    lock.chmod(mode_after)
    child.stdin.write("fixed\n")
    child.stdin.flush()
    loaded = child.stdout.readline()
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    return error, loaded


def test_a_model_folder_the_service_may_not_enter_is_a_reason_then_loads(
    model_copy: Path,
) -> None:
    # It raised PermissionError out of Path.exists(): the daemon exited 1 and restarted forever.
    error, loaded = run_child(model_copy, model_copy.parent, 0o755)
    assert error == f"error: model file {model_copy} cannot be read: Permission denied\n"
    assert loaded == "loaded: True None\n"


def test_a_model_file_whose_permissions_are_fixed_is_loaded_again(model_copy: Path) -> None:
    # chmod changes neither mtime nor size: the slot never noticed the fix.
    error, loaded = run_child(model_copy, model_copy, 0o644)
    assert error.startswith("error: ") and error != "error: None\n"
    assert loaded == "loaded: True None\n"


def test_a_model_path_the_system_refuses_is_a_reason_not_a_crash() -> None:
    too_long = "/tmp/" + "m" * 300 + ".onnx"  # ENAMETOOLONG, which Path.exists() raised
    settings = Settings.model_validate({"model": {"path": too_long, "providers": ["cpu"]}})
    slot = ModelSlot(settings, Notifier())
    slot.load()
    assert slot.engine is None
    assert slot.error == f"model file {too_long} cannot be read: File name too long"


def test_a_configured_threshold_replaces_the_models_and_the_log_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings.model_validate(
        {
            "model": {"path": "builtin", "providers": ["cpu"], "warmup": False},
            "tracker": {"seg_thr": 0.6},
        }
    )
    slot = ModelSlot(settings, Notifier())
    with caplog.at_level(logging.INFO, logger="siamedge.service"):
        slot.load()
    assert slot.engine is not None and slot.engine.contract.seg_thr == 0.45
    assert "tracker.seg_thr 0.6 replaces the model's 0.45" in caplog.messages
    assert not any("lost_score" in message for message in caplog.messages)
