"""Track gaps filled (annotation/tracking.py): a box the detector missed
between two it found of the same track is interpolated between them, when
the gap is short enough."""
from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from annotation.tracking import TrackBox


class GapFiller:
    """Fills track gaps of at most ``most`` frames, frame by frame: a frame's
    fills are final once the ``most`` frames after it are added."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._last: dict[int, tuple[int, TrackBox]] = {}  # id -> its last box
        self._filled: deque[list[tuple[int, TrackBox]]] = deque()
        self._first = self._next = 0  # the frame _filled[0] is, frames added

    def add(self, boxes: Sequence[TrackBox], ids: Sequence[int | None]) -> None:
        number, self._next = self._next, self._next + 1
        self._filled.append([])
        for box, track in zip(boxes, ids):
            if track is None:
                continue
            before = self._last.get(track)
            if before is not None and 0 < number - before[0] - 1 <= self.most:
                start, previous = before
                for step in range(1, number - start):
                    self._filled[start + step - self._first].append(
                        (track, between(previous, box, step / (number - start))))
            self._last[track] = (number, box)

    def take(self, end: bool) -> list[list[tuple[int, TrackBox]]]:
        """The fills of the frames no later box can fill (all of them at the end)."""
        upto = self._next if end else self._next - self.most
        out = []
        while self._filled and self._first < upto:
            out.append(self._filled.popleft())
            self._first += 1
        # A box this far back can no longer start a gap short enough to fill.
        self._last = {track: last for track, last in self._last.items()
                      if self._next - last[0] - 1 <= self.most}
        return out


def fill_frames(seconds: float, frame_rate: float) -> int:
    return int(seconds * frame_rate + 1e-9)


def between(a: TrackBox, b: TrackBox, share: float) -> TrackBox:
    def mix(x: float, y: float) -> float:
        return x + (y - x) * share
    return replace(a, x=mix(a.x, b.x), y=mix(a.y, b.y), w=mix(a.w, b.w), h=mix(a.h, b.h),
                   score=min(a.score, b.score))
