"""A folder of still images (jpg, jpeg, png, bmp) played in file-name order, once or looped.

Never skips an unreadable image silently: it logs a warning naming the file (once per version of
the file), and raises SourceError when none of the folder's images can be read.
"""

from __future__ import annotations

import logging
import re
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


DIGIT_RUNS = re.compile(r"(\d+)", re.ASCII)


def name_order(name: str) -> tuple[list[str | int], str]:
    """Sort key of a file name: runs of digits compare as numbers, so the unpadded frames that
    `ffmpeg -i clip.mp4 %d.jpg` writes (1.jpg, 2.jpg, ..., 10.jpg) play in frame order; for
    zero-padded names it is plain string order. The name itself breaks ties (01 and 1)."""
    parts = DIGIT_RUNS.split(name)  # text, digits, text, ...: the same kind at each position
    return [int(part) if index % 2 else part for index, part in enumerate(parts)], name


def list_images(folder: Path) -> list[Path]:
    """The image files directly in folder, in file-name order with numbers compared as numbers
    (name_order)."""
    return sorted(
        (path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda path: name_order(path.name),
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


class ImageFolderSource:
    """Each image of `folder` as one frame; at the end None, or (loop=True) the first again.

    The folder is listed on open() and, when looping, again at each wrap, so added or removed
    files are picked up. Frame indices keep counting across loops and reopenings.
    An image that cannot be read (corrupt, or gone since the listing) is skipped: logged once per
    version of the file, and its index left unused, so `track` output and file names still match.
    The source does not fail for it: the capture thread closes and reopens a failed source with a
    growing backoff, which paused a short looping folder for longer on every lap. Only when no
    image of the folder can be read does read() fail (and the capture thread back off as for a
    dead camera). With loop=False a folder played to the end is not played again by a later
    open() until it changes.
    """

    def __init__(self, folder: Path | str, *, loop: bool) -> None:
        self._folder = Path(folder)
        self._loop = loop
        self._files: list[Path] = []
        self._position = 0
        self._next_index = 0
        self._open = False
        self._unreadable: dict[str, FileStamp | None] = {}
        """Images skipped as unreadable, by name, with the stamp of the version already logged."""
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
        self._set_listing(files)
        self._open = True
        log.info("%s opened: %d images", self.description, len(files))

    def read(self) -> Frame | None:
        """The next readable image as (H, W, 3) uint8 BGR, skipping unreadable ones; None at the
        end (loop=False); SourceError when as many images in a row as the folder holds cannot be
        read (none can), or the folder is gone or empty at a wrap."""
        if not self._open:
            raise SourceError(f"{self.description}: read() before open()")
        skipped = 0
        while True:
            if self._position >= len(self._files):
                if not self._loop:
                    self._played = folder_stamp(self._files)
                    return None
                self._set_listing(self._listed())
                log.debug("%s: starting again, %d images", self.description, len(self._files))
            path = self._files[self._position]
            self._position += 1
            index = self._next_index
            self._next_index += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self._unreadable.pop(path.name, None)
                return Frame(
                    image=np.asarray(image, dtype=np.uint8), index=index, timestamp=time.time()
                )
            self._skip(path)
            skipped += 1
            # Every image tried once in this call: fail instead of spinning through the folder.
            if skipped >= len(self._files):
                raise SourceError(
                    f"{self.description}: none of its {len(self._files)} images can be read "
                    f"(missing or corrupt; the last tried: {path.name})"
                )

    def close(self) -> None:
        """Forget the listing; safe to call twice."""
        self._open = False
        self._files = []

    def _set_listing(self, files: list[Path]) -> None:
        """Play files from the first; forget skipped images no longer listed."""
        self._files = files
        self._position = 0
        names = {path.name for path in files}
        self._unreadable = {
            name: stamp for name, stamp in self._unreadable.items() if name in names
        }

    def _skip(self, path: Path) -> None:
        """Log an unreadable image: a warning the first time, for each new version of it."""
        stamp = file_stamp(path)
        if path.name in self._unreadable and self._unreadable[path.name] == stamp:
            log.debug("%s: skipping %s again (unreadable)", self.description, path.name)
            return
        self._unreadable[path.name] = stamp
        log.warning(
            "%s: cannot read image %s (missing or corrupt); skipping it "
            "(not logged again until it changes)",
            self.description,
            path,
        )

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
