"""MOTChallenge sequences: one per upload and shot (``<uploadId>-s<k>``, k the
index of the upload's shot: a sequence never spans a cut), frames numbered in
sample order.

``gt/gt.txt`` holds ``frame,id,x,y,w,h,conf,class,visibility`` per box (conf 1:
the box counts; class: the version's label index from 1; visibility 1) and
``seqinfo.ini`` the frame rate, length and size, so tracker-training tools
read a sequence as it is. Track ids are dense from 1 per sequence: each
(source, trackId) of the boxes gets one, in order of first appearance, and a
box without a track gets an id of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from datasets.formats import PixelBox


@dataclass
class MotSequence:
    name: str
    frame_rate: float
    width: int
    height: int
    lines: list[str] = field(default_factory=list)
    length: int = 0
    _ids: dict[Any, int] = field(default_factory=dict)
    _next: int = 1

    def add(self, boxes: Iterable[PixelBox]) -> int:
        """The next frame (in sample order) and its boxes; returns its number."""
        self.length += 1
        for box in boxes:
            self.lines.append(f"{self.length},{self._id(box.track)},{box.x:.2f},{box.y:.2f},"
                              f"{box.w:.2f},{box.h:.2f},1,{box.class_index + 1},1.0\n")
        return self.length

    def _id(self, track: Any) -> int:
        if track is not None and track in self._ids:
            return self._ids[track]
        number, self._next = self._next, self._next + 1
        if track is not None:
            self._ids[track] = number
        return number

    def gt(self) -> str:
        return "".join(self.lines)

    def seqinfo(self, image_ext: str = ".jpg") -> str:
        return (f"[Sequence]\nname={self.name}\nimDir=img1\nframeRate={self.frame_rate:g}\n"
                f"seqLength={self.length}\nimWidth={self.width}\nimHeight={self.height}\n"
                f"imExt={image_ext}\n")
