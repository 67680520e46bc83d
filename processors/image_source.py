"""Image uploads: one image, a folder of images or a .zip of images."""
from __future__ import annotations

import io
import re
import zipfile
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from exceptions import ContentError
from processors.frame_ops import letterbox
from processors.source import SourceFrame, SourceInfo, even

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}

Opener = Callable[[], io.BufferedIOBase]


def natural_key(name: str) -> list:
    """'img2' before 'img10': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class ImageSource:
    """Each image is one sampled frame, letterboxed onto the first image's size."""

    samples_every_frame = True

    def __init__(self, path: str | Path, frame_rate: int) -> None:
        self.path = Path(path)
        self._archive: zipfile.ZipFile | None = None
        if self.path.is_file() and self.path.suffix.lower() == ".zip":
            self._archive = _open_zip(self.path)
            self._items = _zip_members(self._archive)
        else:
            self._items = _list_images(self.path)
        if not self._items:
            raise ContentError(f"{self.path.name}: no images found", code="no_images")
        self._rate = frame_rate
        first = self._load(*self._items[0])
        height, width = first.shape[:2]
        count = len(self._items)
        self.info = SourceInfo(name=self.path.stem, width=even(width), height=even(height),
                               fps=float(frame_rate), duration=count / frame_rate,
                               frame_count=count, rotation=0)

    def frames(self) -> Iterator[SourceFrame]:
        for index, (name, opener) in enumerate(self._items):
            rgb = letterbox(self._load(name, opener), self.info.width, self.info.height)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            yield SourceFrame(index=index, timestamp=Fraction(index, self._rate), frame=frame)

    @staticmethod
    def _load(name: str, opener: Opener) -> np.ndarray:
        try:
            with opener() as handle, Image.open(handle) as image:
                # EXIF orientation is applied so that pixels are upright.
                upright = ImageOps.exif_transpose(image)
                return np.asarray(upright.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ContentError(f"{name}: not an image that can be read ({exc})",
                               code="bad_image") from exc

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()


def _list_images(path: Path) -> list[tuple[str, Opener]]:
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        files.sort(key=lambda p: natural_key(p.name))
        return [(p.name, _file_opener(p)) for p in files]
    if not path.is_file():
        raise ContentError(f"{path.name}: file not found", code="missing_file")
    return [(path.name, _file_opener(path))]


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ContentError(f"{path.name}: not a valid zip file", code="bad_zip") from exc


def _zip_members(archive: zipfile.ZipFile) -> list[tuple[str, Opener]]:
    names = [n for n in archive.namelist()
             if not n.endswith("/") and not n.startswith("__MACOSX/")
             and Path(n).suffix.lower() in IMAGE_SUFFIXES]
    names.sort(key=natural_key)
    # Members are read one at a time, never extracted: nothing outside the
    # archive is written, so hostile member names cannot escape.
    return [(n, _zip_opener(archive, n)) for n in names]


def _file_opener(path: Path) -> Opener:
    return lambda: open(path, "rb")


def _zip_opener(archive: zipfile.ZipFile, name: str) -> Opener:
    return lambda: io.BytesIO(archive.read(name))
