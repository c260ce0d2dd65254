"""Capture -> subscriber latency and results/s through a real broker, 1 and 4 tracks, side by side.

Starts its own mosquitto on a free loopback port and the daemon (`siamedge run`, synthetic
1280x720 clip, builtin model, CPU) as a subprocess; a subscriber starts 1 or 4 tracks on the
object and records, for every results message, receive time - capture timestamp. Runs with the
source paced like a 30 fps camera and unpaced (as fast as the pipeline goes).

    python benchmarks/latency.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from siamedge.config import SyntheticSettings
from siamedge.messaging.connection import stop_paho
from siamedge.sources.synthetic import SyntheticClip

CLIP = SyntheticSettings(width=1280, height=720, frames=300, seed=0)
UNPACED_FPS = 1000.0
MS = 1000.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Subscriber:
    """Collects (receive time, payload) of results and the latest status."""

    def __init__(self, port: int) -> None:
        self.results: list[tuple[float, dict[str, Any]]] = []
        self.status: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("track/results", 0), ("track/status", 1)])
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        received = time.time()
        payload = json.loads(message.payload)
        with self.lock:
            if message.topic == "track/results":
                self.results.append((received, payload))
            elif "model" in payload:
                self.status = payload

    def wait_status(self, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.status.get("frame") is not None:
                    return self.status
            time.sleep(0.05)
        raise TimeoutError("the daemon did not report frames")

    def close(self) -> None:
        stop_paho(self.client)


def run_case(workdir: Path, port: int, tracks: int, fps: float, seconds: float) -> dict[str, float]:
    config = {
        "model": {"path": "builtin", "providers": ["cpu"]},
        "source": {
            "uri": "synthetic",
            "fps": fps,
            "synthetic": {"width": CLIP.width, "height": CLIP.height, "frames": CLIP.frames},
        },
        "mqtt": {"port": port, "status_interval_s": 0.5},
        "service": {"log_level": "WARNING"},
    }
    config_path = workdir / f"bench-{tracks}-{fps}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "siamedge.cli", "run", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subscriber = Subscriber(port)
    try:
        status = subscriber.wait_status()
        clip = SyntheticClip(CLIP)
        frame = status["frame"] + round((time.time() - status["frame_timestamp"]) * min(fps, 30))
        box = list(clip.truth((frame + 1) % len(clip)).box_xywh)
        for index in range(tracks):
            command = {"box": box, "track_id": f"bench{index}"}
            subscriber.client.publish("track/start", json.dumps(command), qos=1)
        time.sleep(1.0)  # let the tracks start and the pipeline settle
        with subscriber.lock:
            subscriber.results.clear()
        time.sleep(seconds)
        with subscriber.lock:
            results = [(t, p) for t, p in subscriber.results if len(p["tracks"]) == tracks]
        subscriber.client.publish("track/stop", json.dumps({"all": True}), qos=1)
    finally:
        subscriber.close()
        daemon.terminate()
        daemon.wait(20)
    latencies = sorted((received - payload["timestamp"]) * MS for received, payload in results)
    return {
        "results_per_s": len(results) / seconds,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        port = free_port()
        (workdir / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        broker = subprocess.Popen(
            [mosquitto, "-c", str(workdir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        try:
            rows = []
            for fps, label in ((30.0, "30 fps camera"), (UNPACED_FPS, "unpaced")):
                for tracks in (1, 4):
                    figures = run_case(workdir, port, tracks, fps, args.seconds)
                    rows.append((label, tracks, figures))
        finally:
            broker.terminate()
            broker.wait()
    print("capture -> subscriber through mosquitto, 1280x720 synthetic, builtin model, CPU")
    print(f"{'source':>14} | {'tracks':>6} | {'results/s':>9} | {'p50 ms':>7} | {'p99 ms':>7}")
    print("-" * 56)
    for label, tracks, figures in rows:
        print(
            f"{label:>14} | {tracks:>6} | {figures['results_per_s']:9.1f} | "
            f"{figures['p50']:7.1f} | {figures['p99']:7.1f}"
        )


if __name__ == "__main__":
    main()
