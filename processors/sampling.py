"""Timestamp-based frame sampling (SPEC "Processing semantics").

For a rate ``r`` the targets are ``t0 + k/r``. A frame is kept when it is the
first decoded frame at or after the next target; targets that a gap in a
variable-frame-rate video skips over are dropped, never filled with a
duplicate. All arithmetic is on exact fractions so that a frame that lands
exactly on a target is kept regardless of the container's time base.

``slack`` is half a tick of that time base: Matroska and WebM store times in
whole milliseconds, so frame 1 of a 30 fps video is at 33 ms, a third of a
millisecond before its target at 33.3 ms, and would be dropped at frame_rate
30. A frame within half a tick before a target is at it, as far as the file
can say.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass
class TimestampSampler:
    """Decides, frame by frame, which decoded frames are sampled.

    ``offset`` is the time of the first frame (t0) once it is known; the state
    (``next_target``) can be restored to resume mid-video.
    """

    rate: int
    next_target: int = 0
    offset: Fraction | None = None
    slack: Fraction = Fraction(0)  # half a tick of the stream's time base

    def __post_init__(self) -> None:
        if self.rate < 1:
            raise ValueError(f"sampling rate must be >= 1, got {self.rate}")

    def accept(self, timestamp: Fraction) -> bool:
        """True when the frame at ``timestamp`` (seconds) is sampled."""
        if self.offset is None:
            self.offset = timestamp
        relative = timestamp - self.offset + self.slack
        if relative < Fraction(self.next_target, self.rate):
            return False
        # Skip every target this frame already satisfies: at most one sample
        # per frame, and a gap never produces duplicates.
        self.next_target = math.floor(relative * self.rate) + 1
        return True


def task_number(sample_index: int, frames_per_task: int) -> int:
    """1-based task number of the 0-based ``sample_index``."""
    return sample_index // frames_per_task + 1
