"""The command line: offline tracking output, inspect, and clear errors with their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from fixtures.rtsp import SYSTEM_PYTHON
from onnx import numpy_helper

from siamedge.cli import EX_CONFIG, main
from siamedge.config import SyntheticSettings
from siamedge.models import builtin_model_path
from siamedge.sources.synthetic import SyntheticClip

TRACK_FIELDS = {"track_id", "state", "center", "size", "bbox", "rotated_box", "score", "mask"}


def synthetic_box() -> str:
    x, y, w, h = SyntheticClip(SyntheticSettings()).truth(0).box_xywh
    return f"{x},{y},{w},{h}"


def test_track_writes_one_json_line_per_frame_and_a_video(tmp_path: Path) -> None:
    out, video = tmp_path / "r.jsonl", tmp_path / "o.mp4"
    status = main(
        [
            "track",
            "--source",
            "synthetic",
            "--box",
            synthetic_box(),
            "--frames",
            "12",
            "--out",
            str(out),
            "--video",
            str(video),
            "--providers",
            "cpu",
        ]
    )
    assert status == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(12))
    assert all(line["width"] == 1280 and line["height"] == 720 for line in lines)
    first = lines[0]["tracks"][0]
    assert set(first) == TRACK_FIELDS
    assert first["bbox"] == [float(v) for v in synthetic_box().split(",")]
    later = lines[-1]["tracks"][0]
    assert later["mask"]["format"] == "rle"
    assert later["mask"]["size"] == [720, 1280]
    assert 0.0 <= later["score"] <= 1.0

    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 12


def _track_lines(tmp_path: Path, name: str, boxes: list[str]) -> list[dict]:
    out = tmp_path / name
    box_args = [arg for box in boxes for arg in ("--box", box)]
    options = ["--frames", "8", "--out", str(out), "--providers", "cpu"]
    status = main(["track", "--source", "synthetic", *options, *box_args])
    assert status == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_track_with_several_boxes_steps_them_together(tmp_path: Path) -> None:
    alone = _track_lines(tmp_path, "alone.jsonl", [synthetic_box()])
    together = _track_lines(
        tmp_path, "together.jsonl", [synthetic_box(), "100,80,60,40", "900,500,120,90"]
    )
    assert len(together) == len(alone) == 8
    for single, several in zip(alone, together, strict=True):
        assert [track["track_id"] for track in several["tracks"]] == ["1", "2", "3"]
        # target 1 in a batch of three follows exactly the path it follows alone
        first = several["tracks"][0]
        assert first["center"] == pytest.approx(single["tracks"][0]["center"], abs=1e-3)
        assert first["size"] == pytest.approx(single["tracks"][0]["size"], abs=1e-3)
        assert first["mask"] == single["tracks"][0]["mask"]
    assert together[0]["tracks"][2]["bbox"] == [900.0, 500.0, 120.0, 90.0]


def test_track_over_an_image_folder(tmp_path: Path, image_folder: Path) -> None:
    out = tmp_path / "r.jsonl"
    first = sorted(image_folder.iterdir())[0]
    height, width = cv2.imread(str(first)).shape[:2]
    box = f"{width // 4},{height // 4},{width // 2},{height // 2}"
    status = main(
        [
            *("track", "--source", str(image_folder), "--box", box),
            *("--out", str(out), "--mask-encoding", "polygon"),
        ]
    )
    assert status == 0
    lines = out.read_text().splitlines()
    assert len(lines) == len(list(image_folder.iterdir()))
    assert json.loads(lines[-1])["tracks"][0]["mask"]["format"] == "polygon"


def test_malformed_box_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["track", "--source", "synthetic", "--box", "1,2,3"])
    assert exit_info.value.code == 2
    assert "box must be x,y,w,h (4 numbers), got '1,2,3'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--box", "5000,10,20,20"], "lies entirely outside the 1280x720 frame"),
        (["--box", "10,10,0,20"], "size must be positive"),
        (["--box", "0.1,0.2,0.3,0.4"], "--box 1 (pixels of the first frame): box 0.3x0.4 px"),
        (["--box", "10,10,20,20", "--box", "0,0,2000,20"], "--box 2 (pixels of the first frame)"),
        (["--box", "10,10,20,20", "--model", "/nonexistent/m.onnx"], "model file not found"),
    ],
)
def test_track_errors_are_clear(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["track", "--source", "synthetic", "--frames", "2", *args])
    assert status == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--providers", "bogus"], "unknown provider 'bogus'; use tensorrt, cuda, cpu"),
        (["--providers", "cpu,CPU"], "unknown provider 'CPU'"),
        (["--frames", "0"], "must be at least 1, got 0"),
    ],
)
def test_track_options_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["track", "--source", "synthetic", "--box", "10,10,20,20", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_track_never_writes_over_its_source_or_before_a_frame(
    tmp_path: Path, image_folder: Path, video_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video_bytes = video_file.read_bytes()
    first_image = sorted(image_folder.iterdir())[0]
    for source, out in ((video_file, video_file), (image_folder, first_image)):
        status = main(["track", "--source", str(source), "--box", "1,1,10,10", "--out", str(out)])
        assert status == 1
        assert f"--out {out} would overwrite the source {source}" in capsys.readouterr().err
    assert video_file.read_bytes() == video_bytes
    assert first_image.stat().st_size > 0
    # a source without frames fails before --out is opened: an old file stays as it was
    empty, kept = tmp_path / "empty", tmp_path / "kept.jsonl"
    empty.mkdir()
    kept.write_text("earlier results\n")
    assert main(["track", "--source", str(empty), "--box", "1,1,10,10", "--out", str(kept)]) == 1
    assert kept.read_text() == "earlier results\n"


@pytest.mark.parametrize("where", ["folder", "missing parent"])
def test_track_names_an_out_it_cannot_write(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path if where == "folder" else tmp_path / "nope" / "o.jsonl"
    status = main(["track", "--source", "synthetic", "--box", "10,10,20,20", "--out", str(out)])
    assert status == 1
    expected = "is a folder" if where == "folder" else f"the folder {out.parent} does not exist"
    assert f"--out {out}" in (err := capsys.readouterr().err) and expected in err


def test_missing_source_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.mp4"
    status = main(["track", "--source", str(missing), "--box", "1,1,10,10"])
    assert status == 1
    assert str(missing) in capsys.readouterr().err


def test_inspect_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "builtin"]) == 0
    text = capsys.readouterr().out
    assert "contract: OK" in text
    assert "siamedge.model: builtin-ncc" in text
    assert "score output: yes" in text
    assert "layout: batch of any size" in text
    assert "network precision: float32" in text
    assert "im           float32  [batch, 3, 255, 255]" in text


def test_inspect_names_a_split_models_init_model(
    batched_toy_model: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = batched_toy_model("split.onnx", split=True)
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "layout: batch of any size, two models (split)" in text
    assert f"init model: {path.parent / 'split.init.onnx'}" in text


def test_inspect_checks_a_split_models_init_model(
    batched_toy_model: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = batched_toy_model("split.onnx", split=True)
    init = path.parent / "split.init.onnx"
    init.unlink()
    assert main(["inspect", str(path)]) == 1
    assert f"its init model {init} (metadata siamedge.init_model) does not exist" in (
        capsys.readouterr().err
    )
    init.mkdir()
    assert main(["inspect", str(path)]) == 1
    assert f"its init model {init} (metadata siamedge.init_model) is not a file" in (
        capsys.readouterr().err
    )


def test_inspect_routes_onnxruntimes_load_warnings_through_logging(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """As when the service opens a model (ort_log.captured): an unread initializer is logged
    at DEBUG, not printed raw and in colour on stderr."""
    model = onnx.load(builtin_model_path())
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "unread"))
    path = tmp_path / "unread.onnx"
    onnx.save(model, path)
    assert main(["inspect", str(path)]) == 0
    assert "Removing initializer 'unread'" not in capfd.readouterr().err


def test_inspect_rejects_a_non_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    assert main(["inspect", str(path)]) == 1
    assert "model.onnx: cannot load the model" in capsys.readouterr().err


def test_run_with_a_bad_config_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("mqtt:\n  hots: example.org\n")
    assert main(["run", "--config", str(config)]) == EX_CONFIG
    assert "bad.yaml: mqtt.hots: Extra inputs are not permitted" in capsys.readouterr().err


def test_run_override_is_validated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--mqtt-port", "0"]) == EX_CONFIG
    assert "mqtt.port" in capsys.readouterr().err


BLOCKED_CV2 = """
import sys
sys.modules["cv2"] = None  # the import fails as for a venv without OpenCV
from siamedge import cli
sys.exit(cli.main(["schema"]))
"""


def test_a_dependency_that_does_not_import_is_one_line_and_exit_78(repo_root: Path) -> None:
    # It was a traceback from deep inside the subcommands' modules on every command.
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_CV2],
        env={**os.environ, "PYTHONPATH": str(repo_root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EX_CONFIG
    assert done.stderr == (
        "siamedge: cannot import cv2 (import of cv2 halted; None in sys.modules): install "
        "siamedge again with its dependencies (pip install 'siamedge[cpu]'; on a Jetson, "
        "JetPack's python3-opencv in a venv made with --system-site-packages)\n"
    )


OPENCV_OF_NUMPY_1_UNDER_NUMPY_2 = """
import sys
sys.path[:0] = sys.argv[1:]
from siamedge import cli
sys.exit(cli.main(["schema"]))
"""


def test_an_opencv_built_for_another_numpy_is_named_with_the_fix(
    repo_root: Path, tmp_path: Path
) -> None:
    # The README's Jetson recipe once let pip bring NumPy 2 beside JetPack's OpenCV (built
    # against NumPy 1): Debian's python3-opencv under this venv's NumPy is the same mismatch.
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        pytest.skip("needs NumPy 2 in the test environment (the oldest-releases run has 1.24)")
    system = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import cv2, sys; print(cv2.__file__, sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    system_cv2, version = system.stdout.split(" ", 1)
    if version.strip() != str(sys.version_info[:2]):  # the venv's wheels must load under it
        pytest.skip(f"needs a venv of the system Python {version.strip()}, this is {sys.version}")
    only_cv2 = tmp_path / "system-cv2"
    only_cv2.mkdir()
    (only_cv2 / Path(system_cv2).name).symlink_to(system_cv2)
    site = sysconfig.get_paths()["purelib"]  # this venv: NumPy 2, pydantic, paho
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", OPENCV_OF_NUMPY_1_UNDER_NUMPY_2, str(only_cv2), site, str(repo_root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EX_CONFIG, done.stderr
    # One line: NumPy's banner and the traceback it prints before the import fails are held.
    assert done.stderr.splitlines() == [
        "siamedge: a compiled module does not import (numpy.core.multiarray failed to import): "
        f"it was built against another NumPy than the installed {np.__version__}; install the "
        "NumPy it was built for (JetPack's OpenCV: pip install 'numpy<2')"
    ]
