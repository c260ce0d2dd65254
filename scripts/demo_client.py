"""The demo's MQTT client: waits for the daemon, starts a track on the synthetic object, prints.

The start box is the synthetic clip's ground truth for the frame the daemon is on (estimated from
the retained status: its last frame number and time, and the playback rate); each printed line
also shows the IoU of the reported box against the truth of that frame.

    python scripts/demo_client.py [--seconds 10] [--config config/demo.yaml]
    python scripts/demo_client.py --check-broker     # exit 0 when a broker answers
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from siamedge.config import load_settings
from siamedge.sources.synthetic import SyntheticClip

ONLINE_TIMEOUT_S = 120.0
PRINT_EVERY = 5


def box_iou(a: list[float], b: tuple[float, ...]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def connect(host: str, port: int, timeout_s: float) -> tuple[mqtt.Client, queue.Queue[Any]]:
    inbox: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, message: inbox.put(message)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no MQTT broker answered on {host}:{port}")
        time.sleep(0.05)
    return client, inbox


def check_broker(host: str, port: int) -> int:
    try:
        client, _ = connect(host, port, timeout_s=2.0)
    except (OSError, TimeoutError):
        return 1
    client.disconnect()
    client.loop_stop()
    return 0


def wait_online(inbox: queue.Queue[Any], topic: str) -> dict[str, Any]:
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            message = inbox.get(timeout=1.0)
        except queue.Empty:
            continue
        if message.topic != topic:
            continue
        status: dict[str, Any] = json.loads(message.payload)
        if status.get("online") and status.get("frame") is not None:
            return status
    raise TimeoutError("the daemon did not come online with frames")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/demo.yaml"))
    parser.add_argument("--seconds", type=float, default=10.0, help="0: until Ctrl-C")
    parser.add_argument("--check-broker", action="store_true")
    args = parser.parse_args()
    settings = load_settings(args.config)
    host, port, prefix = settings.mqtt.host, settings.mqtt.port, settings.mqtt.topic_prefix
    if args.check_broker:
        return check_broker(host, port)

    client, inbox = connect(host, port, timeout_s=10.0)
    topics = {
        name: f"{prefix}track/{name}" for name in ("start", "stop", "results", "status", "errors")
    }
    for name in ("results", "status", "errors"):
        client.subscribe(topics[name], qos=1)
    print(f"demo: waiting for siamedge on {host}:{port} ...", flush=True)
    status = wait_online(inbox, topics["status"])
    print(
        f"demo: siamedge {status['version']} online: {status['model']} on {status['provider']}, "
        f"source {status['source']['description']}",
        flush=True,
    )

    clip = SyntheticClip(settings.source.synthetic)
    fps = settings.source.fps or 30.0
    frame_now = status["frame"] + round((time.time() - status["frame_timestamp"]) * fps) + 1
    box = clip.truth(frame_now % len(clip)).box_xywh
    start = {"box": list(box), "track_id": "demo", "request_id": "demo-start"}
    client.publish(topics["start"], json.dumps(start), qos=1)
    print(f"demo: published {topics['start']} {json.dumps(start)}", flush=True)

    ious: list[float] = []
    started = time.monotonic()
    try:
        while args.seconds <= 0 or time.monotonic() - started < args.seconds:
            try:
                message = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            payload = json.loads(message.payload)
            if message.topic == topics["errors"]:
                print(f"demo: error: {payload['reason']}", flush=True)
            elif message.topic == topics["status"] and "ack" in payload:
                print(f"demo: ack {payload}", flush=True)
            elif message.topic == topics["results"]:
                for track in payload["tracks"]:
                    truth = clip.truth(payload["frame"] % len(clip)).box_xywh
                    iou = box_iou(track["bbox"], truth)
                    ious.append(iou)
                    if len(ious) % PRINT_EVERY == 1:
                        cx, cy = track["center"]
                        w, h = track["size"]
                        print(
                            f"results frame {payload['frame']:5d}  {track['track_id']} "
                            f"{track['state']:8s} centre ({cx:7.1f}, {cy:6.1f})  "
                            f"size ({w:5.1f}, {h:5.1f})  "
                            f"score {track['score'] if track['score'] is not None else '-'}  "
                            f"IoU vs truth {iou:.2f}  latency {payload['latency_ms']} ms",
                            flush=True,
                        )
    except KeyboardInterrupt:
        pass
    client.publish(topics["stop"], json.dumps({"all": True}), qos=1).wait_for_publish(2.0)
    client.disconnect()
    client.loop_stop()
    if not ious:
        print("demo: no results arrived", file=sys.stderr)
        return 1
    print(f"demo: {len(ious)} results, mean IoU vs ground truth {sum(ious) / len(ious):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
