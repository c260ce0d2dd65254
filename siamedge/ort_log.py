"""onnxruntime's own output (its C++ log on fd 2, its Python fallback prints) through `logging`.

Never imports onnxruntime; only redirects file descriptor 2 and sys.stdout while a block runs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("siamedge.onnxruntime")
T = TypeVar("T")

SEVERITY_BY_NAME: Mapping[str, int] = {"verbose": 0, "info": 1, "warning": 2, "error": 3}
"""onnxruntime's severity numbers (SessionOptions.log_severity_level) by config name."""

QUIET_RUN_SEVERITY = 4
"""RunOptions.log_severity_level of the runs RunCapture does not capture (fatal only): a failing
run prints its error line in colour on stderr, and the exception it raises says the same."""

LEVEL_BY_PREFIX: Mapping[str, int] = {
    "V": logging.DEBUG,
    "I": logging.INFO,
    "W": logging.WARNING,
    "E": logging.ERROR,
    "F": logging.CRITICAL,
}

# onnxruntime's ostream sink: [colour] timestamp " [" severity ":" category ":" logger id ", "
# file ":" line " " function "] " message [colour end] "\n"; the message itself may end in "\n"
# (then the colour end stands alone on the next line).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RECORD = re.compile(
    r"^(?P<colour>\x1b\[[0-9;]*m)?"
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? "
    r"\[(?P<severity>[VIWEF]):(?P<category>[^:\]]*):(?P<logger>[^\]]*?), "
    r"(?P<location>[^\s\]]+:\d+ [^\]]*)\] (?P<message>.*)$"
)
_COLOUR_END = "\x1b[m"

# InferenceSession.__init__ (creation) and Session.run (run time) print these when they fall
# back to other providers on their own.
_PYTHON_FALLBACK = re.compile(
    r"(?:\*+ EP Error \*+\n)?"
    r"EP Error:? (?P<error>.*?)\s*(?:when )?using (?P<requested>\[[^\]\n]*\])\n"
    r"Falling back to (?P<fallback>\[[^\]\n]*\]) and retrying\.\n"
    r"(?:\*{8,}\n)?",
    re.DOTALL,
)

# Lines that say a provider could not start; providers.py turns them into one warning per
# provider, so they are logged at DEBUG here.
_PROVIDER_START_MARKERS = (
    re.compile(r"Failed to load library \S*libonnxruntime_providers_\w+"),
    re.compile(r"Failed to create \w+ExecutionProvider"),
    re.compile(r"Please install TensorRT libraries"),
    # onnxruntime 1.29+ says this on every CUDA session it creates, started or not.
    re.compile(r"No registered plugin EP device found for '\w+ExecutionProvider'"),
    # The session refused graph capture (model.cuda_graph, trt_cuda_graph); providers.py
    # retries without it.
    re.compile(r"cannot use the graph capture feature|cannot use the CUDA Graph feature"),
)


@dataclass(frozen=True)
class _Repeated:
    """A message said once per node, logged as one line with a count, at most at most_level."""

    name: str
    pattern: re.Pattern[str]
    most_level: int = logging.CRITICAL

    def key(self, line: OrtLine) -> str:
        """What its lines are counted and reported under (one kind, one severity)."""
        return f"{line.severity}:{self.name}"


# cuDNN's come once per convolution. onnxruntime 1.17 warns once per constant it folded at load
# and then found unused (52 lines for the builtin model on every start, whose file holds no
# initializer at all); later versions say nothing, so that one is logged at DEBUG.
_COLLAPSE = (
    _Repeated("cudnn-fallback", re.compile(r"running in Fallback mode")),
    _Repeated("cudnn-no-plan", re.compile(r"No execution plans support the graph")),
    _Repeated("cudnn-fe-failure", re.compile(r"CUDNN_FE failure \d+")),
    _Repeated(
        "unused-initializer",
        re.compile(r"^Removing initializer '.*'\. It is not used by any node"),
        logging.DEBUG,
    ),
)

_capture_lock = threading.RLock()


@dataclass(frozen=True)
class OrtLine:
    """One line of onnxruntime's log: severity prefix (V, I, W, E, F), source location, text."""

    severity: str
    location: str
    message: str

    @property
    def level(self) -> int:
        """The `logging` level it is passed on at."""
        return LEVEL_BY_PREFIX[self.severity]

    @property
    def about_provider_start(self) -> bool:
        """Whether it says that an execution provider could not start."""
        return any(marker.search(self.message) for marker in _PROVIDER_START_MARKERS)


@dataclass(frozen=True)
class PythonFallback:
    """onnxruntime's Python code fell back to other providers: its error and both lists."""

    error: str
    requested: str
    fallback: str


@dataclass
class CapturedOutput:
    """What onnxruntime wrote while a `captured()` block ran (filled in when the block ends)."""

    lines: list[OrtLine] = field(default_factory=list)
    """Every onnxruntime log line, in order, before collapsing."""
    fallbacks: list[PythonFallback] = field(default_factory=list)
    """onnxruntime's own Python fallbacks (their printed blocks never reach stdout)."""

    def provider_problem(self, provider: str) -> str | None:
        """Why `provider` (e.g. "TensorrtExecutionProvider") did not start, from the output.

        The missing shared library when onnxruntime names one, else onnxruntime's reason;
        None when the output says nothing about it.
        """
        library = _provider_library(provider)
        for line in self.lines:
            found = re.search(
                r"Failed to load library (?P<path>\S+) with error: (?P<error>.*)", line.message
            )
            if found and library and os.path.basename(found["path"]) == library:
                return _library_problem(found["error"])
        for line in self.lines:
            created = re.search(
                rf"Failed to create {provider}\.\s*(?P<why>.*?)\.?\s*(?:Please\b.*)?$",
                line.message,
            )
            if created and created["why"]:
                return created["why"].replace("Require ", "requires ", 1)
        for fallback in self.fallbacks:
            if provider in fallback.requested and provider not in fallback.fallback:
                return short_ort_error(fallback.error)
        return None


def short_ort_error(text: str) -> str:
    """onnxruntime's error text without its source path and C++ signature prefix, one line."""
    lines = [line.strip() for line in _ANSI.sub("", text).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    # "/onnxruntime_src/.../file.cc:729 void ns::Function(Args&) The message"
    prefix = re.match(r"^\S+\.(?:cc|cpp|h):\d+ (?:[^()]*\([^)]*\)(?: const)? )?", first)
    if prefix:
        first = first[prefix.end() :]
    failure = re.search(r"\[ONNXRuntimeError\] : \d+ : \w+ : (.*)$", first)
    return failure[1] if failure else first


def severity(name: str) -> int:
    """onnxruntime's severity number for a config name (error, warning, info, verbose)."""
    return SEVERITY_BY_NAME[name]


def apply_severity(ort: Any, options: Any, name: str) -> None:
    """Set the session's and onnxruntime's default logger severity (the default logger writes
    the provider-library messages)."""
    level = severity(name)
    options.log_severity_level = level
    ort.set_default_logger_severity(level)


@contextlib.contextmanager
def captured(reported: set[str] | None = None) -> Iterator[CapturedOutput]:
    """Route what onnxruntime writes during the block through the `siamedge.onnxruntime` logger.

    fd 2 goes to a temporary file and sys.stdout to a buffer while the block runs; afterwards
    onnxruntime's log lines are logged one each (per-node repeats collapsed to one line
    with a count, provider-start failures at DEBUG: providers.py reports those), its Python
    fallback blocks are parsed, and everything else (other threads' log lines, other
    libraries' output) is written to the real stderr / stdout unchanged and in order. fd 2 and
    sys.stdout are restored however the block ends. Blocks in several threads run one at a
    time (fd 2 is one per process); nested blocks in one thread work.

    reported: the repeated (cuDNN) messages already logged by earlier blocks of the same
    caller; those come out at DEBUG, the others at their level and are added to it.
    """
    output = CapturedOutput()
    with _capture_lock:
        _flush(sys.stderr)
        _flush(sys.stdout)
        try:
            saved_fd = os.dup(2)
        except OSError:  # no fd 2 at all: nothing to capture
            yield output
            return
        with tempfile.TemporaryFile() as sink:
            saved_stdout = sys.stdout
            buffer = io.StringIO()
            try:
                os.dup2(sink.fileno(), 2)
                sys.stdout = buffer
                yield output
            finally:
                sys.stdout = saved_stdout
                _flush(sys.stderr)
                os.dup2(saved_fd, 2)
                os.close(saved_fd)
                sink.seek(0)
                written = sink.read().decode("utf-8", errors="replace")
                _route(written, buffer.getvalue(), output, reported)


class RunCapture:
    """Keeps onnxruntime's run-time output of one session owner off stderr, cheaply.

    The first RUNS_WATCHED runs of each key (a session and batch size) go through captured(), and
    every run of a key for which one of them printed repeated (cuDNN) messages, or whose last
    watched run printed anything (a session warning it gives on every run, e.g. an output of
    another shape than declared): the CUDA provider retries a failing cuDNN plan now and then on
    some float16 models (on an H200 every frame, or three lines when a new clip starts), not
    only on its first run. Other keys run uncaptured (a captured block costs about 65 us here),
    and should then run with a run log severity of QUIET_RUN_SEVERITY. Each kind of repeated
    message, and each line said again, is logged once at its level, then at DEBUG.
    """

    RUNS_WATCHED = 2

    def __init__(self) -> None:
        self._runs: dict[Hashable, int] = {}
        self._noisy: set[Hashable] = set()
        self._reported: set[str] = set()

    def run(self, key: Hashable, call: Callable[[bool], T]) -> T:
        """call(captured): captured while its key is watched or noisy; call(False) means
        onnxruntime's output goes straight to stderr, so the run should be quiet."""
        runs = self._runs.get(key, 0)
        if runs >= self.RUNS_WATCHED and key not in self._noisy:
            return call(False)
        self._runs[key] = runs + 1
        with captured(self._reported) as output:
            result = call(True)
        last_watched = runs + 1 == self.RUNS_WATCHED
        if any(_collapse_key(line) for line in output.lines) or (last_watched and output.lines):
            self._noisy.add(key)
        return result

    def is_noisy(self, key: Hashable) -> bool:
        """Whether the key's runs stay captured (a watched run printed repeats)."""
        return key in self._noisy


def _route(
    stderr_text: str, stdout_text: str, output: CapturedOutput, reported: set[str] | None
) -> None:
    events = _parse_stderr(stderr_text)
    output.lines.extend(event for event in events if isinstance(event, OrtLine))
    _emit(events, reported)
    rest = stdout_text
    for found in _PYTHON_FALLBACK.finditer(stdout_text):
        fallback = PythonFallback(found["error"].strip(), found["requested"], found["fallback"])
        output.fallbacks.append(fallback)
        log.debug(
            "onnxruntime fell back from %s to %s: %s",
            fallback.requested,
            fallback.fallback,
            short_ort_error(fallback.error),
        )
        rest = rest.replace(found[0], "", 1)
    if rest:
        sys.stdout.write(rest)
        sys.stdout.flush()


def _parse_stderr(text: str) -> list[OrtLine | str]:
    """onnxruntime lines as OrtLine, everything else as text chunks, in order."""
    events: list[OrtLine | str] = []
    lines = text.splitlines(keepends=True)
    index = 0
    while index < len(lines):
        raw = lines[index]
        index += 1
        found = _RECORD.match(raw.rstrip("\n"))
        if not found:
            _append_text(events, raw)
            continue
        message = found["message"]
        if found["colour"] and _COLOUR_END not in message:
            # A message ending in a newline: the colour end closes it on a later line.
            parts = [message]
            while index < len(lines):
                continuation = lines[index].rstrip("\n")
                index += 1
                if _COLOUR_END in continuation:
                    parts.append(continuation.split(_COLOUR_END, 1)[0])
                    break
                parts.append(continuation)
            message = "\n".join(part for part in parts if part)
        message = _ANSI.sub("", message).strip()
        events.append(OrtLine(found["severity"], found["location"], message))
    return events


def _append_text(events: list[OrtLine | str], text: str) -> None:
    if events and isinstance(events[-1], str):
        events[-1] += text
    else:
        events.append(text)


def _emit(events: list[OrtLine | str], reported: set[str] | None) -> None:
    counts: dict[str, int] = {}
    for event in events:
        if isinstance(event, OrtLine) and (key := _collapse_key(event)):
            counts[key] = counts.get(key, 0) + 1
    seen: set[str] = set()
    for event in events:
        if isinstance(event, str):
            _write_fd2(event)
            continue
        kind = _repeated(event)
        if kind is not None:
            key = kind.key(event)
            if key in seen:
                continue
            seen.add(key)
            level = min(event.level, kind.most_level)
            if reported is not None:
                level = logging.DEBUG if key in reported else level
                reported.add(key)
            repeats = f" ({counts[key]} such lines)" if counts[key] > 1 else ""
            log.log(level, "%s [%s]%s", event.message, event.location, repeats)
            continue
        level = logging.DEBUG if event.about_provider_start else event.level
        if reported is not None:  # a line a session repeats on every run: logged once
            said = f"{event.severity}:{event.location}:{event.message}"
            level = logging.DEBUG if said in reported else level
            reported.add(said)
        log.log(level, "%s [%s]", event.message, event.location)


def _repeated(line: OrtLine) -> _Repeated | None:
    return next((kind for kind in _COLLAPSE if kind.pattern.search(line.message)), None)


def _collapse_key(line: OrtLine) -> str | None:
    kind = _repeated(line)
    return None if kind is None else kind.key(line)


def _provider_library(provider: str) -> str | None:
    short = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda"}.get(provider)
    return f"libonnxruntime_providers_{short}.so" if short else None


def _library_problem(error: str) -> str:
    missing = re.match(r"(?P<library>\S+): cannot open shared object file", error)
    if missing:
        return f"missing library {missing['library']}"
    return error.strip()


def _write_fd2(text: str) -> None:
    data = text.encode("utf-8", errors="replace")
    while data:
        try:
            written = os.write(2, data)
        except OSError:
            return
        data = data[written:]


def _flush(stream: Any) -> None:
    with contextlib.suppress(Exception):
        stream.flush()
