#!/usr/bin/env bash
# Sets up everything the tests need (Debian packages, .venv with all extras) and runs
# lint, type check and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the web view's browser test (Playwright drives Debian's Chromium; no browser
# downloads); fonts so it renders text.
scripts/setup.sh cpu,dev,export,systemd \
    mosquitto libsystemd-dev pkg-config gcc systemd chromium fonts-dejavu-core

echo "== ruff" >&2
.venv/bin/ruff check siamedge tests benchmarks scripts
.venv/bin/ruff format --check siamedge tests benchmarks scripts
echo "== mypy --strict" >&2
.venv/bin/mypy --strict siamedge
echo "== pytest" >&2
.venv/bin/python -m pytest "$@"
