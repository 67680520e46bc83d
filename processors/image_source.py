"""Image uploads: one image, a folder of images or a .zip of images.

Every file is read through ``processors.input_guard`` (inside the contents
folder, a regular file, at most ``max_image_bytes``); only the top level of a
folder is listed (subfolders are not entered). Zip members are streamed
from the archive, never extracted nor read whole, after their declared
sizes and compression ratios are checked; the bytes actually read are
capped too, since declared sizes can lie.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import av
import numpy as np
from PIL import Image, ImageOps

from exceptions import ContentError
from processors.frame_ops import letterbox
from processors.input_guard import (
    MIB,
    InputLimits,
    check_pixels,
    confined,
    open_regular,
    output_stem,
    shown,
    utf8,
)
from processors.source import SourceFrame, SourceInfo, even

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
# The decoders for those suffixes (JPEG opens camera MPOs too): nothing else
# of PIL's (e.g. EPS, which runs Ghostscript) ever sees upload bytes.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")
# Members smaller than this are not ratio-checked: a tiny flat BMP compresses
# 1000x and harms nothing.
RATIO_CHECKED_FROM = MIB

Opener = Callable[[], BinaryIO]


def natural_key(name: str) -> list:
    """'img2' before 'img10': digit runs compare as numbers."""
    # isdecimal, not isdigit: '²' is a digit that int() refuses.
    return [int(part) if part.isdecimal() else part.lower() for part in re.split(r"(\d+)", name)]


class ImageSource:
    """Each image is one sampled frame, letterboxed onto the first image's size."""

    samples_every_frame = True

    def __init__(self, path: str | Path, frame_rate: int,
                 limits: InputLimits = InputLimits()) -> None:
        self.path = Path(path)
        self.limits = limits
        root = limits.root_for(self.path)
        self._archive: zipfile.ZipFile | None = None
        self._handle: BinaryIO | None = None
        self._rate = frame_rate
        try:
            if self.path.suffix.lower() == ".zip" and not self.path.is_dir():
                self._handle = open_regular(self.path, root)
                self._archive = _open_zip(self._handle, shown(self.path, root))
                self._items = _zip_members(self._archive, limits, shown(self.path, root))
            else:
                self._items = _list_images(self.path, root, limits)
            if not self._items:
                raise ContentError(f"{shown(self.path, root)}: no images found",
                                   code="no_images")
            first = self._load(*self._items[0])
        except BaseException:
            self.close()
            raise
        height, width = first.shape[:2]
        count = len(self._items)
        self.info = SourceInfo(name=output_stem(self.path.stem), width=even(width),
                               height=even(height), fps=float(frame_rate),
                               duration=count / frame_rate, frame_count=count, rotation=0)

    def frames(self) -> Iterator[SourceFrame]:
        for index, (name, opener) in enumerate(self._items):
            rgb = letterbox(self._load(name, opener), self.info.width, self.info.height)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            yield SourceFrame(index=index, timestamp=Fraction(index, self._rate), frame=frame)

    def _load(self, name: str, opener: Opener) -> np.ndarray:
        try:
            with opener() as handle, Image.open(handle, formats=IMAGE_FORMATS) as image:
                # Checked on the header, before a pixel is decoded.
                check_pixels(image.width, image.height, self.limits, name)
                if image.mode == "F":  # PIL would cast 0.0-1.0 to black, not scale it
                    raise ContentError(f"{name}: floating-point pixels have no display range; "
                                       "save it as an 8- or 16-bit image", code="bad_image")
                # EXIF orientation is applied so that pixels are upright.
                upright = ImageOps.exif_transpose(image)
                return np.asarray(upright.convert("RGB"))
        except ContentError:
            raise
        except Image.DecompressionBombError as exc:
            raise ContentError(f"{name}: too many pixels ({exc})", code="frame_too_large") from exc
        except Exception as exc:  # hostile bytes make PIL raise nearly anything
            raise ContentError(f"{name}: not an image that can be read ({utf8(str(exc))})",
                               code="bad_image") from exc

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
        if self._handle is not None:
            self._handle.close()


def _list_images(path: Path, root: Path, limits: InputLimits) -> list[tuple[str, Opener]]:
    if path.is_dir():
        folder = confined(path, root)
        # A link to a folder, or a folder named like an image, is not entered;
        # every other image-named entry must pass open_regular (links included).
        files = [p for p in folder.iterdir()
                 if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()]
        files.sort(key=lambda p: natural_key(p.name))
        return [(shown(p, root), _file_opener(p, root, limits)) for p in files]
    return [(shown(path, root), _file_opener(path, root, limits))]


def _file_opener(path: Path, root: Path, limits: InputLimits) -> Opener:
    def open_file() -> BinaryIO:
        handle = open_regular(path, root)
        size = os.fstat(handle.fileno()).st_size
        if size > limits.max_image_bytes:
            handle.close()
            raise _too_large(shown(path, root), size, limits)
        return handle
    return open_file


def _open_zip(handle: BinaryIO, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(handle)
    except Exception as exc:  # BadZipFile, and whatever a hostile directory makes it raise
        raise ContentError(f"{name}: not a valid zip file", code="bad_zip") from exc


def _zip_members(archive: zipfile.ZipFile, limits: InputLimits,
                 name: str) -> list[tuple[str, Opener]]:
    members = [m for m in archive.infolist()
               if not m.is_dir() and not m.filename.startswith("__MACOSX/")
               and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES]
    members.sort(key=lambda m: natural_key(m.filename))
    total = sum(m.file_size for m in members)
    if total > limits.max_zip_bytes:
        raise ContentError(f"{name}: its images hold {total} bytes uncompressed, more than "
                           f"the {limits.max_zip_bytes} allowed (processing.max_zip_mb)",
                           code="zip_too_large")
    items = []
    for member in members:
        shown_name = utf8(f"{name}/{member.filename}")
        _check_member(member, limits, shown_name)
        items.append((shown_name, _zip_opener(archive, member, limits, shown_name)))
    # Members are streamed one at a time, never extracted: nothing outside the
    # archive is written, so hostile member names cannot escape.
    return items


def _check_member(member: zipfile.ZipInfo, limits: InputLimits, name: str) -> None:
    """Refuse on the declared sizes, before a byte of the member is inflated."""
    if member.file_size > limits.max_image_bytes:
        raise _too_large(name, member.file_size, limits)
    ratio = member.file_size / max(1, member.compress_size)
    if member.file_size >= RATIO_CHECKED_FROM and ratio > limits.max_zip_ratio:
        raise ContentError(f"{name}: expands {ratio:.0f} times (more than "
                           f"{limits.max_zip_ratio:g}, processing.max_zip_ratio): "
                           "a zip bomb?", code="zip_bomb")


def _zip_opener(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limits: InputLimits,
                name: str) -> Opener:
    return lambda: io.BufferedReader(_CappedStream(archive.open(member), limits, name))


def _too_large(name: str, size: int, limits: InputLimits) -> ContentError:
    return ContentError(f"{name}: {size} bytes is more than the {limits.max_image_bytes} "
                        "allowed for one image (processing.max_image_mb)", code="image_too_large")


class _CappedStream(io.RawIOBase):
    """A zip member's bytes, failing once more than ``max_image_bytes`` come
    out, whatever size the member declares."""

    def __init__(self, raw: BinaryIO, limits: InputLimits, name: str) -> None:
        super().__init__()
        self._raw, self._limits, self._name = raw, limits, name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: memoryview) -> int:
        cap = self._limits.max_image_bytes
        room = cap + 1 - self._raw.tell()
        data = self._raw.read(max(0, min(len(buffer), room)))
        if self._raw.tell() > cap:
            raise _too_large(self._name, self._raw.tell(), self._limits)
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()
