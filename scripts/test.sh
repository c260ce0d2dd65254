#!/usr/bin/env bash
# Sets up everything the tests need (Debian packages, .venv with all extras) and runs
# lint, type check and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the web view's browser test (Playwright drives Debian's Chromium; no browser
# downloads); fonts so it renders text. GStreamer, its RTSP server (through PyGObject) and
# Debian's OpenCV (built with GStreamer, run under /usr/bin/python3): the live-source tests.
# iproute2 (ip, tc): the network fault tests. v4l-utils: `siamedge sources`.
scripts/setup.sh cpu,dev,export,systemd \
    mosquitto libsystemd-dev pkg-config gcc systemd chromium fonts-dejavu-core \
    python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
    gstreamer1.0-libav python3-opencv iproute2 v4l-utils

echo "== ruff" >&2
.venv/bin/ruff check siamedge tests benchmarks scripts
.venv/bin/ruff format --check siamedge tests benchmarks scripts
echo "== mypy --strict" >&2
.venv/bin/mypy --strict siamedge
echo "== pytest" >&2
.venv/bin/python -m pytest "$@"
