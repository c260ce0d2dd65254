"""Tracking speed with 0 and 20 MJPEG viewers of the web view, side by side.

Starts a mosquitto and `siamedge run` (builtin model on the CPU, the synthetic clip at 1280x720,
the web view at its defaults: 640 px, 10 fps) as separate processes, starts one track through
the HTTP API and counts the results messages per second on the broker (= frames tracked per
second) while 0 and 20 clients read /stream.mjpeg, in alternating phases whose medians are
compared (other load on the machine then falls on both). The source is unpaced by default
(--source-fps 1000), so tracking runs as fast as the machine allows and any CPU the preview
takes shows in the rate; with --source-fps 30 it shows what a camera would see
(frame rate held, latency). Also prints the service's CPU use and what each viewer received.

    python benchmarks/web_clients.py [--seconds 6] [--rounds 3] [--clients 20] [--source-fps 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from siamedge.config import MqttSettings, SyntheticSettings
from siamedge.messaging.subscriber import Subscriber
from siamedge.sources.synthetic import SyntheticClip

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
CLIP = SyntheticSettings(width=1280, height=720, frames=100_000, seed=0)
"""Slow motion (100k frames per period), so the one track stays on its object all run long."""
START_TIMEOUT_S = 30.0
READ_CHUNK = 256 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Viewer(threading.Thread):
    """One MJPEG client: reads the stream as fast as it comes and counts parts and bytes."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._port = port
        self._done = stop
        self.parts = 0
        self.bytes = 0

    def run(self) -> None:
        with socket.create_connection((HOST, self._port)) as sock:
            sock.sendall(b"GET /stream.mjpeg HTTP/1.0\r\n\r\n")
            sock.settimeout(1.0)
            while not self._done.is_set():
                try:
                    chunk = sock.recv(READ_CHUNK)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                self.bytes += len(chunk)
                self.parts += chunk.count(b"--siamedge-frame\r\n")


@dataclass(frozen=True)
class Phase:
    clients: int
    fps: float
    latency_ms: float
    cpu_percent: float
    parts_per_client_s: float
    kib_per_client_s: float


def measure(
    subscriber: Subscriber, service_pid: int, web_port: int, clients: int, seconds: float
) -> Phase:
    stop = threading.Event()
    viewers = [Viewer(web_port, stop) for _ in range(clients)]
    for viewer in viewers:
        viewer.start()
    time.sleep(1.0)  # viewers connected, encoder running
    while subscriber.get(0.0) is not None:  # drop what came before the window
        pass
    parts_before = [v.parts for v in viewers]
    bytes_before = [v.bytes for v in viewers]
    cpu_before = cpu_seconds(service_pid)
    started = time.monotonic()
    count, latencies = 0, []
    while (now := time.monotonic()) - started < seconds:
        message = subscriber.get(0.2)
        if message is None or message.kind != "results":
            continue
        data = json.loads(message.payload)
        if data["tracks"]:
            count += 1
            latencies.append(data["latency_ms"])
    elapsed = now - started
    cpu = cpu_seconds(service_pid) - cpu_before
    parts = [v.parts - b for v, b in zip(viewers, parts_before, strict=True)]
    sizes = [v.bytes - b for v, b in zip(viewers, bytes_before, strict=True)]
    stop.set()
    for viewer in viewers:
        viewer.join()
    return Phase(
        clients=clients,
        fps=count / elapsed,
        latency_ms=statistics.median(latencies) if latencies else float("nan"),
        cpu_percent=100.0 * cpu / elapsed,
        parts_per_client_s=statistics.mean(parts) / elapsed if parts else 0.0,
        kib_per_client_s=statistics.mean(sizes) / elapsed / 1024 if sizes else 0.0,
    )


def wait_for_http(url: str) -> dict[str, object]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                data: dict[str, object] = json.load(reply)
                if data.get("frame") is not None:
                    return data
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer with a frame in {START_TIMEOUT_S}s")


def start_track(web_port: int) -> None:
    tracks = wait_for_http(f"http://{HOST}:{web_port}/api/tracks")
    frame = int(str(tracks["frame"]))
    box = list(SyntheticClip(CLIP).truth(frame % CLIP.frames).box_xywh)
    request = urllib.request.Request(
        f"http://{HOST}:{web_port}/api/tracks",
        data=json.dumps({"box": box}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        print(f"started {json.load(reply)['track_id']} at {box} (frame {frame})")


def write_configs(folder: Path, mqtt_port: int, web_port: int, source_fps: float) -> Path:
    (folder / "mosquitto.conf").write_text(
        f"listener {mqtt_port} {HOST}\nallow_anonymous true\npersistence false\n"
    )
    config = folder / "siamedge.yaml"
    config.write_text(
        f"""
model: {{path: builtin, providers: [cpu]}}
source:
  uri: synthetic
  fps: {source_fps}
  synthetic: {{width: {CLIP.width}, height: {CLIP.height}, frames: {CLIP.frames}, seed: 0}}
mqtt: {{host: {HOST}, port: {mqtt_port}, client_id: siamedge-bench, status_interval_s: 5}}
web: {{enabled: true, host: {HOST}, port: {web_port}, max_connections: 64, max_streams: 48}}
service: {{log_level: WARNING}}
"""
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="0-viewer/N-viewer phase pairs")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--source-fps", type=float, default=1000.0)
    args = parser.parse_args()

    mqtt_port, web_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        config = write_configs(folder, mqtt_port, web_port, args.source_fps)
        broker = subprocess.Popen(
            [MOSQUITTO, "-c", str(folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        service = subprocess.Popen(
            [sys.executable, "-m", "siamedge.cli", "run", "--config", str(config)], env=env
        )
        subscriber = Subscriber(MqttSettings(host=HOST, port=mqtt_port))
        try:
            subscriber.start()
            if not subscriber.wait_subscribed(START_TIMEOUT_S):
                raise RuntimeError("could not subscribe to the broker")
            start_track(web_port)
            time.sleep(2.0)  # warm up
            order = [0, args.clients] * args.rounds + [0]
            phases = [
                measure(subscriber, service.pid, web_port, clients, args.seconds)
                for clients in order
            ]
        finally:
            subscriber.close()
            service.terminate()
            service.wait(15)
            broker.terminate()
            broker.wait(5)

    print(
        f"\nsiamedge run: builtin model (CPU), synthetic {CLIP.width}x{CLIP.height}, 1 track, "
        f"source fps {args.source_fps:g}, preview 640 px at 10 fps, {os.cpu_count()} cores, "
        f"{args.seconds:g} s per phase"
    )
    print(
        f"{'viewers':>8} {'tracked fps':>12} {'latency ms':>11} {'service CPU':>12} "
        f"{'parts/s each':>13} {'KiB/s each':>11}"
    )
    for phase in phases:
        print(
            f"{phase.clients:>8} {phase.fps:>12.1f} {phase.latency_ms:>11.1f} "
            f"{phase.cpu_percent:>11.0f}% {phase.parts_per_client_s:>13.1f} "
            f"{phase.kib_per_client_s:>11.0f}"
        )
    idle = statistics.median(p.fps for p in phases if p.clients == 0)
    watched = statistics.median(p.fps for p in phases if p.clients)
    print(
        f"median tracked fps: {idle:.1f} with 0 viewers, {watched:.1f} with {args.clients}; "
        f"ratio {watched / idle:.3f}"
    )


if __name__ == "__main__":
    main()
