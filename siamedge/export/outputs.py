"""The files an export writes: checked before the export starts, then written all or none.

Never writes over the checkpoint, and never leaves half an export (or a folder it made) behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from siamedge.errors import ModelError

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class OutputFile:
    """A file the export writes: what it is, in words for messages ("the model"), and where."""

    what: str
    path: Path

    def error(self, problem: str) -> ModelError:
        """The error that this file cannot be written, and why."""
        return ModelError(f"cannot write {self.what} to {self.path}: {problem}")


def check_outputs(checkpoint: Path, outputs: Sequence[OutputFile]) -> None:
    """ModelError, before any work, when an output file is the checkpoint, a directory or
    something else that is not a file, or lies where no file can be created."""
    for output in outputs:
        problem = _problem(output.path, checkpoint)
        if problem is not None:
            raise output.error(problem)


def _problem(path: Path, checkpoint: Path) -> str | None:
    if _same_file(path, checkpoint):
        return f"it is the checkpoint {checkpoint}; choose another output file"
    if path.is_dir():
        return "it is a directory"
    if path.exists() and not path.is_file():
        return "it is not a regular file"
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        return f"{folder} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"no permission to write in {folder}"
    return None


def _same_file(a: Path, b: Path) -> bool:
    """a and b name one file: through symlinks, hard links and other spellings of the path."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _nearest_existing(folder: Path) -> Path:
    """The folder itself if it exists, else its nearest existing ancestor."""
    return next(path for path in (folder, *folder.parents) if path.exists())


def write_all(files: Sequence[tuple[OutputFile, Callable[[], bytes]]]) -> list[int]:
    """Write every file or none; returns their sizes in bytes.

    Each file's bytes (asked for one file at a time) go to a temporary file beside it; only when
    all are written are they moved into place, the first file last. On failure the temporary
    files, the files that did not exist before and the folders made for them are removed.
    """
    made = _make_folders(sorted({output.path.parent for output, _ in files}))
    written: list[tuple[Path, OutputFile]] = []
    try:
        for output, content in files:
            written.append((_write_partial(output, content), output))
        _move_into_place(written[::-1])
    except BaseException:
        for partial, _ in written:
            partial.unlink(missing_ok=True)
        _remove_empty(made)
        raise
    return [output.path.stat().st_size for output, _ in files]


def _make_folders(folders: Sequence[Path]) -> list[Path]:
    """Create the missing folders; returns those made, parents first."""
    made: list[Path] = []
    try:
        for folder in folders:
            missing = [path for path in (folder, *folder.parents) if not path.exists()]
            for path in reversed(missing):
                path.mkdir()
                made.append(path)
    except OSError as exc:
        _remove_empty(made)
        raise ModelError(f"cannot create the folder {exc.filename}: {exc.strerror}") from None
    return made


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders, children first, where they are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):  # not empty: someone else put a file there
            folder.rmdir()


def _write_partial(output: OutputFile, content: Callable[[], bytes]) -> Path:
    """The file's bytes in a hidden temporary file beside it (made with the usual umask
    permissions, unlike tempfile's 0600); the process id keeps concurrent exports apart."""
    partial = output.path.with_name(f".{output.path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        partial.write_bytes(content())
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise output.error(exc.strerror or str(exc)) from None
    except BaseException:  # Ctrl-C or SIGTERM while writing: not yet in write_all's list
        partial.unlink(missing_ok=True)
        raise
    return partial


def _move_into_place(written: Sequence[tuple[Path, OutputFile]]) -> None:
    """Rename each temporary file onto its output; when one rename fails (the outputs were
    checked up front, so only a change meanwhile makes one fail), outputs new since the export
    began are removed again."""
    created: list[Path] = []
    try:
        for partial, output in written:
            existed = output.path.exists()
            try:
                os.replace(partial, output.path)
            except OSError as exc:
                raise output.error(exc.strerror or str(exc)) from None
            if not existed:
                created.append(output.path)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
