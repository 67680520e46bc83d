"""What every source (video file, image set) hands the pipeline."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Protocol

import av


@dataclass(frozen=True)
class SourceFrame:
    index: int  # source frame number: 0-based, presentation order
    timestamp: Fraction  # seconds from the first frame
    frame: av.VideoFrame
    # A frame before a segment's first sample, decoded only so that the shot
    # detector sees what comes before (processors/segment_plan.py): not a sample.
    warmup: bool = False


@dataclass(frozen=True)
class SourceInfo:
    name: str  # the video name used in task names (file name without extension)
    width: int  # task clip size: rotation applied, padded to even
    height: int
    fps: float  # the source's own average frame rate
    duration: float  # seconds
    frame_count: int  # as declared by the container (0 when unknown)
    rotation: int  # degrees counter-clockwise to apply to the decoded pixels


class Source(Protocol):
    info: SourceInfo
    # True when every frame is a sample (image sets); False for timestamp sampling.
    samples_every_frame: bool

    def frames(self) -> Iterator[SourceFrame]: ...

    def close(self) -> None: ...


def even(n: int) -> int:
    return n + (n % 2)


def display_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """Even-padded size of a ``width`` x ``height`` picture after rotation."""
    if rotation % 180:
        width, height = height, width
    return even(width), even(height)
