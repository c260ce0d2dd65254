"""The demo's client (siamedge.client): waits for the daemon, starts a track on the synthetic
object, prints the results.

The start box is the synthetic clip's ground truth for the frame the daemon is on (estimated from
the retained status: its last frame number and time, and the playback rate); each printed line
also shows the IoU of the reported box against the truth of that frame.

    python scripts/demo_client.py [--seconds 10] [--config config/demo.yaml]
    python scripts/demo_client.py --check-broker     # exit 0 when a broker answers
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from siamedge.client import Client, ClientError, ClientTimeoutError, Frame
from siamedge.config import SyntheticSettings, load_settings
from siamedge.sources.synthetic import SyntheticClip

ONLINE_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 2.0
PRINT_EVERY = 5
POLL_S = 0.5


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/demo.yaml"))
    parser.add_argument("--seconds", type=float, default=10.0, help="0: until Ctrl-C")
    parser.add_argument("--check-broker", action="store_true")
    args = parser.parse_args()
    settings = load_settings(args.config)
    client = Client(settings.mqtt)
    try:
        if args.check_broker:
            try:
                client.connect(timeout_s=CHECK_TIMEOUT_S)
            except ClientTimeoutError:
                return 1
            return 0
        return demo(client, settings.source.synthetic, settings.source.fps, args.seconds)
    except ClientError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def demo(client: Client, synthetic: SyntheticSettings, fps: float | None, seconds: float) -> int:
    client.connect(timeout_s=CONNECT_TIMEOUT_S)
    print(f"demo: waiting for siamedge on {client.topics.status} ...", flush=True)
    status = client.wait_online(ONLINE_TIMEOUT_S).report
    print(
        f"demo: siamedge {status['version']} online: {status['model']} on {status['provider']}, "
        f"source {status['source']['description']}",
        flush=True,
    )
    clip = SyntheticClip(synthetic)
    rate = fps or 30.0
    frame_now = status["frame"] + round((time.time() - status["frame_timestamp"]) * rate) + 1
    box = clip.truth(frame_now % len(clip)).box_xywh
    track_id = client.start(box, "demo")
    print(f"demo: started track {track_id!r} on box {list(box)} (acknowledged)", flush=True)

    ious: list[float] = []
    started = time.monotonic()
    try:
        while seconds <= 0 or time.monotonic() - started < seconds:
            frame = client.poll(POLL_S)
            if not isinstance(frame, Frame):
                continue
            for track in frame.tracks:
                if track.track_id != track_id:  # another client's track
                    continue
                truth = clip.truth(frame.frame % len(clip)).box_xywh
                iou = box_iou(track.bbox, truth)
                ious.append(iou)
                if len(ious) % PRINT_EVERY == 1:
                    cx, cy = track.center
                    w, h = track.size
                    score = "-" if track.score is None else f"{track.score:.3f}"
                    print(
                        f"results frame {frame.frame:5d}  {track.track_id} "
                        f"{track.state:8s} centre ({cx:7.1f}, {cy:6.1f})  "
                        f"size ({w:5.1f}, {h:5.1f})  score {score}  "
                        f"IoU vs truth {iou:.2f}  latency {frame.latency_ms} ms",
                        flush=True,
                    )
    except KeyboardInterrupt:
        pass
    client.stop(track_id)  # only ours: others may be tracking too
    if not ious:
        print("demo: no results arrived", file=sys.stderr)
        return 1
    print(f"demo: {len(ious)} results, mean IoU vs ground truth {sum(ious) / len(ious):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
