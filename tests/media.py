"""Test media made on the fly: videos whose frames carry their own index.

Each frame shows its index as a 4x4 grid of black/white blocks (16 bits), big
enough to survive H.264 compression, so a test can read back exactly which
source frames a task clip holds.
"""
from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import av
import numpy as np

GRID = 4
BITS = GRID * GRID


def barcode_image(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame showing ``index`` as a 4x4 grid, most significant bit first."""
    image = np.zeros((height, width, 3), np.uint8)
    for bit in range(BITS):
        if index >> (BITS - 1 - bit) & 1:
            row, col = divmod(bit, GRID)
            y0, y1 = row * height // GRID, (row + 1) * height // GRID
            x0, x1 = col * width // GRID, (col + 1) * width // GRID
            image[y0:y1, x0:x1] = 255
    return image


def read_barcode(gray: np.ndarray) -> int:
    """The index shown by a frame (grayscale array of the barcode area)."""
    height, width = gray.shape
    value = 0
    for bit in range(BITS):
        row, col = divmod(bit, GRID)
        y0, y1 = row * height // GRID, (row + 1) * height // GRID
        x0, x1 = col * width // GRID, (col + 1) * width // GRID
        # The block's centre only: edges blur under compression and scaling.
        cy, cx, hy, hx = (y0 + y1) // 2, (x0 + x1) // 2, (y1 - y0) // 4, (x1 - x0) // 4
        value = value << 1 | int(gray[cy - hy:cy + hy, cx - hx:cx + hx].mean() > 128)
    return value


def write_video(path: Path, pts: Sequence[int], time_base: Fraction = Fraction(1, 30),
                size: tuple[int, int] = (320, 240), rotation: int = 0,
                codec: str = "libx264", rate: int = 30, pix_fmt: str = "yuv420p",
                options: dict | None = None, fmt: str | None = None,
                container_options: dict | None = None, first_index: int = 0) -> Path:
    """A video whose i-th frame (at ``pts[i] * time_base``) shows barcode
    ``first_index + i`` (a part of recordings joined end to end continues the
    numbers of the parts before it).

    ``options``: encoder options (e.g. x264-params for the GOP); ``fmt`` and
    ``container_options``: the container's format and muxer options.
    """
    width, height = size
    with av.open(str(path), "w", format=fmt, container_options=container_options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt  # yuv444p allows odd sizes, which 4:2:0 cannot have
        stream.codec_context.time_base = time_base
        if options:
            stream.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        for index, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(barcode_image(first_index + index, width, height),
                                               "rgb24")
            frame.pts, frame.time_base = p, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def cfr_video(path: Path, frames: int, fps: int = 30, **kwargs) -> Path:
    return write_video(path, list(range(frames)), Fraction(1, fps), rate=fps, **kwargs)


def decode_gray(path: Path) -> Iterable[np.ndarray]:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="gray")


def clip_barcodes(path: Path, unrotate: int = 0, crop: tuple[int, int] | None = None) -> list[int]:
    """Indices shown by every frame of a clip; ``unrotate`` undoes a quarter-turn count,
    ``crop`` (w, h) reads only the top-left area (the source picture before padding)."""
    result = []
    for gray in decode_gray(path):
        if crop:
            gray = gray[:crop[1], :crop[0]]
        if unrotate:
            gray = np.rot90(gray, k=-unrotate)
        result.append(read_barcode(gray))
    return result


def expected_samples(timestamps: Sequence[Fraction], rate: int,
                     slack: Fraction = Fraction(0)) -> list[int]:
    """Brute-force reference of SPEC sampling: for each target k/r the first frame
    at or after it (``slack``: or that much before it); a frame picked for
    several targets counts once."""
    t0 = timestamps[0]
    picked: list[int] = []
    k = 0
    last = timestamps[-1] - t0 + slack
    while Fraction(k, rate) <= last:
        target = Fraction(k, rate)
        first = next(i for i, t in enumerate(timestamps) if t - t0 + slack >= target)
        if not picked or picked[-1] != first:
            picked.append(first)
        k += 1
    return picked


def top_level_atoms(path: Path) -> list[str]:
    """The MP4 box types at the top level, in file order."""
    names = []
    with open(path, "rb") as handle:
        while header := handle.read(8):
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0]
                handle.seek(size - 16, 1)
            else:
                handle.seek(size - 8, 1)
            names.append(kind.decode("latin-1"))
            if size == 0:
                break
    return names
