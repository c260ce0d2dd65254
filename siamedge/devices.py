"""`siamedge sources`: the /dev/video* cameras of this machine and the formats each delivers.

Prints what siamedge.sources.v4l2 finds; never opens a camera for frames, never edits settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from siamedge.errors import SourceError
from siamedge.sources.camera import DEV_DIR
from siamedge.sources.v4l2 import V4L2_CTL, ListingMethod, device_report, list_devices

AUTO = "auto"
NEXT_STEP = (
    "set source.uri to the device and source.fourcc, width, height and fps to one of its modes; "
    "`siamedge run --print-pipeline` and the status topic's source.mode show what it delivers"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--probe, --dev-dir."""
    parser.add_argument(
        "--probe",
        choices=[AUTO, V4L2_CTL, "opencv"],
        default=AUTO,
        help=f"how to list the formats ({AUTO}: {V4L2_CTL} when installed, else OpenCV)",
    )
    parser.add_argument(
        "--dev-dir", type=Path, default=DEV_DIR, help=f"where the video* nodes are ({DEV_DIR})"
    )


def run(args: argparse.Namespace) -> int:
    """Print every device's formats; no device is not an error (exit 0 with a message)."""
    method: ListingMethod | None = None if args.probe == AUTO else args.probe
    if not args.dev_dir.is_dir():
        raise SourceError(f"--dev-dir {args.dev_dir} is not a folder")
    devices = list_devices(args.dev_dir, method)
    if not devices:
        print(f"no {args.dev_dir / 'video*'} devices: no camera is connected (or visible here)")
        return 0
    for device in devices:
        print("\n".join(device_report(device)))
    print(NEXT_STEP)
    return 0
