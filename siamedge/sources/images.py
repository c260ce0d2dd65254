"""A folder of still images (jpg, jpeg, png, bmp) played in file-name order, once or looped.

Never skips an unreadable image silently: it raises SourceError naming the file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from siamedge.errors import SourceError
from siamedge.sources.base import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""Matched case-insensitively; other files in the folder are ignored."""


def list_images(folder: Path) -> list[Path]:
    """The image files directly in folder, sorted by file name (plain string order)."""
    return sorted(
        (path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda path: path.name,
    )


class ImageFolderSource:
    """Each image of `folder` as one frame; at the end None, or (loop=True) the first again.

    The folder is listed on open(), so a reopen picks up added or removed files.
    Frame indices keep counting across loops and reopenings.
    """

    def __init__(self, folder: Path | str, *, loop: bool) -> None:
        self._folder = Path(folder)
        self._loop = loop
        self._files: list[Path] = []
        self._position = 0
        self._next_index = 0
        self._open = False

    @property
    def description(self) -> str:
        """`images <folder>`."""
        return f"images {self._folder}"

    @property
    def files(self) -> list[Path]:
        """The images found by the last open(), in playback order."""
        return list(self._files)

    def open(self) -> None:
        """List the folder; SourceError when it is missing, unreadable or has no images."""
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
        self._files = files
        self._position = 0
        self._open = True
        log.info("%s opened: %d images", self.description, len(files))

    def read(self) -> Frame | None:
        """The next image as (H, W, 3) uint8 BGR; SourceError naming an unreadable file."""
        if not self._open:
            raise SourceError(f"{self.description}: read() before open()")
        if self._position >= len(self._files):
            if not self._loop:
                return None
            self._position = 0
        path = self._files[self._position]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{self.description}: cannot read image {path} (missing or corrupt)")
        self._position += 1
        frame = Frame(
            image=np.asarray(image, dtype=np.uint8), index=self._next_index, timestamp=time.time()
        )
        self._next_index += 1
        return frame

    def close(self) -> None:
        """Forget the listing; safe to call twice."""
        self._open = False
        self._files = []
