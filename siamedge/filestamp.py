"""What tells one version of a file from the next, for sources and models that wait for a change.

Only os.stat: never reads the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileStamp:
    """One version of a file: content (mtime, size), another file put in its place (inode), and
    permissions or owner fixed, or the file moved away and back (ctime: `mv` keeps the rest)."""

    mtime_ns: int
    size: int
    inode: int
    ctime_ns: int


def file_stamp(path: Path) -> FileStamp | None:
    """The stamp of path as it is now; None when it cannot be stat'ed (missing, no permission)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return FileStamp(
        mtime_ns=stat.st_mtime_ns, size=stat.st_size, inode=stat.st_ino, ctime_ns=stat.st_ctime_ns
    )
