"""Camera passwords stay out of every message that names a source: a user's own GStreamer
pipeline (its description reaches logs, the retained status topic and /api/status), URLs that
Python cannot parse (urlsplit's error quotes what it took for a port: the start of a password
holding an unescaped `/`, `?` or `#`), uris with a mistyped scheme, and more query names."""

from __future__ import annotations

import pytest

from siamedge.config import SourceSettings
from siamedge.errors import SourceError
from siamedge.sources.factory import create_source
from siamedge.sources.gstreamer import GStreamerSource
from siamedge.sources.redact import redact_pipeline, redact_url

SECRET = "S3cretPW"


@pytest.mark.parametrize(
    "pipeline",
    [
        f"rtspsrc location=rtsp://admin:{SECRET}@cam/x ! decodebin ! videoconvert ! appsink",
        f'rtspsrc location="rtsp://cam/x" user-id=admin user-pw="{SECRET}" ! appsink',
        f"souphttpsrc location=http://cam/x proxy-pw={SECRET} ! jpegdec ! appsink",
    ],
)
def test_a_users_own_pipeline_is_described_without_its_password(pipeline: str) -> None:
    source = create_source(SourceSettings(kind="gstreamer", uri=pipeline))
    assert isinstance(source, GStreamerSource)
    assert SECRET not in source.description
    assert SECRET not in redact_pipeline(pipeline)
    assert source.pipeline == pipeline  # what GStreamer gets keeps its password


def test_a_pipeline_refused_for_its_sink_names_it_without_the_password() -> None:
    with pytest.raises(SourceError) as raised:
        GStreamerSource(f"rtspsrc location=rtsp://admin:{SECRET}@cam/x ! fakesink")
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "uri"),
    [
        ("auto", f"rtsp://admin:{SECRET}/x@192.168.1.20/stream1"),
        ("auto", f"rtsp://admin:{SECRET}#1@192.168.1.20/stream1"),
        ("auto", f"http://admin:{SECRET}?1@192.168.1.20/video"),
        ("mjpeg", f"http://admin:{SECRET}/x@192.168.1.20/video"),
        ("stream", f"rtsp://admin:{SECRET}/x@192.168.1.20/stream1"),
        ("rtsp", f"rtsp://admin:{SECRET}/x@192.168.1.20/stream1"),
        ("auto", f"admin:{SECRET}@192.168.1.20:554/stream1"),
        ("auto", f"rtsp:/admin:{SECRET}@192.168.1.20/stream1"),
        ("auto", f"rtsp//admin:{SECRET}@192.168.1.20/stream1"),
    ],
)
def test_unparsable_uris_are_refused_without_their_password(kind: str, uri: str) -> None:
    with pytest.raises(SourceError) as raised:
        create_source(SourceSettings(kind=kind, uri=uri))  # type: ignore[arg-type]
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("name", ["pass", "pw", "loginpas", "secret"])
def test_more_query_names_that_carry_camera_passwords_are_hidden(name: str) -> None:
    assert redact_url(f"http://cam/video.cgi?user=admin&{name}={SECRET}&x=1") == (
        f"http://cam/video.cgi?user=admin&{name}=***&x=1"
    )


# `!` is legal unescaped in a URL's user part and common in camera passwords; a quoted value
# may hold spaces: the URL pattern stopped at both and left the password whole.
@pytest.mark.parametrize("secret", ["Secret!1", "pa ss", "a!b c"])
def test_quoted_location_password_is_hidden(secret: str) -> None:
    pipeline = f'rtspsrc location="rtsp://admin:{secret}@192.168.1.20/s" ! decodebin ! appsink'
    source = create_source(SourceSettings(kind="gstreamer", uri=pipeline))
    assert secret not in source.description
    assert secret not in redact_pipeline(pipeline)


def test_unquoted_location_password_with_bang_is_hidden() -> None:
    pipeline = "rtspsrc location=rtsp://admin:Secret!1@192.168.1.20/s ! decodebin ! appsink"
    assert "Secret" not in redact_pipeline(pipeline)
