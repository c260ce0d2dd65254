"""`siamedge watch`: a live table of one instance's tracks from `track/results` and `track/status`.

On a terminal the table is redrawn in place; otherwise each results message prints one plain line
per track. Only reads from the broker: never sends a command.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from siamedge.config import MqttSettings, load_settings, settings_from_mapping
from siamedge.messaging.subscriber import Received, Subscriber

EX_UNAVAILABLE = 69
"""sysexits.h EX_UNAVAILABLE: the broker could not be reached in the time given."""
REDRAW_S = 0.1
"""A terminal is redrawn at most this often (results may come at 30 Hz and more)."""
POLL_S = 0.1
CONNECT_WARNING_S = 5.0
"""Plain output notes on stderr when the broker has not answered for this long."""

_CURSOR_UP_CLEAR = "\x1b[{n}F\x1b[J"
_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"
_COLUMNS = ("TRACK", "STATE", "CENTER", "SIZE", "SCORE", "LATENCY")
_WIDTHS = (12, 9, 16, 15, 6, 10)


@dataclass(frozen=True)
class View:
    """What the table shows: the last results message and the last status message (JSON)."""

    results: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    results_seen: int = 0
    ignored: int = 0


def _num(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _pair(values: Any, digits: int, separator: str) -> str:
    if not isinstance(values, list) or len(values) != 2:
        return "-"
    return separator.join(_num(value, digits) for value in values)


def track_cells(track: dict[str, Any], latency_ms: Any) -> tuple[str, ...]:
    """(track id, state, centre `x, y`, size `w x h`, score, latency `N ms`) of one track."""
    latency = _num(latency_ms, 1)
    return (
        str(track.get("track_id", "?")),
        str(track.get("state", "?")),
        _pair(track.get("center"), 1, ", "),
        _pair(track.get("size"), 1, " x "),
        _num(track.get("score"), 3),
        "-" if latency == "-" else f"{latency} ms",
    )


def plain_lines(results: dict[str, Any]) -> list[str]:
    """One line per track of a results message (`frame N (no tracks)` when it has none)."""
    frame = results.get("frame", "?")
    tracks = results.get("tracks") or []
    if not tracks:
        return [f"frame {frame} (no tracks)"]
    lines = []
    for track in tracks:
        track_id, state, center, size, score, latency = track_cells(
            track, results.get("latency_ms")
        )
        lines.append(
            f"frame {frame} {track_id} {state} center={center.replace(' ', '')} "
            f"size={size.replace(' ', '')} score={score} latency={latency.replace(' ', '')}"
        )
    return lines


def status_line(status: dict[str, Any] | None, connection: str) -> str:
    """`siamedge 0.1.0 online · CPUExecutionProvider · 30.0 fps · 1/4 tracks` or why not."""
    if connection != "subscribed":
        return f"broker: {connection}"
    if status is None:
        return "waiting for the service's status ..."
    version = status.get("version", "?")
    if not status.get("online", False):
        return f"siamedge {version} offline ({status.get('reason', 'no reason given')})"
    parts = [f"siamedge {version} online"]
    if "provider" in status:
        parts.append(str(status["provider"]))
    if "fps" in status:
        parts.append(f"{_num(status['fps'], 1)} fps")
    if "active_tracks" in status:
        parts.append(f"{status['active_tracks']}/{status.get('max_tracks', '?')} tracks")
    return " · ".join(parts)


def table_lines(view: View, connection: str) -> list[str]:
    """The terminal screen: status line, frame line, header and one row per track."""
    lines = [status_line(view.status, connection)]
    results = view.results
    if results is None:
        lines.append("no results yet")
        return lines
    lines.append(
        f"frame {results.get('frame', '?')}  latency {_num(results.get('latency_ms'), 1)} ms"
    )
    lines.append(
        "  ".join(name.ljust(width) for name, width in zip(_COLUMNS, _WIDTHS, strict=True))
    )
    tracks = results.get("tracks") or []
    if not tracks:
        lines.append("(no tracks)")
    for track in tracks:
        cells = track_cells(track, results.get("latency_ms"))
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(cells, _WIDTHS, strict=True))
        )
    return lines


def _decode(payload: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def apply(view: View, message: Received) -> View:
    """The view after one message (acks on the status topic and malformed JSON are ignored)."""
    data = _decode(message.payload)
    if data is None or (message.kind == "status" and "ack" in data):
        return replace(view, ignored=view.ignored + 1)
    if message.kind == "status":
        return replace(view, status=data)
    return replace(view, results=data, results_seen=view.results_seen + 1)


class _Screen:
    """Writes the table in place on a terminal, or plain lines elsewhere."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._drawn = 0
        self._last_draw = 0.0
        if tty:
            out.write(_HIDE_CURSOR)

    def show(self, view: View, connection: str, message: Received | None, force: bool) -> None:
        if not self._tty:
            if message is not None and message.kind == "results" and view.results is not None:
                for line in plain_lines(view.results):
                    self._out.write(line + "\n")
                self._out.flush()
            return
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_S:
            return
        self._last_draw = now
        lines = table_lines(view, connection)
        clear = _CURSOR_UP_CLEAR.format(n=self._drawn) if self._drawn else ""
        self._out.write(clear + "\n".join(lines) + "\n")
        self._out.flush()
        self._drawn = len(lines)

    def close(self) -> None:
        if self._tty:
            self._out.write(_SHOW_CURSOR)
            self._out.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge watch`."""
    parser.add_argument("--config", type=Path, help="YAML configuration whose mqtt section to use")
    parser.add_argument("--host", help="broker host (default: mqtt.host)")
    parser.add_argument("--port", type=int, help="broker port (default: mqtt.port)")
    parser.add_argument("--topic-prefix", help="topic prefix of the instance (mqtt.topic_prefix)")
    parser.add_argument("--count", type=int, help="stop after this many results messages")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--plain", action="store_true", help="plain lines even on a terminal (one per track)"
    )


def mqtt_settings(args: argparse.Namespace) -> MqttSettings:
    """The mqtt section of --config (or the defaults) with --host/--port/--topic-prefix."""
    settings = load_settings(args.config)
    data = settings.model_dump()
    for dest, key in (("host", "host"), ("port", "port"), ("topic_prefix", "topic_prefix")):
        value = getattr(args, dest, None)
        if value is not None:
            data["mqtt"][key] = value
    origin = f"{args.config or 'embedded defaults'} with command-line options"
    return settings_from_mapping(data, origin).mqtt


def watch(
    settings: MqttSettings,
    out: TextIO,
    *,
    tty: bool,
    count: int | None = None,
    seconds: float | None = None,
) -> int:
    """Show results until `count` results messages, `seconds`, or Ctrl-C; the exit status."""
    subscriber = Subscriber(settings)
    screen = _Screen(out, tty)
    deadline = None if seconds is None else time.monotonic() + seconds
    started = time.monotonic()
    view = View()
    warned = False
    interrupted = False
    subscriber.start()
    try:
        screen.show(view, subscriber.state, None, force=True)
        while count is None or view.results_seen < count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            message = subscriber.get(POLL_S)
            if message is not None:
                view = apply(view, message)
            screen.show(view, subscriber.state, message, force=False)
            waited = time.monotonic() - started
            if not warned and subscriber.state != "subscribed" and waited > CONNECT_WARNING_S:
                warned = True
                print(
                    f"siamedge watch: {settings.host}:{settings.port}: {subscriber.state}",
                    file=sys.stderr,
                )
        screen.show(view, subscriber.state, None, force=True)
    except KeyboardInterrupt:
        interrupted = True  # the normal way to leave
    finally:
        screen.close()
        subscriber.close()
    if not interrupted and not subscriber.ever_subscribed:
        print(
            f"siamedge watch: no connection to {settings.host}:{settings.port}: {subscriber.state}",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of `siamedge watch`."""
    settings = mqtt_settings(args)
    tty = sys.stdout.isatty() and not args.plain
    return watch(settings, sys.stdout, tty=tty, count=args.count, seconds=args.seconds)
