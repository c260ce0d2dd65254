"""`siamedge watch`: a live table of one instance's tracks from `track/results` and `track/status`,
and the tracks it drops (`track/errors`).

On a terminal the table is redrawn in place; otherwise each results message prints one plain line
per track. Only reads from the broker: never sends a command.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from siamedge.arguments import port_number, positive_int, positive_seconds
from siamedge.client import Client, Event, Frame, Status, Track, TrackDropped
from siamedge.config import MqttSettings, load_settings, settings_from_mapping

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
    """What the table shows: the last results message, the last status report and the last
    track the daemon dropped."""

    results: Frame | None = None
    status: Status | None = None
    results_seen: int = 0
    dropped: TrackDropped | None = None


def _num(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _pair(values: tuple[float, float], digits: int, separator: str) -> str:
    return separator.join(_num(value, digits) for value in values)


def track_cells(track: Track, latency_ms: float) -> tuple[str, ...]:
    """(track id, state, centre `x, y`, size `w x h`, score, latency `N ms`) of one track."""
    latency = _num(latency_ms, 1)
    return (
        track.track_id,
        track.state,
        _pair(track.center, 1, ", "),
        _pair(track.size, 1, " x "),
        _num(track.score, 3),
        "-" if latency == "-" else f"{latency} ms",
    )


def plain_lines(results: Frame) -> list[str]:
    """One line per track of a results message (`frame N (no tracks)` when it has none)."""
    frame = results.frame
    if not results.tracks:
        return [f"frame {frame} (no tracks)"]
    lines = []
    for track in results.tracks:
        track_id, state, center, size, score, latency = track_cells(track, results.latency_ms)
        lines.append(
            f"frame {frame} {track_id} {state} center={center.replace(' ', '')} "
            f"size={size.replace(' ', '')} score={score} latency={latency.replace(' ', '')}"
        )
    return lines


def status_line(status: Status | None, connection: str) -> str:
    """`siamedge 0.1.0 online · CPUExecutionProvider · 30.0 fps · 1/4 tracks` or why not."""
    if connection != "subscribed":
        return f"broker: {connection}"
    if status is None:
        return "waiting for the service's status ..."
    version = status.version or "?"
    if not status.online:
        return f"siamedge {version} offline ({status.report.get('reason', 'no reason given')})"
    report = status.report
    parts = [f"siamedge {version} online"]
    if "provider" in report:
        parts.append(str(report["provider"]))
    if "fps" in report:
        parts.append(f"{_num(report['fps'], 1)} fps")
    if "active_tracks" in report:
        parts.append(f"{report['active_tracks']}/{report.get('max_tracks', '?')} tracks")
    return " · ".join(parts)


def table_lines(view: View, connection: str) -> list[str]:
    """The terminal screen: status line, frame line, header and one row per track."""
    lines = [status_line(view.status, connection)]
    if view.dropped is not None:
        lines.append(view.dropped.reason)
    results = view.results
    if results is None:
        lines.append("no results yet")
        return lines
    lines.append(f"frame {results.frame}  latency {_num(results.latency_ms, 1)} ms")
    lines.append(
        "  ".join(name.ljust(width) for name, width in zip(_COLUMNS, _WIDTHS, strict=True))
    )
    if not results.tracks:
        lines.append("(no tracks)")
    for track in results.tracks:
        cells = track_cells(track, results.latency_ms)
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(cells, _WIDTHS, strict=True))
        )
    return lines


def apply(view: View, event: Event) -> View:
    """The view after one results frame, status report or dropped track."""
    if isinstance(event, Status):
        return replace(view, status=event)
    if isinstance(event, TrackDropped):
        return replace(view, dropped=event)
    return replace(view, results=event, results_seen=view.results_seen + 1)


def screen_rows(lines: list[str], columns: int) -> int:
    """The terminal rows `lines` take, a line longer than `columns` wrapping onto more."""
    width = max(columns, 1)
    return sum(max(1, math.ceil(len(line) / width)) for line in lines)


class _Screen:
    """Writes the table in place on a terminal, or plain lines elsewhere."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._drawn = 0
        self._last_draw = 0.0
        if tty:
            out.write(_HIDE_CURSOR)

    def show(self, view: View, connection: str, event: Event | None, force: bool) -> None:
        if not self._tty:
            if isinstance(event, Frame) and view.results is not None:
                for line in plain_lines(view.results):
                    self._out.write(line + "\n")
                self._out.flush()
            elif isinstance(event, TrackDropped):
                self._out.write(event.reason + "\n")
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
        self._drawn = screen_rows(lines, shutil.get_terminal_size().columns)

    def close(self) -> None:
        if self._tty:
            self._out.write(_SHOW_CURSOR)
            self._out.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge watch`."""
    parser.add_argument("--config", type=Path, help="YAML configuration whose mqtt section to use")
    parser.add_argument("--host", help="broker host (default: mqtt.host)")
    parser.add_argument("--port", type=port_number, help="broker port (default: mqtt.port)")
    parser.add_argument("--topic-prefix", help="topic prefix of the instance (mqtt.topic_prefix)")
    parser.add_argument(
        "--count", type=positive_int, help="stop after this many results messages (at least 1)"
    )
    parser.add_argument(
        "--seconds", type=positive_seconds, help="stop after this many seconds (above 0)"
    )
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
    client = Client(settings)
    screen = _Screen(out, tty)
    deadline = None if seconds is None else time.monotonic() + seconds
    started = time.monotonic()
    view = View()
    warned = False
    interrupted = False
    client.connect(timeout_s=None)
    try:
        screen.show(view, client.state, None, force=True)
        while count is None or view.results_seen < count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            event = client.poll(POLL_S)
            if event is not None:
                view = apply(view, event)
            screen.show(view, client.state, event, force=False)
            waited = time.monotonic() - started
            if not warned and client.state != "subscribed" and waited > CONNECT_WARNING_S:
                warned = True
                print(
                    f"siamedge watch: {settings.host}:{settings.port}: {client.state}",
                    file=sys.stderr,
                )
        screen.show(view, client.state, None, force=True)
    except KeyboardInterrupt:
        interrupted = True  # the normal way to leave
    finally:
        screen.close()
        last_state = client.state  # before close(), which makes it `closed`
        client.close()
    if not interrupted and not client.ever_connected:
        print(
            f"siamedge watch: no connection to {settings.host}:{settings.port}: {last_state}",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of `siamedge watch`."""
    settings = mqtt_settings(args)
    tty = sys.stdout.isatty() and not args.plain
    return watch(settings, sys.stdout, tty=tty, count=args.count, seconds=args.seconds)
