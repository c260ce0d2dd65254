"""A folder of still images (jpg, jpeg, png, bmp) played in file-name order, once or looped.

Never skips an unreadable image silently: it raises SourceError naming the file.
"""

from __future__ import annotations

import bisect
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from siamedge.errors import SourceError
from siamedge.filestamp import FileStamp, file_stamp
from siamedge.sources.base import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""Matched case-insensitively; other files in the folder are ignored."""

FolderStamp = tuple[tuple[str, FileStamp], ...]
"""(file name, its stamp) of each image, in playback order: one version of a folder."""


def list_images(folder: Path) -> list[Path]:
    """The image files directly in folder, sorted by file name (plain string order)."""
    return sorted(
        (path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda path: path.name,
    )


def folder_stamp(files: list[Path]) -> FolderStamp | None:
    """The stamp of a listing as the files are now; None when one cannot be stat'ed (gone)."""
    entries = []
    for path in files:
        stamp = file_stamp(path)
        if stamp is None:
            return None
        entries.append((path.name, stamp))
    return tuple(entries)


def position_after(files: list[Path], name: str) -> int:
    """The index of the first file whose name sorts after name (len(files) when none does).

    files: sorted by name, as list_images() gives them; name need not be among them any more.
    """
    return bisect.bisect_right([path.name for path in files], name)


class ImageFolderSource:
    """Each image of `folder` as one frame; at the end None, or (loop=True) the first again.

    The folder is listed on open() and, when looping, again at each wrap, so added or removed
    files are picked up. Frame indices keep counting across loops and reopenings.
    A reopen after an unreadable image goes on with the image after it, so one bad file does not
    hide the rest from the capture thread (which reopens a failed source). With loop=False a
    folder played to the end is not played again by a later open() until it changes.
    """

    def __init__(self, folder: Path | str, *, loop: bool) -> None:
        self._folder = Path(folder)
        self._loop = loop
        self._files: list[Path] = []
        self._position = 0
        self._next_index = 0
        self._open = False
        self._resume_after: str | None = None
        """The name of the image that failed to read: the next open() starts after it."""
        self._played: FolderStamp | None = None
        """The folder as it was when a loop=False pass reached its end."""

    @property
    def description(self) -> str:
        """`images <folder>`."""
        return f"images {self._folder}"

    @property
    def files(self) -> list[Path]:
        """The images found by the last listing, in playback order."""
        return list(self._files)

    def open(self) -> None:
        """List the folder; SourceError when it is missing, unreadable or has no images, or was
        played to the end once (loop=False) and is unchanged."""
        try:
            files = self._listed()
        except SourceError:
            # Gone, emptied or unreadable since it was played: whatever comes back is new.
            self._played = None
            raise
        if self._played is not None:
            if folder_stamp(files) == self._played:
                raise SourceError(
                    f"{self.description}: played to the end (loop: false); "
                    "played again when it changes"
                )
            self._played = None
        self._files = files
        self._position = 0
        if self._resume_after is not None:
            self._position = position_after(files, self._resume_after)
            log.info(
                "%s: going on after %s, which could not be read",
                self.description,
                self._resume_after,
            )
            self._resume_after = None
        self._open = True
        log.info("%s opened: %d images", self.description, len(files))

    def read(self) -> Frame | None:
        """The next image as (H, W, 3) uint8 BGR; SourceError naming an unreadable file."""
        if not self._open:
            raise SourceError(f"{self.description}: read() before open()")
        if self._position >= len(self._files):
            if not self._loop:
                self._played = folder_stamp(self._files)
                return None
            self._files = self._listed()
            self._position = 0
            log.debug("%s: starting again, %d images", self.description, len(self._files))
        path = self._files[self._position]
        self._position += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            self._resume_after = path.name
            raise SourceError(f"{self.description}: cannot read image {path} (missing or corrupt)")
        # Read on past the bad image without a reopen: nothing left to resume.
        self._resume_after = None
        frame = Frame(
            image=np.asarray(image, dtype=np.uint8), index=self._next_index, timestamp=time.time()
        )
        self._next_index += 1
        return frame

    def close(self) -> None:
        """Forget the listing; safe to call twice."""
        self._open = False
        self._files = []

    def _listed(self) -> list[Path]:
        """The folder's images; SourceError when it is missing, unreadable or has none."""
        if not self._folder.is_dir():
            what = "not a folder" if self._folder.exists() else "no such folder"
            raise SourceError(f"{self.description}: {what}")
        try:
            files = list_images(self._folder)
        except OSError as exc:
            raise SourceError(f"{self.description}: cannot list it: {exc.strerror}") from None
        if not files:
            raise SourceError(
                f"{self.description}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder"
            )
        return files
