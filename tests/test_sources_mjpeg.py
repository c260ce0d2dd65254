"""MJPEG over HTTP: the multipart framing on bytes, then the source against a real MJPEG server
on loopback (every fault it has), the capture thread's recovery, kind auto's choice, the web
view's own stream, and a daemon tracking through an MJPEG camera.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fixtures.daemon import TEST_CLIP, box_iou, daemon_config, unique_prefix, wait_online
from fixtures.media import CLIP_FRAMES, serving
from fixtures.media import frame_number as clip_frame_number
from fixtures.mjpeg_server import Framing, MjpegServer, PartFault, frame_number, numbered_frame
from fixtures.mosquitto import Broker, MqttCollector, TlsFiles
from fixtures.web import RunningService
from numpy.typing import NDArray

from siamedge.config import SourceKind, SourceSettings, TlsSettings
from siamedge.errors import ConfigError, SourceError
from siamedge.sources.base import FrameSource
from siamedge.sources.capture import CaptureThread, SourceState, SourceStatus
from siamedge.sources.factory import create_capture, create_source
from siamedge.sources.http_auto import FFMPEG_TLS_NOTE, HttpAutoSource
from siamedge.sources.http_get import open_get
from siamedge.sources.mjpeg import MjpegSource
from siamedge.sources.mjpeg_decode import decode_jpeg, jpeg_size_wh
from siamedge.sources.mjpeg_parts import Part, PartReader, parse_boundary
from siamedge.sources.redact import redact_url
from siamedge.sources.stream import StreamSource
from siamedge.sources.synthetic import SyntheticClip

StartServer = Callable[..., MjpegServer]
READ_TIMEOUT_S = 0.5
"""The bound under test for stalls and undecodable streams."""
LIVE_READ_TIMEOUT_S = 5.0
"""Where the read timeout is not under test (generous: a loaded machine must not fail it)."""
OPEN_TIMEOUT_S = 5.0
"""For servers that answer (generous: a loaded machine must not fail it)."""
SHORT_TIMEOUT_S = 0.3
"""For servers that must fail to answer."""
PROMPT_SLACK_S = 2.0
"""How much later than its timeout a failure may be reported on a loaded machine."""
WAIT_S = 20.0
POLL_S = 0.02
DESCRIPTION = "mjpeg test"
JPEG = cv2.imencode(".jpg", numbered_frame(5))[1].tobytes()


def mjpeg(url: str, read_timeout_s: float = LIVE_READ_TIMEOUT_S, **kwargs: Any) -> MjpegSource:
    return MjpegSource(url, open_timeout_s=OPEN_TIMEOUT_S, read_timeout_s=read_timeout_s, **kwargs)


def read_numbers(source: MjpegSource, count: int) -> list[int]:
    return [frame_number(source.read().image) for _ in range(count)]


def last_number(server: MjpegServer) -> int:
    """The number of the last part the server finished writing; -1 before the first."""
    last = server.last_sent()
    return -1 if last is None else last.number


def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(POLL_S)


# ---- the framing, on bytes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/x-mixed-replace; boundary=frame", b"frame"),
        (
            "multipart/x-mixed-replace;boundary=123456789000000000000987654321",
            b"123456789000000000000987654321",
        ),
        ('Multipart/X-Mixed-Replace; charset=x; Boundary="--myboundary"', b"myboundary"),
        ("multipart/x-mixed-replace; boundary=--ipcamera", b"ipcamera"),
    ],
)
def test_the_boundary_comes_from_the_content_type(content_type: str, boundary: bytes) -> None:
    assert parse_boundary(content_type) == boundary


def test_a_content_type_without_boundary_is_an_error() -> None:
    with pytest.raises(SourceError, match="'multipart/x-mixed-replace' names no boundary"):
        parse_boundary("multipart/x-mixed-replace")


BODIES = [JPEG, b"\xff\xd8 not \r\n--frameless \r\n--frame-x \xff\xd9", JPEG[:100]]
"""A JPEG, a body holding the boundary's bytes inside lines that are no boundary lines, and a
truncated JPEG (the framing does not care)."""

FRAMINGS = {
    # the web view and ESP32-CAM: boundary line, headers, body, CRLF
    "web view": b"".join(
        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(b), b)
        for b in BODIES
    ),
    # ESP32-CAM's leading CRLF, extra headers, spaces around the header colon
    "esp32": b"".join(
        b"\r\n--frame\r\nContent-Type : image/jpeg\r\nContent-Length:%d\r\nX-Timestamp: 1.5\r\n"
        b"\r\n%s" % (len(b), b)
        for b in BODIES
    ),
    # mjpg-streamer: one boundary line first, then each part is followed by the next one
    "mjpg-streamer": b"--frame\r\n"
    + b"".join(
        b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n--frame\r\n" % (len(b), b)
        for b in BODIES
    ),
    # no Content-Length: the body ends before the CRLF of the next boundary line
    "no length": b"".join(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n%s\r\n" % b for b in BODIES)
    + b"--frame--\r\n",
    # bare LF, boundary lines with extra dashes, no part headers at all, blank lines between
    "sloppy": b"\n\n" + b"".join(b"----frame\n%s\n" % b for b in BODIES) + b"----frame\n",
}


def chunked(data: bytes, size: int) -> Callable[[], bytes]:
    """A fill callable handing out `data` in pieces of `size` bytes, then b""."""
    pieces = iter([data[i : i + size] for i in range(0, len(data), size)])
    return lambda: next(pieces, b"")


def part_reader(fill: Callable[[], bytes], max_part_bytes: int = 1 << 20) -> PartReader:
    return PartReader(fill, b"frame", max_part_bytes=max_part_bytes, description=DESCRIPTION)


@pytest.mark.parametrize("framing", list(FRAMINGS))
@pytest.mark.parametrize("chunk_bytes", [1, 2, 7, 4096])
def test_parts_come_out_whole_in_every_framing_and_chunking(framing: str, chunk_bytes: int) -> None:
    reader = part_reader(chunked(FRAMINGS[framing], chunk_bytes))

    bodies = [reader.next_part().body for _ in BODIES]

    assert bodies == BODIES
    with pytest.raises(SourceError, match="mjpeg test: the server ended the stream"):
        reader.next_part()


def test_part_headers_are_read_with_lower_case_names() -> None:
    part = part_reader(chunked(FRAMINGS["esp32"], 5)).next_part()

    assert part.headers == {
        "content-type": "image/jpeg",
        "content-length": str(len(JPEG)),
        "x-timestamp": "1.5",
    }


def test_a_part_is_stamped_with_the_arrival_of_its_first_bytes_after_the_boundary() -> None:
    # mjpg-streamer's order: a part's boundary line comes with the previous part, a frame early
    first = b"Content-Length: %d\r\n\r\n%s\r\n--frame\r\n" % (len(JPEG), JPEG)
    chunks = [b"--frame\r\n", first[:10], first[10:], b"Content-Length: 3\r\n\r\nabc\r\n"]
    handed_out: list[float] = []

    def fill() -> bytes:
        time.sleep(0.01)  # distinct arrival times
        handed_out.append(time.time())
        return chunks.pop(0) if chunks else b""

    reader = part_reader(fill)
    parts: list[Part] = [reader.next_part(), reader.next_part()]

    # the first part began with the second read, the next one with the fourth, not the third
    assert handed_out[1] <= parts[0].arrived_at < handed_out[2]
    assert handed_out[3] <= parts[1].arrived_at
    assert [p.body for p in parts] == [JPEG, b"abc"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            b"--frame\r\nContent-Length: 10\r\n\r\n123",
            r"the server closed the connection in the middle of a part \(got 3 of 10 bytes\)",
        ),
        (
            b"--frame\r\n\r\n\xff\xd8123",
            r"the server closed the connection in the middle of a part \(got 5 bytes, no Content",
        ),
        (
            b"--frame\r\nContent-Type: im",
            "the server closed the connection in the middle of a part's headers",
        ),
        (b"--frame--\r\n", r"the server ended the stream \(closing boundary\)"),
        (b"\r\n\r\n", "the server ended the stream"),
        (
            b"--frame\r\nContent-Length: 2000000\r\n\r\n",
            "a part of 2000000 bytes \\(Content-Length\\) exceeds the limit of 1048576 bytes",
        ),
        (b"x" * 70_000, "no end of a boundary line within 65536 bytes"),
        (b"--frame\r\n" + b"X-Junk: 1\r\n" * 2000, "no end of a part's headers within"),
        (
            b"--other\r\n" * 8000,
            "no end of a boundary line within .* the server's boundary differs",
        ),
    ],
    ids=[
        "closed inside a part",
        "closed inside a part without length",
        "closed inside the headers",
        "closing boundary",
        "closed between parts",
        "part too large",
        "no line",
        "headers too long",
        "other boundary",
    ],
)
def test_broken_streams_are_errors_that_say_what_happened(data: bytes, error: str) -> None:
    reader = part_reader(chunked(data, 4096))

    with pytest.raises(SourceError, match=f"^mjpeg test: {error}"):
        reader.next_part()


def test_a_part_without_length_over_the_limit_is_an_error() -> None:
    data = b"--frame\r\n\r\n\xff\xd8" + b"x" * 5000
    reader = part_reader(chunked(data, 1000), max_part_bytes=4096)

    with pytest.raises(SourceError, match="no boundary line within 4096 bytes of a part without"):
        reader.next_part()


def test_decode_jpeg_refuses_what_is_not_a_whole_jpeg() -> None:
    image, problem = decode_jpeg(JPEG + b"\r\n\0")
    assert image is not None and frame_number(image) == 5 and problem == ""
    assert image.shape == (24, 128, 3) and image.dtype == np.uint8

    assert decode_jpeg(JPEG[:-40]) == (
        None,
        f"truncated JPEG ({len(JPEG) - 40} bytes, no end-of-image marker)",
    )
    assert decode_jpeg(b"<html>")[1] == "not a JPEG (6 bytes starting 3c68746d)"
    assert jpeg_size_wh(JPEG) == (128, 24)
    sof = JPEG.index(b"\xff\xc0")
    huge = JPEG[: sof + 5] + (60000).to_bytes(2, "big") * 2 + JPEG[sof + 9 :]
    assert decode_jpeg(huge) == (None, "a JPEG of 60000x60000 pixels (over 33177600)")
    broken = JPEG[:2] + bytes(200) + JPEG[-2:]
    assert decode_jpeg(broken)[0] is None
    assert decode_jpeg(broken)[1].startswith("JPEG does not decode")


# ---- the source against the MJPEG server --------------------------------------------------------

SERVER_FRAMINGS = {
    "web view": Framing(),
    "mjpg-streamer": Framing(
        header_boundary="boundarydonotcross",
        line_boundary="--boundarydonotcross",
        boundary_after_part=True,
        extra_headers=True,
    ),
    "dashes in the header": Framing(header_boundary='"--myboundary"', line_boundary="--myboundary"),
    "no length, padded": Framing(content_length=False, padding=b"\r\n\r\n", extra_headers=True),
    "chunked": Framing(chunked=True),
}


@pytest.mark.parametrize("framing", list(SERVER_FRAMINGS))
def test_reads_live_frames_stamped_when_they_arrived(
    mjpeg_server: StartServer, framing: str
) -> None:
    server = mjpeg_server(fps=10, framing=SERVER_FRAMINGS[framing])
    source = mjpeg(server.url)
    source.open()
    frames = []
    for _ in range(5):
        frame = source.read()
        frames.append((frame, time.time()))
    source.close()

    numbers = [frame_number(frame.image) for frame, _ in frames]
    until(lambda: last_number(server) >= numbers[-1], "the server's record of the last part")
    # every part sent, in order, unless a newer one had arrived before it was decoded
    between = [part.number for part in server.sent if numbers[0] <= part.number <= numbers[-1]]
    assert numbers == sorted(set(numbers)) and set(numbers) <= set(between)
    assert len(between) - len(numbers) == source.stale_parts
    assert [frame.index for frame, _ in frames] == list(range(5))
    sent = {part.number: part for part in server.sent}
    for (frame, returned_at), number in zip(frames, numbers, strict=True):
        # after the server began writing that part, before read() returned it
        assert sent[number].started_at <= frame.timestamp <= returned_at
    assert source.skipped_parts == 0


def _https(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    return context


@pytest.mark.usefixtures("tls_default_of_python_3_13")
def test_an_https_camera_of_a_trusted_ca_streams(
    mjpeg_server: StartServer, mqtt_tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its CA has no key usage (as mosquitto's manual and many cameras make one): Python 3.13's
    # default context refused it, 3.10-3.12 took it; now every Python takes it.
    monkeypatch.setenv("SSL_CERT_FILE", str(mqtt_tls_files.ca_cert))
    server = mjpeg_server(fps=20, tls=_https(mqtt_tls_files))
    source = mjpeg(server.url)
    source.open()
    numbers = read_numbers(source, 3)
    source.close()
    assert server.url.startswith("https://") and numbers == sorted(set(numbers))


def test_an_https_camera_of_an_unknown_ca_is_refused_saying_why_and_what_to_do(
    mjpeg_server: StartServer, mqtt_tls_files: TlsFiles
) -> None:
    server = mjpeg_server(fps=20, tls=_https(mqtt_tls_files))
    with pytest.raises(SourceError) as refused:
        mjpeg(server.url).open()
    assert str(refused.value).endswith(
        ": TLS handshake failed: certificate verify failed: unable to get local issuer "
        "certificate; the server's certificate must chain to a CA of the system store (add it "
        "with update-ca-certificates) or to source.tls.ca_file (the certificate itself when the "
        "server signs its own)"
    )
    assert server.connections == 0


@pytest.fixture(scope="module")
def camera_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) as an IP camera makes them: self-signed, naming the camera's model
    rather than the address it is reached at, without key usage."""
    folder = tmp_path_factory.mktemp("camera-tls")
    cert, key = folder / "camera.crt", folder / "camera.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=ipcam-x1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _camera_https(camera_certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*camera_certificate)
    return context


@pytest.mark.usefixtures("tls_default_of_python_3_13")
@pytest.mark.parametrize("kind", ["mjpeg", "auto"])
def test_a_camera_that_signs_its_own_certificate_streams_with_source_tls(
    mjpeg_server: StartServer, camera_certificate: tuple[Path, Path], kind: SourceKind
) -> None:
    server = mjpeg_server(fps=20, tls=_camera_https(camera_certificate))
    ca_file = str(camera_certificate[0])

    def source_with(tls: TlsSettings) -> FrameSource:
        settings = SourceSettings(kind=kind, uri=server.url, open_timeout_s=OPEN_TIMEOUT_S, tls=tls)
        return create_source(settings)

    with pytest.raises(SourceError) as refused:
        source_with(TlsSettings(ca_file=ca_file)).open()
    assert str(refused.value).endswith(
        ": TLS handshake failed: certificate verify failed: IP address mismatch, certificate is "
        "not valid for '127.0.0.1'.; the certificate does not name the host of the URL: use a "
        "name it names, or set source.tls.insecure: true to skip the name check"
    )
    source = source_with(TlsSettings(ca_file=ca_file, insecure=True))
    source.open()
    frames = [source.read() for _ in range(3)]
    source.close()
    assert all(frame is not None and frame_number(frame.image) > 0 for frame in frames)
    assert server.connections == 1


def test_an_https_camera_not_of_source_tls_ca_file_is_refused_naming_it(
    mjpeg_server: StartServer, mqtt_tls_files: TlsFiles, camera_certificate: tuple[Path, Path]
) -> None:
    server = mjpeg_server(fps=20, tls=_https(mqtt_tls_files))
    other_ca = str(camera_certificate[0])
    source = create_source(
        SourceSettings(kind="mjpeg", uri=server.url, tls=TlsSettings(ca_file=other_ca))
    )
    with pytest.raises(SourceError) as refused:
        source.open()
    assert str(refused.value).endswith(
        ": TLS handshake failed: certificate verify failed: unable to get local issuer "
        f"certificate; the server's certificate must chain to source.tls.ca_file {other_ca} (or "
        "be in it, when the server signs its own)"
    )


def test_an_https_camera_of_a_ca_without_key_usage_is_refused_under_x509_strict_saying_so(
    mjpeg_server: StartServer, mqtt_tls_files: TlsFiles
) -> None:
    server = mjpeg_server(fps=20, tls=_https(mqtt_tls_files))
    strict = TlsSettings(ca_file=str(mqtt_tls_files.ca_cert), x509_strict=True)
    source = create_source(SourceSettings(kind="mjpeg", uri=server.url, tls=strict))
    with pytest.raises(SourceError) as refused:
        source.open()
    assert str(refused.value).endswith(
        ": TLS handshake failed: certificate verify failed: CA cert does not include key usage "
        "extension; source.tls.x509_strict is on: a certificate that breaks RFC 5280 is refused "
        "even when it chains to a trusted CA (x509_strict: false accepts it)"
    )


def test_an_https_camera_that_asks_for_a_client_certificate_gets_source_tls_one(
    mjpeg_server: StartServer, mqtt_tls_files: TlsFiles
) -> None:
    files = mqtt_tls_files
    server_context = _https(files)
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_verify_locations(files.ca_cert)
    server = mjpeg_server(fps=20, tls=server_context)
    with_certificate = TlsSettings(
        ca_file=str(files.ca_cert), cert_file=str(files.client_cert), key_file=str(files.client_key)
    )
    source = create_source(SourceSettings(kind="mjpeg", uri=server.url, tls=with_certificate))
    source.open()
    assert source.read() is not None
    source.close()

    without = create_source(
        SourceSettings(kind="mjpeg", uri=server.url, tls=TlsSettings(ca_file=str(files.ca_cert)))
    )
    # TLS 1.3: the refusal comes with the request, as the server's alert or, when the server
    # closed before the alert was read, as an EOF or a reset (a race the test cannot fix)
    with pytest.raises(SourceError) as refused:
        without.open()
    assert re.search(
        r": TLS: (TLSV13_ALERT_CERTIFICATE_REQUIRED; the server asks for a client certificate: "
        r"|.+; the server closed the connection: if it asks for a client certificate, )"
        r"set source\.tls\.cert_file and key_file$",
        str(refused.value),
    ), refused.value
    assert server.connections == 1


def test_source_tls_files_that_do_not_load_are_a_config_error_naming_them(tmp_path: Path) -> None:
    missing = tmp_path / "camera.pem"
    settings = SourceSettings(uri="https://cam/video.mjpg", tls=TlsSettings(ca_file=str(missing)))
    with pytest.raises(ConfigError, match=f"^source.tls.ca_file: cannot load {missing}: "):
        create_source(settings)


def test_a_truncated_jpeg_is_skipped_counted_and_logged(
    mjpeg_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = mjpeg_server(fps=10)
    source = mjpeg(server.url)
    source.open()
    first = frame_number(source.read().image)
    server.inject(PartFault.TRUNCATED)
    with caplog.at_level(logging.WARNING, logger="siamedge.sources.mjpeg"):
        numbers = read_numbers(source, 3)
    source.close()

    # every part sent after the first frame was read, except the truncated one
    until(lambda: last_number(server) >= numbers[-1], "the server's record of the last part")
    between = [part.number for part in server.sent if first < part.number <= numbers[-1]]
    assert set(numbers) < set(between)
    assert len(set(between) - set(numbers)) == 1 + source.stale_parts
    assert source.skipped_parts == 1
    assert server.connections == 1
    assert f"{server.url}: skipped a part: truncated JPEG (" in caplog.text


@pytest.mark.parametrize(("framing", "lag"), [("web view", 1), ("no length, padded", 2)])
def test_a_slow_reader_gets_the_newest_part_not_the_oldest(
    mjpeg_server: StartServer, framing: str, lag: int
) -> None:
    """Freshness with a decoder slower than the camera: parts that piled up behind a slow read
    are not decoded; the next read() returns the last part sent, or one before it when the last
    is still on the wire (without Content-Length a part ends only with the next one)."""
    server = mjpeg_server(fps=10, framing=SERVER_FRAMINGS[framing])
    source = mjpeg(server.url)
    source.open()
    first = frame_number(source.read().image)
    until(lambda: last_number(server) >= first + 6, "six more parts sent meanwhile")
    last_sent = last_number(server)

    newest = frame_number(source.read().image)
    source.close()

    assert newest >= last_sent - lag
    assert source.stale_parts >= 6 - 2 * lag


def test_nothing_decoding_is_an_error_within_the_read_timeout(mjpeg_server: StartServer) -> None:
    server = mjpeg_server(fps=20)
    source = mjpeg(server.url, READ_TIMEOUT_S)
    source.open()
    source.read()
    server.inject(PartFault.TRUNCATED, count=1000)
    started = time.monotonic()

    with pytest.raises(
        SourceError,
        match=r"no part decoded within 0\.5 s: \d+ skipped, the last: truncated JPEG \(\d+ bytes",
    ):
        source.read()
    assert time.monotonic() - started < READ_TIMEOUT_S + PROMPT_SLACK_S
    source.close()


@pytest.mark.parametrize("framing", ["web view", "chunked"])
def test_a_server_closing_mid_frame_is_an_error_naming_it(
    mjpeg_server: StartServer, framing: str
) -> None:
    server = mjpeg_server(fps=20, framing=SERVER_FRAMINGS[framing])
    source = mjpeg(server.url)
    source.open()
    source.read()
    server.inject(PartFault.CLOSE_MID_PART)

    with pytest.raises(
        SourceError,
        match=rf"^mjpeg {server.url}: the server closed the connection in the middle of a part "
        r"\(got \d+ of \d+ bytes\)",
    ):
        source.read()
    source.close()


def test_a_stall_is_an_error_after_the_read_timeout(mjpeg_server: StartServer) -> None:
    server = mjpeg_server(fps=20)
    source = mjpeg(server.url, READ_TIMEOUT_S)
    source.open()
    source.read()
    server.inject(PartFault.STALL)
    started = time.monotonic()

    with pytest.raises(SourceError, match=r"no data for [\d.]+ s \(the stream stalled\)"):
        source.read()
    elapsed = time.monotonic() - started
    source.close()

    assert READ_TIMEOUT_S * 0.9 <= elapsed < READ_TIMEOUT_S + PROMPT_SLACK_S
    until(lambda: server.open_connections == 0, "the server sees the connection closed")


def test_a_wrong_content_type_is_an_error_naming_it(mjpeg_server: StartServer) -> None:
    server = mjpeg_server(framing=Framing(content_type="text/html; charset=utf-8"))

    with pytest.raises(
        SourceError,
        match=r"answered Content-Type 'text/html; charset=utf-8', not multipart/x-mixed-replace",
    ):
        mjpeg(server.url).open()
    with pytest.raises(SourceError, match=r"answered a web page \(text/html; charset=utf-8\)"):
        auto(server.url).open()
    until(lambda: server.open_connections == 0, "both connections closed")


def test_basic_auth_from_the_url_and_401_without_it(
    mjpeg_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = mjpeg_server(credentials=("admin", "pa:ss w@rd"))
    good = server.url_with("admin", "pa%3Ass%20w%40rd")
    caplog.set_level(logging.DEBUG)

    for url in (server.url, server.url_with("admin", "b4d-pass")):
        with pytest.raises(
            SourceError, match=r"HTTP 401 Unauthorized: credentials missing or wrong"
        ) as refused:
            mjpeg(url).open()
        assert "b4d-pass" not in str(refused.value)
    source = mjpeg(good)
    source.open()
    assert frame_number(source.read().image) > 0
    source.close()

    assert source.description == f"mjpeg http://admin:***@127.0.0.1:{server.port}/stream"
    assert "pa%3A" not in caplog.text and "b4d-pass" not in caplog.text


def test_the_password_from_source_password_file_opens_the_camera(
    mjpeg_server: StartServer, tmp_path: Path
) -> None:
    server = mjpeg_server(credentials=("admin", "pa:ss w@rd"))
    password_file = tmp_path / "camera-password"
    password_file.write_text("pa:ss w@rd\n", encoding="utf-8")
    settings = SourceSettings(
        kind="mjpeg",
        uri=f"http://admin@127.0.0.1:{server.port}/stream",
        password_file=str(password_file),
        open_timeout_s=OPEN_TIMEOUT_S,
    )
    source = create_source(settings)
    source.open()
    assert frame_number(source.read().image) > 0
    source.close()
    assert source.description == f"mjpeg http://admin:***@127.0.0.1:{server.port}/stream"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("http://u:pw@cam/video?token=abc&fps=5", "http://u:***@cam/video?token=***&fps=5"),
        ("http://cam/cgi?user=admin&pwd=secret", "http://cam/cgi?user=admin&pwd=***"),
        ("https://cam/stream.mjpeg", "https://cam/stream.mjpeg"),
    ],
)
def test_descriptions_hide_passwords_and_tokens(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_unreachable_and_wrong_urls_are_errors_naming_the_reason(
    mjpeg_server: StartServer,
) -> None:
    server = mjpeg_server()
    with pytest.raises(SourceError, match=r"/nothing-here: HTTP 404 Not Found$"):
        mjpeg(f"http://127.0.0.1:{server.port}/nothing-here").open()

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"no HTTP answer within 0\.3 s"):
            MjpegSource(
                f"http://127.0.0.1:{port}/", open_timeout_s=SHORT_TIMEOUT_S, read_timeout_s=1
            ).open()
        assert time.monotonic() - started < SHORT_TIMEOUT_S + PROMPT_SLACK_S
    with pytest.raises(SourceError, match="connection refused"):
        mjpeg(f"http://127.0.0.1:{port}/").open()
    with pytest.raises(SourceError, match="an MJPEG stream needs an http:// or https:// URL"):
        create_source(SourceSettings(kind="mjpeg", uri="/dev/video0"))


def test_a_part_over_the_size_limit_is_an_error(mjpeg_server: StartServer) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    server = mjpeg_server(frames=lambda _: noise)
    source = mjpeg(server.url, max_part_bytes=10_000)
    source.open()

    with pytest.raises(
        SourceError,
        match=r"a part of \d+ bytes \(Content-Length\) exceeds the "
        "limit of 10000 bytes",
    ):
        source.read()
    source.close()


# ---- the capture thread -------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def capture_of(url: str, states: list[SourceStatus], kind: str = "mjpeg") -> CaptureThread:
    settings = SourceSettings.model_validate(
        {
            "kind": kind,
            "uri": url,
            "read_timeout_s": READ_TIMEOUT_S,
            "open_timeout_s": OPEN_TIMEOUT_S,
            "reopen_min_s": 0.05,
            "reopen_max_s": 0.2,
        }
    )
    return create_capture(settings, on_state=states.append)


def next_number(capture: CaptureThread) -> int:
    frame = capture.get(WAIT_S)
    assert frame is not None, capture.status
    return frame_number(frame.image)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (PartFault.CLOSE_MID_PART, "the server closed the connection in the middle of a part"),
        (PartFault.STALL, "no data for"),
        (PartFault.TRUNCATED, "no part decoded within 0.5 s"),
    ],
)
def test_the_capture_thread_reopens_after_a_fault_and_frames_resume(
    mjpeg_server: StartServer, fault: PartFault, error: str
) -> None:
    server = mjpeg_server(fps=20)
    threads, fds = threading.active_count(), open_fds()
    states: list[SourceStatus] = []
    capture = capture_of(server.url, states)
    with capture:
        before = next_number(capture)
        server.inject(fault, count=1 if fault is not PartFault.TRUNCATED else 25)
        until(lambda: any(error in (s.error or "") for s in states), f"retrying after {error!r}")
        server.clear_faults()
        retrying = next(s for s in states if error in (s.error or ""))
        assert retrying.state is SourceState.RETRYING
        assert retrying.error is not None and retrying.error.startswith(f"mjpeg {server.url}: ")
        until(lambda: capture.status.state is SourceState.STREAMING, "streaming again")
        after = next_number(capture)
        assert after > before
    assert server.connections >= 2
    assert [s.state for s in states][-1] is SourceState.STOPPED
    until(lambda: server.open_connections == 0, "the server's connections closed")
    until(lambda: threading.active_count() <= threads, "no thread left behind")
    until(lambda: open_fds() <= fds, f"no file descriptor left open ({open_fds()} vs {fds})")


def test_the_capture_thread_hands_out_the_newest_frame(mjpeg_server: StartServer) -> None:
    """Freshness: a consumer that comes back after a while gets the last frame sent, or the one
    before it when the newest is still on the wire, never an older one."""
    server = mjpeg_server(fps=5)
    with capture_of(server.url, []) as capture:
        next_number(capture)
        for _ in range(3):
            time.sleep(1.0)  # five frame intervals: frames pile up unless only the newest is kept
            last_sent = server.last_sent()
            assert last_sent is not None
            frame = capture.get(0.0)
            assert frame is not None
            assert frame_number(frame.image) >= last_sent.number - 1
        assert capture.stats().dropped > 0


# ---- kind auto ----------------------------------------------------------------------------------


def auto(url: str) -> HttpAutoSource:
    source = create_source(SourceSettings(uri=url, open_timeout_s=OPEN_TIMEOUT_S))
    assert isinstance(source, HttpAutoSource)
    return source


def test_kind_auto_reads_mjpeg_itself_and_other_http_video_with_ffmpeg(
    mjpeg_server: StartServer, video_file_url: str
) -> None:
    server = mjpeg_server(fps=20)
    live = auto(server.url)
    live.open()
    first = live.read()
    assert isinstance(live.reader, MjpegSource)
    assert first is not None and frame_number(first.image) > 0
    live.close()
    assert server.connections == 1  # the probing connection is the one read

    clip = auto(video_file_url)
    clip.open()
    assert isinstance(clip.reader, StreamSource)
    frames = [clip.read() for _ in range(CLIP_FRAMES)]
    clip.close()
    assert [clip_frame_number(f.image) for f in frames if f is not None] == list(range(CLIP_FRAMES))

    explicit = create_source(SourceSettings(kind="stream", uri=server.url))
    assert isinstance(explicit, StreamSource)


@pytest.mark.parametrize(
    ("ffmpeg_options", "plays"), [("ca_file;{ca}|tls_verify;1", True), ("tls_verify;1", False)]
)
def test_other_https_video_goes_to_ffmpeg_which_takes_its_ca_from_the_environment(
    video_file: Path,
    mqtt_tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    ffmpeg_options: str,
    plays: bool,
) -> None:
    # What the README and the log line tell: source.tls is siamedge's own reader's (the probe);
    # FFmpeg verifies with OPENCV_FFMPEG_CAPTURE_OPTIONS, read at each open.
    ca = str(mqtt_tls_files.ca_cert)
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", ffmpeg_options.format(ca=ca))
    caplog.set_level(logging.INFO, logger="siamedge.sources.http_auto")
    with serving(video_file, tls=_https(mqtt_tls_files)) as url:
        clip = create_source(
            SourceSettings(uri=url, open_timeout_s=OPEN_TIMEOUT_S, tls=TlsSettings(ca_file=ca))
        )
        assert isinstance(clip, HttpAutoSource)
        if plays:
            clip.open()
            assert isinstance(clip.reader, StreamSource)
            frames = [clip.read() for _ in range(CLIP_FRAMES)]
            clip.close()
            numbers = [clip_frame_number(f.image) for f in frames if f is not None]
            assert numbers == list(range(CLIP_FRAMES))
        else:
            with pytest.raises(SourceError) as refused:
                clip.open()
            assert str(refused.value).startswith(f"stream {url}: cannot open it: failed after ")
            assert str(refused.value).endswith(
                "(connection refused, wrong path or credentials, or no video, or a certificate "
                "FFmpeg does not trust: give it the CA with OPENCV_FFMPEG_CAPTURE_OPTIONS="
                "ca_file;PATH|tls_verify;1 in the service environment)"
            )
    assert any(FFMPEG_TLS_NOTE in record.getMessage() for record in caplog.records)


def test_an_ipv6_address_without_a_port_is_asked_on_the_schemes_port(
    video_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # http.client read `http://[::1]/...` as host ":" and port 1 ("unknown host").
    with serving(video_file, host="::1") as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        monkeypatch.setattr(http.client, "HTTP_PORT", port)  # the server stands in for :80
        no_port = f"http://[::1]/{video_file.name}"
        body = open_get(no_port, timeout_s=OPEN_TIMEOUT_S, accept="*/*", description="v6")
        body.close()
    assert body.content_type == "video/x-msvideo"


def test_an_https_url_of_a_plain_http_server_says_it_does_not_answer_tls(
    mjpeg_server: StartServer,
) -> None:
    server = mjpeg_server(fps=20)
    with pytest.raises(SourceError) as refused:
        mjpeg(server.url.replace("http://", "https://")).open()
    assert str(refused.value).endswith(
        ": TLS handshake failed: WRONG_VERSION_NUMBER; the server does not answer TLS on that "
        "port (an http:// URL?)"
    )


# ---- the web view's stream ----------------------------------------------------------------------


def test_reads_the_web_views_own_stream(
    web_service: Callable[..., RunningService], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIAMEDGE_TEST_WEB_TOKEN", "view-token")
    running = web_service(token="view-token", web={"token_env": "SIAMEDGE_TEST_WEB_TOKEN"})
    url = f"{running.url}stream.mjpeg"

    with pytest.raises(SourceError, match="HTTP 401"):
        mjpeg(url).open()
    source = mjpeg(f"{url}?token=view-token", read_timeout_s=WAIT_S)
    assert "view-token" not in source.description
    source.open()
    frames = [source.read() for _ in range(3)]
    source.close()

    width = running.settings.web.preview_width
    clip_w, clip_h = running.clip.size_wh
    assert all(f.size_wh == (width, round(clip_h * width / clip_w)) for f in frames)
    assert frames[0].timestamp < frames[1].timestamp < frames[2].timestamp


# ---- a daemon tracking through an MJPEG camera --------------------------------------------------

MIN_MEAN_IOU = 0.7
TRACKED_FRAMES = 40
CLIP = SyntheticClip(TEST_CLIP)


def clip_frame(number: int) -> NDArray[np.uint8]:
    return CLIP.frame(number % len(CLIP))


def with_track(track_id: str) -> Callable[[Any], bool]:
    """A predicate on results (a payload, parsed or not) that hold the track."""

    def holds(message: Any) -> bool:
        payload = json.loads(message) if isinstance(message, bytes) else message
        return any(track["track_id"] == track_id for track in payload["tracks"])

    return holds


def server_frame_at(server: MjpegServer, timestamp: float) -> int:
    """The number of the part that arrived at `timestamp`: the last one sent before it."""
    return max(part.number for part in server.sent if part.started_at <= timestamp)


def test_a_daemon_tracks_through_an_mjpeg_camera_and_survives_its_failure(
    mjpeg_server: StartServer,
    mosquitto: Broker,
    mqtt_collector: Callable[..., MqttCollector],
    daemon_factory: Callable[..., Any],
) -> None:
    server = mjpeg_server(frames=clip_frame, fps=20)
    config = daemon_config(
        mosquitto, unique_prefix(), source={"kind": "auto", "uri": server.url, "read_timeout_s": 2}
    )
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    online = wait_online(collector, daemon)
    assert online["source"]["description"] == f"stream {server.url}"

    last = server.last_sent()
    assert last is not None
    box = list(CLIP.truth((last.number + 1) % len(CLIP)).box_xywh)
    collector.publish(daemon.topic("start"), json.dumps({"box": box, "track_id": "cam"}))
    results = collector.wait_for(
        daemon.topic("results"),
        TRACKED_FRAMES + 1,
        where=with_track("cam"),
        timeout_s=60,
    )
    ious = []
    for message in results[1:]:  # the first result is the start box itself
        payload = json.loads(message.payload)
        assert (payload["width"], payload["height"]) == (TEST_CLIP.width, TEST_CLIP.height)
        number = server_frame_at(server, payload["timestamp"])
        ious.append(box_iou(payload["tracks"][0]["bbox"], CLIP.truth(number % len(CLIP)).box_xywh))
    assert np.mean(ious) >= MIN_MEAN_IOU, ious

    # the camera drops the connection mid-frame: the status says so, then tracking goes on
    server.inject(PartFault.CLOSE_MID_PART)
    failed = collector.wait_for(
        daemon.topic("status"),
        where=lambda m: "middle of a part" in ((m.get("source") or {}).get("error") or ""),
        timeout_s=30,
    )
    reason = json.loads(failed[0].payload)["source"]["error"]
    assert reason.startswith(f"mjpeg {server.url}: the server closed the connection")
    tracking = with_track("cam")
    tracked = [m for m in collector.messages(daemon.topic("results")) if tracking(m.payload)]
    collector.wait_for(
        daemon.topic("results"), len(tracked) + 10, where=with_track("cam"), timeout_s=30
    )
    assert server.connections >= 2
    assert daemon.stop() == 0
