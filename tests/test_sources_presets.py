"""The csi and rtsp presets: the pipeline strings, their config keys, and real GStreamer reading
them back (parse) and playing the avdec one from the real RTSP server (fixtures/rtsp_server.py)
behind basic authentication, also through GStreamerSource under Debian's OpenCV (the venv's
OpenCV wheel has no GStreamer).

The NVIDIA elements (nvarguscamerasrc, nvvidconv, nvv4l2decoder) exist only on a Jetson, so
their part is checked as strings and, with stand-ins for those elements, by gst_parse_launch.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fixtures.rtsp import SYSTEM_PYTHON, RtspServer

from siamedge.config import SourceSettings, settings_from_mapping
from siamedge.errors import ConfigError, SourceError
from siamedge.sources.factory import create_source, playback_fps, resolve_kind
from siamedge.sources.gstreamer import GStreamerSource, ends_in_appsink
from siamedge.sources.presets import (
    APPSINK,
    csi_pipeline,
    framerate,
    rtsp_pipeline,
    split_credentials,
)
from siamedge.sources.redact import redact_pipeline

CHECK_SCRIPT = Path(__file__).parent / "fixtures" / "gst_pipeline_check.py"
REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 60.0
USER = "adm@in"
PASSWORD = 'p"a\\ss! @w:%/?#'
"""Every character that breaks a URL or a gst-launch string unless escaped."""
TAIL = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
NVIDIA_STANDINS = {
    r"nvarguscamerasrc[^!]*": "fakesrc ",
    r"nvvidconv[^!]*": "fakesink fakesrc ",
    r"nvv4l2decoder[^!]*": "identity ",
}
"""Elements only a Jetson has -> installed ones, so gst_parse_launch reads and links the rest.
nvvidconv converts NVMM to system memory, which nothing here can: its stand-in ends the chain
(fakesink takes the NVMM caps) and starts a new one (fakesrc feeds the BGRx caps)."""


def _gstreamer_missing() -> str | None:
    if not Path(SYSTEM_PYTHON).exists() or shutil.which("gst-inspect-1.0") is None:
        return f"needs GStreamer and {SYSTEM_PYTHON} (scripts/test.sh installs them)"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
        capture_output=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    if probe.returncode != 0:
        return "needs python3-gi and gir1.2-gst-rtsp-server-1.0 (scripts/test.sh installs them)"
    return None


@pytest.fixture(scope="module")
def gstreamer() -> None:
    reason = _gstreamer_missing()
    if reason:
        pytest.skip(reason)


def gst_parse(pipeline: str) -> list[dict[str, Any]]:
    """Every element gst_parse_launch makes of the pipeline, with its readable properties."""
    done = subprocess.run(
        [SYSTEM_PYTHON, str(CHECK_SCRIPT), "parse"],
        input=pipeline,
        capture_output=True,
        text=True,
        check=True,
        timeout=RUN_TIMEOUT_S,
    )
    result = json.loads(done.stdout)
    assert result["error"] is None, result["error"]
    elements: list[dict[str, Any]] = result["elements"]
    return elements


def by_factory(elements: list[dict[str, Any]], factory: str) -> dict[str, Any]:
    matching = [element["properties"] for element in elements if element["factory"] == factory]
    assert len(matching) == 1, [element["factory"] for element in elements]
    return matching[0]


def rtsp_settings(uri: str, **keys: Any) -> SourceSettings:
    return SourceSettings(kind="rtsp", uri=uri, **keys)


def credentials_url(host_port: str, user: str = USER, password: str = PASSWORD) -> str:
    return f"rtsp://{quote(user, safe='')}:{quote(password, safe='')}@{host_port}/live"


# --- strings ------------------------------------------------------------------------------


def test_csi_pipeline_with_every_key() -> None:
    settings = SourceSettings(
        kind="csi", sensor_id=1, sensor_mode=2, width=1920, height=1080, fps=30, flip=2
    )

    assert csi_pipeline(settings) == (
        "nvarguscamerasrc sensor-id=1 sensor-mode=2 ! "
        "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12 ! "
        "nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! " + TAIL
    )


def test_csi_pipeline_without_size_leaves_the_mode_to_argus() -> None:
    assert csi_pipeline(SourceSettings(kind="csi")) == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),format=NV12 ! "
        "nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! " + TAIL
    )


@pytest.mark.parametrize(
    ("fps", "fraction"), [(30, "30/1"), (29.97, "2997/100"), (30000 / 1001, "30000/1001")]
)
def test_framerate_is_a_caps_fraction(fps: float, fraction: str) -> None:
    assert framerate(fps) == fraction


def test_rtsp_avdec_h264_moves_credentials_out_of_the_location() -> None:
    pipeline = rtsp_pipeline(rtsp_settings("rtsp://admin:s3cret@192.168.1.20:554/stream1"))

    assert pipeline == (
        'rtspsrc location="rtsp://192.168.1.20:554/stream1" latency=200 protocols=tcp '
        'tcp-timeout=10000000 user-id="admin" user-pw="s3cret" ! '
        "rtph264depay ! h264parse ! avdec_h264 ! " + TAIL
    )


def test_rtsp_nvv4l2decoder_h265_udp() -> None:
    settings = rtsp_settings(
        "rtsps://cam.local/live?channel=2",
        decoder="nvv4l2decoder",
        codec="h265",
        transport="udp",
        latency_ms=0,
        open_timeout_s=2.5,
    )

    assert rtsp_pipeline(settings) == (
        'rtspsrc location="rtsps://cam.local/live?channel=2" latency=0 protocols=udp '
        "tcp-timeout=2500000 ! "
        "rtph265depay ! h265parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! " + TAIL
    )


def test_split_credentials_percent_decodes_and_keeps_ipv6_hosts() -> None:
    assert split_credentials(credentials_url("[fe80::1]:8554")) == (
        "rtsp://[fe80::1]:8554/live",
        USER,
        PASSWORD,
    )
    assert split_credentials("rtsp://cam/x") == ("rtsp://cam/x", None, None)


@pytest.mark.parametrize("uri", ["rtsp:///nohost", "rtsp://u:secret@cam:99999/x"])
def test_unusable_rtsp_url_is_a_source_error_without_the_password(uri: str) -> None:
    with pytest.raises(SourceError, match=r"source\.uri") as caught:
        rtsp_pipeline(rtsp_settings(uri))
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("pipeline", "redacted"),
    [
        (
            'rtspsrc location="rtsp://h/x" user-id="u" user-pw="a\\"b c" ! fakesink',
            'rtspsrc location="rtsp://h/x" user-id="u" user-pw="***" ! fakesink',
        ),
        ("rtspsrc user-pw=plain location=rtsp://h/x ! fakesink", None),
        (
            "rtspsrc location=rtsp://u:secret@h:554/x ! fakesink",
            "rtspsrc location=rtsp://u:***@h:554/x ! fakesink",
        ),
        (
            'uridecodebin uri="rtsp://u:secret@h/x" ! appsink',
            'uridecodebin uri="rtsp://u:***@h/x" ! appsink',
        ),
    ],
)
def test_redact_pipeline_hides_every_password(pipeline: str, redacted: str | None) -> None:
    hidden = redact_pipeline(pipeline)

    assert "secret" not in hidden and "plain" not in hidden and 'a\\"b' not in hidden
    if redacted is not None:
        assert hidden == redacted
    else:
        assert hidden == "rtspsrc user-pw=*** location=rtsp://h/x ! fakesink"


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ({"kind": "csi", "flip": 8}, "source.flip"),
        ({"kind": "csi", "flip": -1}, "source.flip"),
        ({"kind": "csi", "sensor_id": -1}, "source.sensor_id"),
        ({"kind": "csi", "sensor_mode": -2}, "source.sensor_mode"),
        ({"kind": "csi", "sensorid": 0}, "source.sensorid"),
        ({"kind": "rtsp", "uri": "rtsp://cam/x", "decoder": "nvdec"}, "source.decoder"),
        ({"kind": "rtsp", "uri": "rtsp://cam/x", "codec": "vp8"}, "source.codec"),
        ({"kind": "rtsp", "uri": "rtsp://cam/x", "latency_ms": -5}, "source.latency_ms"),
        ({"kind": "rtsp", "uri": "rtsp://cam/x", "transport": "http"}, "source.transport"),
        ({"kind": "rtsp", "uri": "rtsp://cam/x", "latency": 100}, "source.latency"),
    ],
)
def test_bad_preset_keys_name_the_key(source: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{key}:")):
        settings_from_mapping({"source": source}, "test.yaml")


def test_flip_error_lists_the_flip_methods() -> None:
    with pytest.raises(ConfigError, match="2 rotate 180 degrees"):
        settings_from_mapping({"source": {"kind": "csi", "flip": 9}}, "test.yaml")


def test_rtsp_kind_needs_an_rtsp_url_and_never_echoes_it() -> None:
    with pytest.raises(
        ConfigError, match=r"source\.uri to be an rtsp:// or rtsps:// URL"
    ) as caught:
        settings_from_mapping(
            {"source": {"kind": "rtsp", "uri": "http://u:secret@cam/x"}}, "test.yaml"
        )
    assert "secret" not in str(caught.value)


# --- factory ------------------------------------------------------------------------------


def test_factory_maps_csi_and_rtsp_to_gstreamer_sources_with_redacted_descriptions() -> None:
    csi = SourceSettings(kind="csi", width=1280, height=720, fps=60, flip=2)
    rtsp = rtsp_settings("rtsp://admin:s3cret@10.0.0.2/live")

    csi_source = create_source(csi)
    rtsp_source = create_source(rtsp)

    assert isinstance(csi_source, GStreamerSource)
    assert isinstance(rtsp_source, GStreamerSource)
    assert csi_source.pipeline == csi_pipeline(csi)
    assert rtsp_source.pipeline == rtsp_pipeline(rtsp)
    assert ends_in_appsink(csi_source.pipeline) and ends_in_appsink(rtsp_source.pipeline)
    assert rtsp_source.pipeline.endswith(APPSINK)
    assert "s3cret" not in rtsp_source.description
    assert 'user-pw="***"' in rtsp_source.description
    # Live sources: never paced to a playback rate.
    assert playback_fps(csi) is None and playback_fps(rtsp) is None
    assert resolve_kind(rtsp) == "rtsp"


# --- real GStreamer -----------------------------------------------------------------------


@pytest.mark.usefixtures("gstreamer")
@pytest.mark.parametrize(
    ("codec", "depay", "parse", "decoder"),
    [
        ("h264", "rtph264depay", "h264parse", "avdec_h264"),
        ("h265", "rtph265depay", "h265parse", "avdec_h265"),
    ],
)
def test_gstreamer_parses_the_avdec_pipeline_and_reads_every_property_back(
    codec: str, depay: str, parse: str, decoder: str
) -> None:
    settings = rtsp_settings(credentials_url("10.0.0.2:8554"), codec=codec, latency_ms=150)

    elements = gst_parse(rtsp_pipeline(settings))

    factories = {element["factory"] for element in elements}
    assert {"rtspsrc", depay, parse, decoder, "videoconvert", "capsfilter", "appsink"} <= factories
    source = by_factory(elements, "rtspsrc")
    assert source["location"] == "rtsp://10.0.0.2:8554/live"
    assert (source["user-id"], source["user-pw"]) == (USER, PASSWORD)
    assert source["latency"] == 150
    # GFlags nicks include the zero flag (`unknown`); tcp alone is set.
    assert set(source["protocols"].split("+")) - {"unknown"} == {"tcp"}
    sink = by_factory(elements, "appsink")
    assert (sink["drop"], sink["max-buffers"], sink["sync"]) == (True, 1, False)
    assert by_factory(elements, "capsfilter")["caps"] == "video/x-raw, format=(string)BGR"


@pytest.mark.usefixtures("gstreamer")
@pytest.mark.parametrize(
    "settings",
    [
        SourceSettings(kind="csi", sensor_mode=3, width=1920, height=1080, fps=29.97, flip=7),
        rtsp_settings("rtsp://cam/x", decoder="nvv4l2decoder", transport="udp"),
    ],
    ids=["csi", "rtsp-nvv4l2decoder"],
)
def test_nvidia_pipelines_parse_with_standins_for_the_jetson_elements(
    settings: SourceSettings,
) -> None:
    pipeline = create_source(settings)
    assert isinstance(pipeline, GStreamerSource)
    text = pipeline.pipeline
    for jetson_element, standin in NVIDIA_STANDINS.items():
        text = re.sub(jetson_element, standin, text)

    caps = [
        element["properties"]["caps"]
        for element in gst_parse(text)
        if element["factory"] == "capsfilter"
    ]

    assert "video/x-raw, format=(string)BGRx" in caps
    assert "video/x-raw, format=(string)BGR" in caps
    if settings.kind == "csi":
        assert (
            "video/x-raw(memory:NVMM), width=(int)1920, height=(int)1080, "
            "framerate=(fraction)2997/100, format=(string)NV12"
        ) in caps


@pytest.fixture
def rtsp_server_with_auth(rtsp_server_factory: Callable[..., RtspServer]) -> RtspServer:
    """The RTSP server (H.264, 320x240, 127.0.0.1) behind basic authentication (USER, PASSWORD)."""
    # `--option=value`: a password starting with a dash would otherwise read as an option.
    return rtsp_server_factory(f"--user={USER}", f"--password={PASSWORD}")


def play_once(pipeline: str) -> dict[str, Any]:
    """Play the pipeline under Debian's Python; its first frame's caps or the error."""
    done = subprocess.run(
        [SYSTEM_PYTHON, str(CHECK_SCRIPT), "play"],
        input=pipeline,
        capture_output=True,
        text=True,
        check=True,
        timeout=RUN_TIMEOUT_S,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_avdec_pipeline_plays_a_password_protected_rtsp_stream(
    rtsp_server_with_auth: RtspServer,
) -> None:
    settings = rtsp_settings(credentials_url(f"127.0.0.1:{rtsp_server_with_auth.port}"))

    result = play_once(rtsp_pipeline(settings))

    assert result["error"] is None
    assert result["caps"].startswith("video/x-raw, width=(int)320, height=(int)240")
    assert "format=(string)BGR" in result["caps"]


def test_a_wrong_password_is_refused_by_the_same_server(
    rtsp_server_with_auth: RtspServer,
) -> None:
    wrong = credentials_url(f"127.0.0.1:{rtsp_server_with_auth.port}", password=PASSWORD + "x")

    result = play_once(rtsp_pipeline(rtsp_settings(wrong)))

    assert result["caps"] is None
    assert result["error"] == "Unauthorized"


# Run under Debian's Python, whose OpenCV has GStreamer: the source siamedge builds for kind rtsp
# opens the pipeline and reads a frame.
READ_THROUGH_OPENCV = """
import json, sys
sys.path.insert(0, sys.argv[1])
try:
    from siamedge.sources.gstreamer import GStreamerSource, gstreamer_available
except ImportError as exc:
    print(json.dumps({"skip": f"Debian's Python cannot import siamedge.sources: {exc}"}))
    sys.exit(0)
if not gstreamer_available():
    print(json.dumps({"skip": "Debian's OpenCV (python3-opencv) has no GStreamer here"}))
    sys.exit(0)
source = GStreamerSource(sys.argv[2], description="rtsp test")
source.open()
frame = source.read()
source.close()
print(json.dumps({"shape": list(frame.image.shape), "index": frame.index}))
"""


def test_the_rtsp_source_reads_frames_through_opencvs_gstreamer_backend(
    rtsp_server_with_auth: RtspServer,
) -> None:
    url = credentials_url(f"127.0.0.1:{rtsp_server_with_auth.port}")
    source = create_source(rtsp_settings(url))
    assert isinstance(source, GStreamerSource)

    result = run_under_system_python(READ_THROUGH_OPENCV, source.pipeline)
    assert result == {"shape": [240, 320, 3], "index": 0}


def run_under_system_python(script: str, pipeline: str) -> dict[str, Any]:
    """The JSON `script` prints last, run by Debian's Python with the repository and the
    pipeline as arguments (skips the test where that OpenCV has no GStreamer)."""
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", script, str(REPO_ROOT), pipeline],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    return result


OPEN_AND_TIME = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from siamedge.errors import SourceError
from siamedge.sources.gstreamer import GStreamerSource, gstreamer_available
if not gstreamer_available():
    print(json.dumps({"skip": "Debian's OpenCV (python3-opencv) has no GStreamer here"}))
    sys.exit(0)
started = time.monotonic()
try:
    GStreamerSource(sys.argv[2], description="rtsp test").open()
    error = None
except SourceError as exc:
    error = str(exc)
print(json.dumps({"error": error, "took_s": time.monotonic() - started}))
"""


def test_an_rtsp_camera_that_never_answers_fails_at_open_timeout_s() -> None:
    # rtspsrc's own tcp-timeout (20 s) held every open of a camera that accepts the connection
    # and says nothing, whatever source.open_timeout_s said.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/stream1"
        source = create_source(rtsp_settings(url, open_timeout_s=1.0))
        assert isinstance(source, GStreamerSource)
        result = run_under_system_python(OPEN_AND_TIME, source.pipeline)
    assert result["error"] is not None and "cannot open it" in result["error"]
    assert result["took_s"] < 10.0  # rtspsrc's default would take 20 s
