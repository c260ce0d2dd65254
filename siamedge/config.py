"""YAML configuration -> validated, frozen settings. The ONLY place defaults live.

Unknown keys, wrong types and bad values raise ConfigError naming the key and the file;
this module never opens devices, models or sockets.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from siamedge.errors import ConfigError
from siamedge.messaging.topics import Topics

log = logging.getLogger(__name__)


class _Section(BaseModel):
    # No NaN or infinity anywhere: an infinite timeout or rate passes `gt=0` and then raises
    # OverflowError in the thread that waits on it. Keys such as service.model_retry_s are
    # ours: pydantic before 2.10 warned on every start that they lie in its `model_` namespace.
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, protected_namespaces=()
    )


MAX_DURATION_S = 86_400.0
"""The longest delay, interval or timeout any setting takes: a day. Each one ends up as a wait in
some thread, and Python refuses a wait longer than threading.TIMEOUT_MAX (about 292 years) with
OverflowError in that thread, where it dies unseen; a day is past any sensible value and far
below every limit, also summed or in milliseconds (OpenCV's C int milliseconds hold 24.8 days)."""
MIN_RATE_PER_S = 1 / MAX_DURATION_S
"""The lowest rate (fps, replies a second) any setting takes: once a day, so that the period
between two stays within MAX_DURATION_S."""
MQTT_MAX_KEEPALIVE_S = 65535
"""MQTT's limit: CONNECT carries the keep alive as a 16-bit number of seconds."""
MQTT_MAX_STRING_BYTES = 65535
"""MQTT's limit: a UTF-8 string goes out with a 16-bit length (MQTT 5 spec 1.5.4)."""
SHOWN_CHARS = 40
"""A longer string is cut to its start in an error message."""


def _at_most(limit: float, rule: str) -> AfterValidator:
    """A check (after the type's own) that a number is at most `limit`; `rule` says it."""

    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"must be at most {rule}, got {value!r}")
        return value

    return AfterValidator(check)


def _at_least(limit: float, rule: str) -> AfterValidator:
    """A check (after the type's own) that a number is at least `limit`; `rule` says it."""

    def check(value: float) -> float:
        if value < limit:
            raise ValueError(f"must be at least {rule}, got {value!r}")
        return value

    return AfterValidator(check)


Seconds = Annotated[float, _at_most(MAX_DURATION_S, f"{MAX_DURATION_S:.0f} s (a day)")]
"""A delay, interval or timeout: at most MAX_DURATION_S."""
Milliseconds = Annotated[
    int, _at_most(MAX_DURATION_S * 1000, f"{MAX_DURATION_S * 1000:.0f} ms (a day)")
]
"""A duration in milliseconds: at most MAX_DURATION_S."""
Rate = Annotated[
    float, Field(gt=0), _at_least(MIN_RATE_PER_S, f"1/{MAX_DURATION_S:.0f} a second (once a day)")
]
"""Events a second: above 0 (pydantic's own message), and at least MIN_RATE_PER_S."""


def _shown(value: str) -> str:
    """A string for an error message: its repr, cut to its start when long."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"


def _not_a_host(value: str) -> bool:
    """Empty, or holding spaces or control characters."""
    return not value or any(char.isspace() or not char.isprintable() for char in value)


def _listen_host(value: str) -> str:
    """A web or metrics host: a name or address (an empty one would listen on every interface
    without saying so, and the logged URL would have no host)."""
    if _not_a_host(value):
        raise ValueError(
            "must be a host name or address to listen on (0.0.0.0 or :: for every interface), "
            f"got {_shown(value)}"
        )
    return value


ListenHost = Annotated[str, AfterValidator(_listen_host)]
"""The address a web or metrics server listens on."""


def _require_backoff_order(section: BaseModel, name: str) -> None:
    """Raise when a section's `<name>_max_s` is below its `<name>_min_s`."""
    low, high = getattr(section, f"{name}_min_s"), getattr(section, f"{name}_max_s")
    if high < low:
        raise ValueError(f"{name}_max_s must be >= {name}_min_s, got {high:g} < {low:g}")


def _not_for_mqtt(code: int) -> str | None:
    """What the code point is when an MQTT string may not hold it, else None. Non-characters:
    U+FDD0-U+FDEF and the last two of every plane (U+FFFE, U+FFFF, U+1FFFE, ...)."""
    if code == 0:
        return "NUL"
    if code <= 0x1F or 0x7F <= code <= 0x9F:
        return "a control character"
    if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
        return "a non-character"
    return None


def _mqtt_string_problem(value: str) -> str | None:
    """Why `value` cannot go out as an MQTT string (client id, user name, topic), or None.

    MQTT 5 (spec 1.5.4) forbids U+0000 (surrogates, not UTF-8, pydantic refuses in any str)
    and lets the receiver take control characters and non-characters for a malformed packet:
    mosquitto does, and drops the connection, again at every reconnect. Too long, paho's
    network thread dies.
    """
    for index, char in enumerate(value):
        if (kind := _not_for_mqtt(ord(char))) is None:
            continue
        return (
            f"{_shown(value)} holds {kind}, U+{ord(char):04X} (character {index + 1}): "
            "MQTT strings may not hold NUL, control characters or non-characters "
            "(MQTT 5 spec 1.5.4; the broker drops the connection)"
        )
    size = len(value.encode("utf-8"))
    if size > MQTT_MAX_STRING_BYTES:
        return (
            f"{_shown(value)} is {size} bytes in UTF-8, over the {MQTT_MAX_STRING_BYTES} an MQTT "
            "string holds (MQTT 5 spec 1.5.4)"
        )
    return None


ProviderName = Literal["tensorrt", "cuda", "cpu"]
ConvAlgoSearch = Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"]
ArenaExtendStrategy = Literal["kNextPowerOfTwo", "kSameAsRequested"]
OrtLogLevel = Literal["error", "warning", "info", "verbose"]


class ModelSettings(_Section):
    """Which model to run and how onnxruntime runs it."""

    path: str = "builtin"
    """An ONNX file, or `builtin` for the embedded builtin-ncc model."""
    providers: Literal["auto"] | list[ProviderName] = "auto"
    """`auto`: TensorRT > CUDA > CPU among the available ones; or an explicit ordered list."""
    cache_dir: str | None = None
    """TensorRT engine and timing cache folder (engines in a folder per model content, the
    six most recently used kept; see engine_cache).

    Default: $STATE_DIRECTORY/trt under systemd, else ~/.cache/siamedge/trt."""
    trt_fp16: bool = False
    """TensorRT may build fp16 kernels: on Jetson about twice as fast, but the results move
    (over the tennis free run on an H200 the fp16 export drifted 0.22-1.21 px centre /
    0.93-1.25 px size from the original tracker, two runs); off keeps parity. DLA needs it on."""
    trt_tf32: bool = False
    """Let TensorRT (and cuDNN/cuBLAS under it) use TF32 for float32 layers. TensorRT has no
    provider option for it: false sets NVIDIA_TF32_OVERRIDE=0 for the process when TensorRT is
    chosen (unless the environment already sets it), which keeps fp32 parity."""
    trt_workspace_mb: int = Field(default=1024, ge=0)
    """The most GPU memory TensorRT may use as scratch space while it builds the engine; 0
    leaves it to onnxruntime (1 GiB before 1.19, since then TensorRT's own: the device's memory,
    too much for a Jetson, whose GPU shares the board's memory)."""
    trt_builder_optimization_level: int | None = Field(default=None, ge=0, le=5)
    """TensorRT builder optimisation level 0-5: higher builds longer and may run faster.
    None keeps TensorRT's default (3)."""
    trt_dla_enable: bool = False
    """Jetson (Xavier, Orin): run what the Deep Learning Accelerator supports on it, the rest
    on the GPU. DLA runs fp16 and int8 layers only, so keep trt_fp16 on with it."""
    trt_dla_core: int = Field(default=0, ge=0)
    """Which DLA core (0 or 1 on AGX Orin, Orin NX 16 GB and Xavier; Orin Nano has no DLA, and
    onnxruntime then builds for the GPU); used with trt_dla_enable."""
    trt_cuda_graph: bool = False
    """TensorRT replays each engine's launches as one CUDA graph (fewer launches per step);
    onnxruntime needs the whole model in TensorRT and fixed input/output buffers for it."""
    cuda_device_id: int = Field(default=0, ge=0)
    """The GPU that the TensorRT and CUDA providers use."""
    cuda_tf32: bool = False
    """CUDA provider: allow TF32 tensor-core maths for float32 convolutions and matrix products
    (Ampere and newer GPUs). Faster, but less exact: on an H200 the free run over the tennis
    reference drifted 0.64 px (centre) and 3.35 px (size) from the original tracker with TF32,
    0.0003 / 0.0023-0.0025 px without (two runs). Off keeps parity. A float16 network (metadata
    siamedge.precision, `siamedge export --fp16`) always runs with it on: it has no float32
    convolution, and off onnxruntime would withhold cuDNN's tensor-core engines from its
    float16 ones."""
    cuda_conv_algo_search: ConvAlgoSearch = "EXHAUSTIVE"
    """How the CUDA provider picks cuDNN convolution algorithms. EXHAUSTIVE (onnxruntime's own
    default) times every algorithm on the first run of each input shape (each batch size) and
    keeps the fastest; HEURISTIC takes cuDNN's guess (no timing runs, quicker first steps);
    DEFAULT uses one fixed algorithm (from onnxruntime 1.20 on, cuDNN's fallback engines:
    "running in Fallback mode. May be extremely slow."). With cuda_tf32 off every mode computes
    float32 convolutions without TF32, so the choice changes speed, not results."""
    cuda_prefer_nhwc: bool = False
    """CUDA provider: run convolutions in NHWC, the layout tensor cores read (onnxruntime's
    `prefer_nhwc`; layout transposes are added where the graph enters and leaves NHWC). Meant
    for fp16 models: on an H200 the fp16 export's NCHW convolutions found no cuDNN execution
    plan and ran in fallback mode (4 targets 2.1x one, fp32 1.7x). Off: onnxruntime's default;
    compare both with `siamedge check` on the board before keeping it."""
    cuda_fuse_conv_bias: bool = False
    """CUDA provider: cuDNN adds each convolution's bias in the convolution's own kernel
    (onnxruntime's `fuse_conv_bias`) instead of a second launch. It concerns the convolutions
    onnxruntime has not fused with their ReLU (its fused ones take the bias already; float16
    ones are not fused in releases whose fusion is float32-only); in NCHW a fused bias costs a
    memset instead, so it pays with cuda_prefer_nhwc. onnxruntime plans a fused convolution
    that cuDNN cannot build again unfused, with TF32 allowed, so compare with `siamedge check`
    before keeping it on a float32 model."""
    cuda_mem_limit_mb: int | None = Field(default=None, gt=0)
    """Cap on the CUDA provider's memory arena; None: no cap (the GPU's memory)."""
    cuda_arena_extend_strategy: ArenaExtendStrategy = "kNextPowerOfTwo"
    """How the CUDA memory arena grows: kNextPowerOfTwo (onnxruntime's default, few large
    allocations) or kSameAsRequested (exactly what is asked; tighter, more allocations)."""
    cuda_copy_in_default_stream: bool = True
    """CUDA provider copies between host and GPU on the default stream (onnxruntime's
    recommended setting; false may be faster but onnxruntime documents races with it)."""
    cuda_graph: bool = False
    """CUDA provider: capture the model's launches once and replay them as a CUDA graph (far
    fewer launches per step). onnxruntime allows it only for models without control flow whose
    every node runs on CUDA, fed through fixed buffers (I/O binding): the split layout; the
    engine decides where it applies. One graph per batch size (1, 2, 4, ... up to the most
    targets; onnxruntime 1.18 and later), so k targets replay the smallest that holds them. A
    model onnxruntime refuses to capture runs on CUDA without graphs (one warning)."""
    ort_log_level: OrtLogLevel = "warning"
    """Severity from which onnxruntime's own log lines are passed on (to the
    `siamedge.onnxruntime` logger: verbose lines at DEBUG, info at INFO, and so on)."""
    intra_op_threads: int | None = Field(default=None, ge=1)
    """CPU provider threads; None lets onnxruntime choose (one per core)."""
    intra_op_spinning: bool = False
    """Let idle CPU-provider threads spin: lower latency on an otherwise idle machine, but they
    take the cores the capture, MQTT and web threads need."""
    warmup: bool = True

    @model_validator(mode="after")
    def _dla_needs_fp16(self) -> ModelSettings:
        if self.trt_dla_enable and not self.trt_fp16:
            raise ValueError(
                "trt_dla_enable needs trt_fp16: true (the DLA runs fp16 and int8 only)"
            )
        return self

    @field_validator("providers", mode="before")
    @classmethod
    def _provider_names(cls, value: object) -> object:
        # Checked here: pydantic would word a mistake in terms of the union's two types.
        names = get_args(ProviderName)
        if value == "auto" or (isinstance(value, list) and all(v in names for v in value)):
            return value
        raise ValueError(
            f"must be auto or a list of {', '.join(names)} in order of preference, got {value!r}"
        )


DEFAULT_SEG_THR = 0.35
"""The mask threshold of a model that records none (SiamMask's VOT configuration)."""
DEFAULT_LOST_SCORE = 0.3
"""The lost-score threshold of a model that records none."""


MAX_TRACKS = 64
"""The most targets one service tracks (tracker.max_tracks), and so one batched call carries."""


class TrackerSettings(_Section):
    """Per-target tracking behaviour."""

    max_tracks: int = Field(default=4, ge=1, le=MAX_TRACKS)
    seg_thr: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Mask threshold. None: the one the model's metadata records, else DEFAULT_SEG_THR; a
    number replaces the model's (its meaning depends on the model)."""
    min_contour_area: float = Field(default=100.0, ge=0.0)
    """Contours up to this area (px) do not define the rotated box (SiamMask uses 100)."""
    lost_score: float | None = Field(default=None, ge=0.0, le=1.0)
    """A target whose score stays below this for `lost_frames` frames is reported lost. None:
    the model's metadata `lost_score`, else DEFAULT_LOST_SCORE; a number replaces the model's."""
    lost_frames: int = Field(default=10, ge=1)


SourceKind = Literal[
    "auto", "camera", "gstreamer", "stream", "mjpeg", "file", "images", "synthetic", "csi", "rtsp"
]
RtspDecoder = Literal["avdec", "nvv4l2decoder"]
RtspCodec = Literal["h264", "h265"]
RtspTransport = Literal["tcp", "udp"]
FLIP_METHODS = (
    "0 none, 1 rotate 90 degrees counter-clockwise, 2 rotate 180 degrees, 3 rotate 90 degrees "
    "clockwise, 4 horizontal flip, 5 upper-right diagonal flip, 6 vertical flip, "
    "7 upper-left diagonal flip"
)
"""nvvidconv's flip-method values (NVIDIA's Accelerated GStreamer guide)."""
MAX_FLIP_METHOD = 7
RTSP_SCHEMES = ("rtsp", "rtsps")
"""URL schemes `kind: rtsp` takes (rtsps: RTSP over TLS)."""

FFMPEG_CA_HINT = (
    "give it the CA with OPENCV_FFMPEG_CAPTURE_OPTIONS=ca_file;PATH|tls_verify;1 in the service "
    "environment"
)
"""How FFmpeg, which does its own TLS, is given a camera's CA (source.tls is not FFmpeg's)."""

KIND_SPECIFIC_KEYS = {
    "csi": ("sensor_id", "sensor_mode", "flip"),
    "rtsp": ("decoder", "codec", "latency_ms", "transport"),
}
"""source keys that only one kind reads: set to anything but the default under another kind,
they would be ignored silently (e.g. decoder: nvv4l2decoder under kind auto decodes in software)."""


PASSWORD_KINDS = ("auto", "stream", "mjpeg", "rtsp")
"""Kinds whose uri is a URL that can carry source.password_file's password."""

SYNTHETIC_MAX_WIDTH = 7680
SYNTHETIC_MAX_HEIGHT = 4320
"""The largest synthetic clip, 8K UHD. Rendering its background takes some 25 bytes a pixel
(about 1 GB at 8K), at every open: a larger size, a typo like 100000, would fail each reopen
for want of memory, or bring the OOM killer, for ever instead of once at load."""


class SyntheticSettings(_Section):
    """The built-in synthetic clip (a textured object moving over a textured background)."""

    width: int = Field(default=1280, ge=64, le=SYNTHETIC_MAX_WIDTH)
    height: int = Field(default=720, ge=64, le=SYNTHETIC_MAX_HEIGHT)
    """Frame size in pixels, from 64 x 64 up to SYNTHETIC_MAX_WIDTH x SYNTHETIC_MAX_HEIGHT."""
    frames: int = Field(default=300, ge=2)
    seed: int = Field(default=0, ge=0)
    """The texture and the object's path; numpy's generators take any integer >= 0 (a
    negative one would fail at every open, not here)."""


class TlsSettings(_Section):
    """TLS towards a server: the broker (mqtt.tls) or an https camera (source.tls)."""

    ca_file: str | None = None
    """PEM file of the CA the server's certificate chains to (or of the certificate itself, for
    a server that signs its own); None: the system store."""
    cert_file: str | None = None
    """A client certificate, for a server that asks for one (with key_file, unencrypted)."""
    key_file: str | None = None
    insecure: bool = False
    """Skip the check that the certificate names the host connected to (mqtt.host, the
    camera URL's): for a self-signed certificate made for another address. The chain is still
    verified."""
    x509_strict: bool = False
    """Refuse certificates that break RFC 5280 (a CA without key usage, as mosquitto's TLS
    manual makes it; a certificate without its issuer's key id). Python 3.13's default; set
    either way on every Python, so that a broker that works on one works on all."""


class SourceSettings(_Section):
    """Where frames come from."""

    kind: SourceKind = "auto"
    """`auto` infers the kind from `uri`."""
    uri: str = "synthetic"
    """Camera index or /dev/videoN, GStreamer pipeline, rtsp://, http(s)://, a file, a folder."""
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    fps: Rate | None = None
    """Camera: requested rate. File, images, synthetic: playback rate (None: the file's own
    rate; images and synthetic 30). At least MIN_RATE_PER_S (a frame a day)."""
    fourcc: str | None = Field(default=None, min_length=4, max_length=4)
    loop: bool = True
    """Files, folders and synthetic clips start again at the end."""
    reopen_min_s: Seconds = Field(default=0.5, gt=0)
    """A failed or ended source is reopened after this delay, doubled on each further failure..."""
    reopen_max_s: Seconds = Field(default=30.0, gt=0)
    """...up to this delay; a source that then streams for 5 s (capture.STABLE_STREAM_S) starts
    again from reopen_min_s. Both at most a day, as are the two timeouts (MAX_DURATION_S)."""
    open_timeout_s: Seconds = Field(default=10.0, gt=0)
    """Streams: opening the URL takes longer than this -> the attempt failed (retried)."""
    read_timeout_s: Seconds = Field(default=5.0, gt=0)
    """Streams: no frame for this long -> the stream is lost (reopened). Any source: a read
    blocked this long is reported `stalled` on the status topic while it lasts."""
    synthetic: SyntheticSettings = SyntheticSettings()
    sensor_id: int = Field(default=0, ge=0, le=255)
    """csi: which camera nvarguscamerasrc opens (sensor-id; 0 and 1 on two-camera boards)."""
    sensor_mode: int | None = Field(default=None, ge=0, le=255)
    """csi: the sensor mode (sensor-mode); None: Argus picks the mode matching width, height
    and fps. `uri` is not used by csi."""
    flip: int = 0
    """csi: nvvidconv flip-method, 0-7 (2 turns a camera mounted upside down)."""
    decoder: RtspDecoder = "avdec"
    """rtsp: `nvv4l2decoder` (Jetson hardware decoder) or `avdec` (libav, software, anywhere)."""
    codec: RtspCodec = "h264"
    """rtsp: what the camera sends (rtph264depay/h264parse or rtph265depay/h265parse)."""
    latency_ms: Milliseconds = Field(default=200, ge=0)
    """rtsp: rtspsrc jitter buffer in ms (rtspsrc's own default of 2000 lags behind live), at
    most a day."""
    transport: RtspTransport = "tcp"
    """rtsp: `tcp` (interleaved in the RTSP connection: through NAT, no lost packets) or
    `udp` (lower latency on a clean LAN). width, height and fps are not used by rtsp."""
    tls: TlsSettings | None = None
    """https cameras that siamedge reads itself (kind mjpeg, or auto on an https:// URL): the
    camera's CA or self-signed certificate, a client certificate, `insecure` for a certificate
    that does not name the camera's address. None: the system store. FFmpeg (kind stream)
    does its own TLS (README)."""
    password_file: str | None = None
    """The camera's password, read from this file (one trailing newline dropped) into `uri`,
    which then names only the user (rtsp://admin@192.168.1.20/stream1): the configuration,
    which the service's dynamic user reads, stays free of it (hand the file over as a systemd
    credential, README)."""
    password_env: str | None = None
    """The same from an environment variable."""

    @field_validator("flip")
    @classmethod
    def _flip_method(cls, value: int) -> int:
        if not 0 <= value <= MAX_FLIP_METHOD:
            raise ValueError(f"must be 0-{MAX_FLIP_METHOD} (nvvidconv flip-method: {FLIP_METHODS})")
        return value

    def _uri_scheme(self) -> str:
        """The scheme of source.uri, lower case ("" for a device or a path)."""
        return self.uri.strip().partition("://")[0].lower()

    @model_validator(mode="after")
    def _tls_for_https(self) -> SourceSettings:
        if self.tls is None:
            return self
        if self._uri_scheme() != "https":
            raise ValueError("source.tls is set but source.uri is not an https:// URL")
        if self.kind not in ("auto", "mjpeg"):
            raise ValueError(
                f"source.tls applies to kind mjpeg or auto; kind {self.kind} is read by FFmpeg, "
                f"which does its own TLS: {FFMPEG_CA_HINT}"
            )
        return self

    @model_validator(mode="after")
    def _rtsp_url(self) -> SourceSettings:
        if self.kind == "rtsp" and self._uri_scheme() not in RTSP_SCHEMES:
            raise ValueError(
                "source.kind rtsp needs source.uri to be an rtsp:// or rtsps:// URL, e.g. "
                "rtsp://user:password@192.168.1.20:554/stream1"
            )
        return self

    @model_validator(mode="after")
    def _password_for_a_user(self) -> SourceSettings:
        if not (self.password_file or self.password_env):
            return self
        key = "source.password_file" if self.password_file else "source.password_env"
        if self.password_file and self.password_env:
            raise ValueError("set source.password_file or source.password_env, not both")
        try:
            parts = urlsplit(self.uri.strip())
            has_user = bool(parts.hostname) and parts.username is not None
        except ValueError:
            has_user = False
        if self.kind not in PASSWORD_KINDS or not has_user:
            raise ValueError(
                f"{key} needs source.uri to be a camera URL naming the user (kind "
                f"{', '.join(PASSWORD_KINDS)}), e.g. rtsp://admin@192.168.1.20:554/stream1"
            )
        if parts.password is not None:
            raise ValueError(f"{key} is set and source.uri holds a password too: leave it out")
        return self

    @model_validator(mode="after")
    def _keys_of_another_kind(self) -> SourceSettings:
        for kind, keys in KIND_SPECIFIC_KEYS.items():
            changed = [
                key for key in keys if getattr(self, key) != type(self).model_fields[key].default
            ]
            if changed and self.kind != kind:
                names = ", ".join(f"source.{key}" for key in changed)
                raise ValueError(
                    f"{names} set, but used by source.kind {kind} only (source.kind is "
                    f"{self.kind}): set source.kind: {kind}, or leave "
                    f"{'it' if len(changed) == 1 else 'them'} out"
                )
        return self

    @model_validator(mode="after")
    def _backoff_order(self) -> SourceSettings:
        _require_backoff_order(self, "reopen")
        return self


MaskEncoding = Literal["rle", "polygon", "png", "none"]
NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
"""Home Assistant discovery accepts these characters in a node id."""


class HomeAssistantSettings(_Section):
    """Home Assistant MQTT discovery: the service appears there as a device with sensors."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"
    """Home Assistant's discovery prefix (a setting of its MQTT integration)."""
    node_id: str | None = None
    """Names the device in the discovery topics; default: the MQTT client id with every
    character outside [A-Za-z0-9_-] replaced by `_`."""
    device_name: str | None = None
    """The device name shown in Home Assistant; default: the node id."""

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix_is_a_topic(cls, value: str) -> str:
        if not value or value.endswith("/") or any(char in value for char in "+#\0"):
            raise ValueError("must be a topic without '+', '#', NUL or a trailing '/'")
        if (problem := _mqtt_string_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("node_id")
    @classmethod
    def _node_id_chars(cls, value: str | None) -> str | None:
        if value is not None and not NODE_ID_PATTERN.fullmatch(value):
            raise ValueError("must be one or more of the characters A-Z a-z 0-9 _ -")
        return value


MAX_SESSION_EXPIRY_S = 0xFFFFFFFF - 1
"""MQTT 5 encodes the session expiry in 32 bits; 0xFFFFFFFF means never, which we refuse."""


_TOPIC_ROOM_BYTES = max(len(topic.encode("utf-8")) for topic in Topics.for_prefix().all())
"""What the longest topic adds to topic_prefix (`track/results`)."""


class MqttSettings(_Section):
    """Broker connection and topics."""

    host: str = "127.0.0.1"
    """The broker's host name or address (not empty, no spaces or control characters)."""
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = Field(default=None, min_length=1)
    """Default: siamedge-<hostname>. The broker keeps the session under this id, so it must be
    the same across restarts and unique per daemon on one broker. Like username and
    topic_prefix an MQTT string: at most 65535 bytes of UTF-8, no NUL, control characters or
    non-characters."""
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: Annotated[
        int,
        _at_most(
            MQTT_MAX_KEEPALIVE_S,
            f"{MQTT_MAX_KEEPALIVE_S} s (MQTT's limit: the keep alive is a 16-bit field)",
        ),
    ] = Field(default=30, ge=5)
    """A dead or half-open link to the broker is noticed within 1.5 x this (the client pings
    every keepalive_s / 2); the broker cuts a silent daemon after about 0.75 x this. At most
    MQTT_MAX_KEEPALIVE_S (`siamedge watch` gives it to the broker as it is)."""
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    tls: TlsSettings | None = None
    topic_prefix: str = ""
    """Prepended to every topic, e.g. `siamedge/cam-01/` for fleets."""
    results_qos: Literal[0, 1, 2] = 0
    reconnect_min_s: Seconds = Field(default=1.0, gt=0)
    reconnect_max_s: Seconds = Field(default=30.0, gt=0)
    status_interval_s: Seconds = Field(default=10.0, gt=0)
    """The status report goes out this often. It, the reconnect delays and command_max_age_s
    and command_clock_skew_s are at most a day (MAX_DURATION_S)."""
    mask_encoding: MaskEncoding = "rle"
    session_expiry_s: int = Field(default=300, ge=0, le=MAX_SESSION_EXPIRY_S)
    """How long the broker keeps our session (subscriptions and the QoS 1 commands published
    meanwhile) after the connection is gone: a reconnect or a systemd restart within it gets
    the commands. 0: a clean session on every connect (commands sent while away are lost).
    MQTT 3.1.1 has no expiry: any value above 0 means clean_session false, and the broker keeps
    the session until its own `persistent_client_expiration`."""
    command_queue_size: int = Field(default=64, ge=1, le=4096)
    """Commands waiting for the main loop; when full, the oldest is dropped (and answered)."""
    command_max_age_s: Seconds | None = Field(default=10.0, gt=0)
    """A command whose `sent_at` is older than this when the service takes it is rejected as
    stale (its box points at where the target was), and so is a start that waited this long for
    a frame to start on (counted from `sent_at`, or from its arrival without one). Longer than a
    reconnect or a systemd restart (RestartSec=5 plus loading the model); None: no limit."""
    command_clock_skew_s: Seconds = Field(default=2.0, ge=0)
    """How far a command's `sent_at` may lie in the future (the sender's clock runs ahead)."""
    error_replies_per_s: Rate = 50.0
    """Error replies on the errors topic per second (bursts up to as many); the ones over it are
    counted and reported in one summary message, so a flood cannot fill the outgoing queue.
    At least MIN_RATE_PER_S: a summary goes out within a day."""
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()

    @field_validator("host")
    @classmethod
    def _host_is_a_name(cls, value: str) -> str:
        # paho raises at connect for an empty one; a blank one is looked up for ever.
        if _not_a_host(value):
            raise ValueError(
                "must be the broker's host name or address, without spaces or control "
                f"characters, got {_shown(value)}"
            )
        if "/" in value or value.count(":") == 1:  # an IPv6 address has two or more
            raise ValueError(
                "must be the host alone, without a scheme (mqtt://), a path or a port (give "
                f"it in mqtt.port), got {_shown(value)}"
            )
        return value

    @field_validator("client_id", "username")
    @classmethod
    def _mqtt_string(cls, value: str | None) -> str | None:
        if value is not None and (problem := _mqtt_string_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_level(cls, value: str) -> str:
        if any(char in value for char in "+#\0"):
            raise ValueError("topic_prefix must not contain '+', '#' or NUL")
        if (problem := _mqtt_string_problem(value)) is not None:
            raise ValueError(problem)
        if value and not value.endswith("/"):
            value += "/"
        size = len(value.encode("utf-8"))
        if size + _TOPIC_ROOM_BYTES > MQTT_MAX_STRING_BYTES:
            raise ValueError(
                f"{_shown(value)} is {size} bytes in UTF-8: with the {_TOPIC_ROOM_BYTES} of the "
                f"longest topic under it, over the {MQTT_MAX_STRING_BYTES} an MQTT topic holds"
            )
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttSettings:
        # paho would wait the longer first delay and then the shorter one for ever.
        _require_backoff_order(self, "reconnect")
        return self

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttSettings:
        if self.password_file and self.password_env:
            raise ValueError("set password_file or password_env, not both")
        for key in ("password_file", "password_env"):
            if getattr(self, key) and self.username is None:
                raise ValueError(f"mqtt.{key} needs mqtt.username (MQTT sends no bare password)")
        return self


ANY_HOST = "*"
"""In web.allowed_hosts: answer to any Host header (turns the DNS-rebinding check off)."""
_ALLOWED_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?")


class WebSettings(_Section):
    """The optional live web view and HTTP API inside the daemon."""

    enabled: bool = False
    host: ListenHost = "127.0.0.1"
    """Listen address; 0.0.0.0 exposes the view to the network (set a token then)."""
    port: int = Field(default=8080, ge=1, le=65535)
    token_file: str | None = None
    """A file holding the bearer token; when a token is set, every request needs it."""
    token_env: str | None = None
    """Or the name of an environment variable holding it."""
    preview_width: int = Field(default=640, ge=64, le=3840)
    """Width of the MJPEG preview in pixels (height keeps the frame's aspect ratio)."""
    preview_fps: Rate = Field(default=10.0, le=60)
    jpeg_quality: int = Field(default=80, ge=10, le=100)
    max_connections: int = Field(default=32, ge=2, le=1024)
    """Open HTTP connections at once; more are answered 503 at once and closed."""
    max_streams: int = Field(default=24, ge=1, le=1024)
    """MJPEG viewers at once (within max_connections); more get 503."""
    request_timeout_s: Seconds = Field(default=10.0, gt=0)
    """A request (line, headers, body) must arrive within this long of the connection, and a
    stream viewer that reads nothing for this long is dropped."""
    command_timeout_s: Seconds = Field(default=5.0, gt=0)
    """How long a command waits for the service (a frame) before the answer is 503. Both
    timeouts at most a day (MAX_DURATION_S); preview_fps at least MIN_RATE_PER_S."""
    allowed_hosts: list[str] = []
    """Host names (`name` for any port, `name:port`) browsers may use to reach the view, e.g.
    `siamedge.example.com` behind a reverse proxy; others get 421 (DNS rebinding). Always
    allowed besides: on a loopback host, localhost and loopback addresses with the view's port;
    on any other host, every address literal and this machine's name (and `name.local`). `*`
    turns the check off."""

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != ANY_HOST and not _ALLOWED_HOST.fullmatch(entry):
                raise ValueError(
                    f"{entry!r} is not a host name or address with an optional :port "
                    "(no scheme, no path), nor '*'"
                )
        return value

    @model_validator(mode="after")
    def _limits(self) -> WebSettings:
        if self.token_file and self.token_env:
            raise ValueError("set token_file or token_env, not both")
        if self.max_streams >= self.max_connections:
            raise ValueError(
                "max_streams must be below max_connections (the page needs a few "
                "connections for its API calls)"
            )
        return self


class MetricsSettings(_Section):
    """The optional Prometheus endpoint (`GET /metrics`, extra `metrics`), on its own port."""

    enabled: bool = False
    host: ListenHost = "127.0.0.1"
    """Listen address; 0.0.0.0 lets a Prometheus server on another machine scrape it."""
    port: int = Field(default=9108, ge=1, le=65535)


class ServiceSettings(_Section):
    """The daemon's own behaviour."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    watchdog_stall_s: Seconds = Field(default=10.0, gt=0)
    """No processed frame for this long stops the watchdog pings (systemd restarts us)."""
    model_retry_s: Seconds = Field(default=10.0, gt=0)
    """A model that failed to load is looked at this often, and loaded again once its file
    changed (the service keeps running meanwhile and rejects start commands with the reason).
    Both at most a day (MAX_DURATION_S)."""


class Settings(_Section):
    """The whole configuration file."""

    model: ModelSettings = ModelSettings()
    tracker: TrackerSettings = TrackerSettings()
    source: SourceSettings = SourceSettings()
    mqtt: MqttSettings = MqttSettings()
    service: ServiceSettings = ServiceSettings()
    web: WebSettings = WebSettings()
    metrics: MetricsSettings = MetricsSettings()


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<top level>"


def settings_from_mapping(data: Any, origin: str) -> Settings:
    """Validate a parsed mapping; origin names the file in error messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_location(error['loc'])}: {error['msg']}" for error in exc.errors())
        raise ConfigError(f"{origin}: {problems}") from None


def load_settings(path: Path | None) -> Settings:
    """Read and validate a YAML file; None gives the embedded defaults."""
    if path is None:
        return Settings()
    return settings_from_text(read_config_text(path), str(path))


def read_config_text(path: Path) -> str:
    """A configuration file's text; ConfigError naming the file when unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def settings_from_text(text: str, origin: str) -> Settings:
    """Validate YAML text; ConfigError naming `origin` (a file) and the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not valid YAML: nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    if data is None:  # empty, or only comments: a truncated file would look just like it
        log.warning("%s holds no settings: running on the defaults", origin)
    return settings_from_mapping(data, origin)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: where in the file and what (PyYAML's own text spans several lines and names
    the text it was given, not the file)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    what = "; ".join(
        " ".join(part.split()) for part in (exc.context, exc.problem) if part is not None
    )
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
