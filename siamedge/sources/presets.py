"""GStreamer pipeline strings for the `csi` and `rtsp` source kinds, built from the settings.

Pure string building: never opens, inspects or runs a pipeline, and never puts a password where
a log, status or printout would show it (use `redact_pipeline` before showing a pipeline).

CSI (Jetson, libargus): `nvarguscamerasrc sensor-id=N [sensor-mode=M]` gives NV12 frames in
NVMM (GPU) memory; `nvvidconv flip-method=F` turns/flips them and copies them to system memory
as BGRx; `videoconvert` drops the x. RTSP: `rtspsrc` (credentials as its user-id/user-pw
properties, never in the location) -> depayloader -> parser -> decoder, either
`nvv4l2decoder ! nvvidconv` (the Jetson hardware decoder, NVMM out) or `avdec_h264`/`avdec_h265`
(libav, software, anywhere). Every pipeline ends in `appsink drop=true max-buffers=1
sync=false`: the newest frame, no backlog, no clock waits.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from siamedge.config import RTSP_SCHEMES, SourceSettings
from siamedge.errors import SourceError
from siamedge.sources.redact import redact_url, url_error

PresetKind = Literal["csi", "rtsp"]

LINK = " ! "
APPSINK = "appsink drop=true max-buffers=1 sync=false"
USEC_PER_S = 1_000_000
TO_BGR = "videoconvert ! video/x-raw,format=BGR"
NVMM_TO_BGRX = "nvvidconv ! video/x-raw,format=BGRx"
CSI_SOURCE = "nvarguscamerasrc"
CSI_CAPS = "video/x-raw(memory:NVMM)"
CSI_FORMAT = "NV12"
RTSP_SOURCE = "rtspsrc"
FRAMERATE_MAX_DENOMINATOR = 1001
"""Enough for the NTSC rates (30000/1001 fps) a float from the YAML stands for."""

# codec -> (depayloader, parser, libav decoder)
CODEC_ELEMENTS: dict[str, tuple[str, str, str]] = {
    "h264": ("rtph264depay", "h264parse", "avdec_h264"),
    "h265": ("rtph265depay", "h265parse", "avdec_h265"),
}
HARDWARE_DECODER = "nvv4l2decoder"


def quote_value(value: str) -> str:
    """A property value as gst-launch reads back exactly `value`: in double quotes, with `\\`
    and `"` escaped (so `!`, spaces and `@` inside stay part of the value)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def framerate(fps: float) -> str:
    """30 -> `30/1`, 29.97 -> `2997/100`, 30000/1001 -> `30000/1001`: a caps fraction."""
    fraction = Fraction(fps).limit_denominator(FRAMERATE_MAX_DENOMINATOR)
    return f"{fraction.numerator}/{fraction.denominator}"


def csi_pipeline(settings: SourceSettings) -> str:
    """The nvarguscamerasrc pipeline: settings.sensor_id, sensor_mode (None: Argus picks it from
    the caps), width/height/fps (None: the sensor's default mode) and flip (flip-method 0-7)."""
    source = f"{CSI_SOURCE} sensor-id={settings.sensor_id}"
    if settings.sensor_mode is not None:
        source += f" sensor-mode={settings.sensor_mode}"
    caps = [CSI_CAPS]
    if settings.width is not None:
        caps.append(f"width={settings.width}")
    if settings.height is not None:
        caps.append(f"height={settings.height}")
    if settings.fps is not None:
        caps.append(f"framerate={framerate(settings.fps)}")
    caps.append(f"format={CSI_FORMAT}")
    convert = f"nvvidconv flip-method={settings.flip} ! video/x-raw,format=BGRx"
    return LINK.join([source, ",".join(caps), convert, TO_BGR, APPSINK])


def rtsp_pipeline(settings: SourceSettings) -> str:
    """The rtspsrc pipeline for settings.uri (rtsp:// or rtsps://): latency_ms, transport,
    codec and decoder. Credentials in the URL move to user-id/user-pw (percent-decoded).
    open_timeout_s becomes rtspsrc's tcp-timeout: its own default let a camera that accepts and
    never answers hold each open for 20 s whatever the configuration said."""
    location, user, password = split_credentials(settings.uri.strip())
    source = (
        f"{RTSP_SOURCE} location={quote_value(location)} latency={settings.latency_ms} "
        f"protocols={settings.transport} "
        f"tcp-timeout={round(settings.open_timeout_s * USEC_PER_S)}"
    )
    if user is not None:
        source += f" user-id={quote_value(user)}"
    if password is not None:
        source += f" user-pw={quote_value(password)}"
    depay, parse, software_decoder = CODEC_ELEMENTS[settings.codec]
    if settings.decoder == HARDWARE_DECODER:
        decode = [HARDWARE_DECODER, NVMM_TO_BGRX]
    else:
        decode = [software_decoder]
    return LINK.join([source, depay, parse, *decode, TO_BGR, APPSINK])


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`rtsp://user:p%40ss@host/x` -> (`rtsp://host/x`, `user`, `p@ss`); SourceError naming
    source.uri (without its password) when it is not an rtsp:// or rtsps:// URL with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SourceError(
            f"source.uri {redact_url(url)!r}: not a valid URL ({url_error(exc)})"
        ) from None
    if parts.scheme.lower() not in RTSP_SCHEMES or not parts.hostname:
        raise SourceError(
            f"source.uri {redact_url(url)!r}: kind rtsp needs an rtsp:// or rtsps:// URL "
            "with a host, e.g. rtsp://user:password@192.168.1.20:554/stream1"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    location = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return location, user, password


def preset_pipeline(kind: PresetKind, settings: SourceSettings) -> str:
    """The pipeline of a preset kind (`csi` or `rtsp`)."""
    if kind == "csi":
        return csi_pipeline(settings)
    return rtsp_pipeline(settings)
