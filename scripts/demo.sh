#!/usr/bin/env bash
# The demo: sets up .venv, runs the siamedge daemon on config/demo.yaml (builtin model, synthetic
# clip), starts a local mosquitto on 127.0.0.1:1883 when no broker answers there, sends a
# track/start for the moving object and prints the results as they arrive; then stops cleanly.
# Usage: scripts/demo.sh [SECONDS]   (default 10; 0 = until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"

scripts/setup.sh cpu mosquitto

pids=()
cleanup() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

if .venv/bin/python scripts/demo_client.py --check-broker; then
    echo "demo: using the MQTT broker already listening on 127.0.0.1:1883" >&2
else
    mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
    if [ ! -x "$mosquitto_bin" ]; then
        echo "demo: no broker on 127.0.0.1:1883 and mosquitto is not installed" >&2
        exit 1
    fi
    echo "demo: starting mosquitto on 127.0.0.1:1883" >&2
    conf="$(mktemp)"
    printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n' >"$conf"
    "$mosquitto_bin" -c "$conf" >/dev/null 2>&1 &
    pids+=($!)
fi

echo "demo: starting siamedge run --config config/demo.yaml" >&2
.venv/bin/siamedge run --config config/demo.yaml &
pids+=($!)

echo "demo: live view at http://127.0.0.1:8080/ while the demo runs (scripts/demo.sh 0 keeps it running)" >&2
.venv/bin/python scripts/demo_client.py --seconds "$seconds"
