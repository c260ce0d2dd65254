#!/usr/bin/env bash
# Creates .venv (or $VENV) and installs siamedge with the given extras; installs Debian packages
# when root. Usage: scripts/setup.sh EXTRAS [APT_PACKAGES...]   e.g. scripts/setup.sh cpu,dev mosquitto
set -euo pipefail
cd "$(dirname "$0")/.."

extras="$1"
shift
apt_packages=("$@")
python="${PYTHON:-python3}"
venv="${VENV:-.venv}"

missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        echo "setup: installing Debian packages with sudo: ${missing[*]}" >&2
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: please install these Debian packages first: ${missing[*]}" >&2
        exit 1
    fi
fi

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "setup: siamedge needs Python >= 3.10 ($python is $("$python" --version))" >&2
    exit 1
}
version='import sys; print("%d.%d" % sys.version_info[:2])'
if [ -x "$venv/bin/python" ]; then
    have=$("$venv/bin/python" -c "$version") want=$("$python" -c "$version")
    if [ "$have" != "$want" ]; then
        echo "setup: $venv is Python $have, not $want: making it again" >&2
        rm -rf "$venv"
    fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
if [[ ",$extras," == *",export,"* ]]; then
    # exactly this spec: other torch specs pull a multi-GB CUDA build
    "$venv/bin/python" -m pip install -q "torch==2.13.0"
fi
"$venv/bin/python" -m pip install -q -e ".[$extras]"
