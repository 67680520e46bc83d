"""What the review page of an upload shows, as plain data: its tasks, their
frames and auto boxes, and the page's size limits.

Apart from the drawing (processors/review_page.py, review_sheet.py), so that
reading an upload for its page (intake/review.py) imports no plotting or
drawing library: the API's web workers and ``app.py`` load matplotlib and
supervision (~80 MiB) only when a page is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True, slots=True)  # slots: an hour's upload has ~10^5 boxes
class ReviewBox:
    label: str
    x: float  # task-clip pixels, top left
    y: float
    w: float
    h: float
    track_id: int | None = None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class ReviewFrame:
    frame_id: int
    timestamp: float
    image_path: str | None
    boxes: Sequence[ReviewBox] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ReviewTask:
    number: int
    name: str
    clip: str | None
    frames: Sequence[ReviewFrame]


@dataclass(frozen=True)
class ReviewUpload:
    upload_id: str
    status: str
    tasks: Sequence[ReviewTask]
    timings: dict | None = None
    tracks: dict | None = None  # tracks per label, as the status shows them
    # Shot boundaries in seconds (the shots issue): drawn on the timeline when
    # the upload has them; none today.
    shots: Sequence[float] = field(default_factory=tuple)


@dataclass(frozen=True)
class Limits:
    per_task: int = 12  # thumbnails of one task clip
    total: int = 240  # thumbnails of the whole page
    max_side: int = 240  # pixels, a thumbnail's longer side
