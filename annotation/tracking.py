"""Object tracks over the sampled frames of one upload: the auto boxes of one
object share a track id, from its first sampled frame to its last.

Association runs over boxes only, in sample order, after detection (cheap next
to the model, which never waits for it), with Roboflow's ``trackers`` (SORT or
ByteTrack: Kalman-predicted boxes matched by IoU). One tracker per label, so
objects of two classes never share a track. Two steps of our own on the
library's tracks: a track that ends is joined to one that starts soon after
near where it was (``_join``), and short gaps are filled (``fill_gaps``).
The library numbers tracks from a process-wide counter; the ids here are
renumbered 1, 2, ... in order of first appearance (sample order, then box
order), so the same boxes always give the same tracks, whichever process or
run computes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

KINDS = ("sort", "bytetrack", "none")
# model.json's tracker parameters (TrackerSettings' numbers)
NUMBERS = ("lost_seconds", "min_iou", "high_score", "fill_seconds", "join_reach")


@dataclass(frozen=True)
class TrackBox:
    label: str
    x: float  # top-left, in the frame's pixels
    y: float
    w: float
    h: float
    score: float


@dataclass(frozen=True)
class TrackerSettings:
    """``model.json``'s ``"tracker"``: ``"none"``, or a type and its parameters."""

    # SORT by default: as good as ByteTrack on the noisy scene at 2, 5 and 10 fps
    # (BENCHMARKS.md), and it gives a track's first box its id, where ByteTrack
    # leaves it without one until the track is confirmed.
    kind: str = "sort"
    # How long a track survives without a matching box (an object hidden for a
    # moment keeps its id); in seconds, whatever the sampling rate.
    lost_seconds: float = 2.0
    # The least IoU between a track's predicted box and a detection to match them:
    # at a sampled rate an object moves far between samples, and a low floor
    # (matching is still by the highest IoU) switched least on the noisy scene
    # (BENCHMARKS.md: 0.01 against 0.1 at 5 fps, 1.6 against 5+ switches per
    # 1,000 boxes).
    min_iou: float = 0.01
    # ByteTrack's first pass matches boxes at least this confident; the rest
    # only extend tracks (they never start one).
    high_score: float = 0.5
    # A track's gaps of up to this long (a box the detector missed between two
    # it found) are filled with boxes interpolated between its neighbours; an
    # object hidden for longer is left without boxes.
    fill_seconds: float = 0.5
    # A track that ends is continued by one of its label that starts within
    # lost_seconds, near where it was: within this many of its box sizes per
    # sample between them. IoU alone loses a small object that turns between
    # two samples (its predicted box overlaps nothing); 0 joins none.
    join_reach: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.kind != "none"


def assign_tracks(frames: Sequence[Sequence[TrackBox]], frame_rate: float,
                  settings: TrackerSettings = TrackerSettings()) -> list[list[int | None]]:
    """A track id (or None: a box no track took) for each box of each frame;
    ``frames`` in sample order, ``frame_rate`` the sampling rate."""
    found: dict[tuple[int, int], tuple[str, int]] = {}  # (frame, box) -> (label, raw id)
    if settings.enabled:
        for label in sorted({box.label for boxes in frames for box in boxes}):
            tracker = _tracker(settings, frame_rate)
            for number, boxes in enumerate(frames):
                picked = [i for i, box in enumerate(boxes) if box.label == label]
                tracked = tracker.update(_detections(boxes, picked))
                for index, raw in zip(tracked.data.get("index", []), tracked.tracker_id):
                    if raw >= 0:
                        found[(number, int(index))] = (label, int(raw))
    joined = _join(frames, found, frame_rate, settings)
    ids: dict[tuple[str, int], int] = {}
    return [[_renumber(joined.get(found.get((number, i))), ids) for i in range(len(boxes))]
            for number, boxes in enumerate(frames)]


def _join(frames: Sequence[Sequence[TrackBox]], found: dict[tuple[int, int], tuple[str, int]],
          frame_rate: float, settings: TrackerSettings) -> dict[tuple[str, int], tuple[str, int]]:
    """Each track's key, or the key of the ended track it continues (in order of
    first appearance; ties go to the lower key, so the result is deterministic)."""
    first: dict[tuple[str, int], tuple[int, TrackBox]] = {}
    last: dict[tuple[str, int], tuple[int, TrackBox]] = {}
    for (number, index), key in sorted(found.items()):
        first.setdefault(key, (number, frames[number][index]))
        last[key] = (number, frames[number][index])
    most = settings.lost_seconds * frame_rate
    joined = {key: key for key in first}
    continued: set[tuple[str, int]] = set()
    for key in sorted(first, key=lambda k: (first[k][0], k)):
        start, box = first[key]
        candidates = [(_distance(last[old][1], box), start - last[old][0], old) for old in last
                      if old[0] == key[0] and old not in continued and joined[old] != key
                      and 0 < start - last[old][0] <= most]
        near = [(distance, old) for distance, gap, old in candidates
                if distance <= settings.join_reach * gap]
        if near:
            old = min(near)[1]
            continued.add(old)
            joined[key] = joined[old]
    return joined


def _distance(a: TrackBox, b: TrackBox) -> float:
    """Between the centres, in box sizes of ``a``."""
    dx, dy = (b.x + b.w / 2) - (a.x + a.w / 2), (b.y + b.h / 2) - (a.y + a.h / 2)
    return (dx * dx + dy * dy) ** 0.5 / max(1e-6, (a.w * a.h) ** 0.5)


def fill_gaps(frames: Sequence[Sequence[TrackBox]], tracks: Sequence[Sequence[int | None]],
              frame_rate: float, seconds: float) -> list[list[tuple[int, TrackBox]]]:
    """Per frame, the (track id, box) interpolated into the track gaps of at most
    ``seconds`` (linearly between the boxes either side, the lower score)."""
    most = int(seconds * frame_rate + 1e-9)
    filled: list[list[tuple[int, TrackBox]]] = [[] for _ in frames]
    last: dict[int, tuple[int, TrackBox]] = {}
    for number, (boxes, ids) in enumerate(zip(frames, tracks)):
        for box, track in zip(boxes, ids):
            if track is None:
                continue
            before = last.get(track)
            if before is not None and 0 < number - before[0] - 1 <= most:
                start, previous = before
                for step in range(1, number - start):
                    filled[start + step].append(
                        (track, _between(previous, box, step / (number - start))))
            last[track] = (number, box)
    return filled


def _between(a: TrackBox, b: TrackBox, share: float) -> TrackBox:
    def mix(x: float, y: float) -> float:
        return x + (y - x) * share
    return TrackBox(a.label, mix(a.x, b.x), mix(a.y, b.y), mix(a.w, b.w), mix(a.h, b.h),
                    min(a.score, b.score))


def _renumber(raw: tuple[str, int] | None,
              ids: dict[tuple[str, int], int]) -> int | None:
    if raw is None:
        return None
    return ids.setdefault(raw, len(ids) + 1)


def _tracker(settings: TrackerSettings, frame_rate: float) -> Any:
    # Imported here: model manifests (read by every web process and the gunicorn
    # master) name a tracker without loading the library (~1 s of imports).
    from trackers import ByteTrackTracker, SORTTracker

    # The library counts lost frames at 30 fps and scales by frame_rate.
    lost = max(1, round(settings.lost_seconds * 30))
    if settings.kind == "sort":
        return SORTTracker(lost_track_buffer=lost, frame_rate=frame_rate,
                           track_activation_threshold=0.0, minimum_consecutive_frames=1,
                           minimum_iou_threshold=settings.min_iou)
    # minimum_consecutive_frames=1: a track's first box carries its id too.
    return ByteTrackTracker(lost_track_buffer=lost, frame_rate=frame_rate,
                            track_activation_threshold=settings.high_score,
                            minimum_consecutive_frames=1,
                            minimum_iou_threshold=settings.min_iou,
                            high_conf_det_threshold=settings.high_score)


def _detections(boxes: Sequence[TrackBox], picked: list[int]) -> Any:
    import supervision as sv

    xyxy = np.array([[boxes[i].x, boxes[i].y, boxes[i].x + boxes[i].w, boxes[i].y + boxes[i].h]
                     for i in picked], dtype=float).reshape(-1, 4)
    return sv.Detections(xyxy=xyxy, confidence=np.array([boxes[i].score for i in picked],
                                                        dtype=float),
                         data={"index": np.array(picked, dtype=int)})


def parse_tracker(value: Any) -> TrackerSettings:
    """``model.json``'s ``"tracker"``: absent (the default), ``"none"``, a type
    name, or ``{"type": ..., <any of NUMBERS>: ...}``. Raises ValueError with the
    reason."""
    if value is None:
        return TrackerSettings()
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or value.get("type", "sort") not in KINDS:
        raise ValueError(f"must be one of {', '.join(KINDS)}, or an object with a \"type\"")
    unknown = set(value) - {"type", *NUMBERS}
    if unknown:
        raise ValueError(f"has unknown fields {sorted(unknown)}")
    numbers = {k: value[k] for k in NUMBERS if k in value}
    for name, number in numbers.items():
        fraction = name in ("min_iou", "high_score")
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0 \
                or (fraction and number > 1):
            raise ValueError(f"{name} must be a number" + (" between 0 and 1" if fraction
                                                            else " >= 0"))
    return TrackerSettings(kind=value.get("type", "sort"),
                           **{k: float(v) for k, v in numbers.items()})
