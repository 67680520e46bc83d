"""Object tracks over the sampled frames of one upload: the auto boxes of one
object share a track id, from its first sampled frame to its last.

Association runs over boxes only, in sample order, after detection (cheap next
to the model, which never waits for it), with Roboflow's ``trackers`` (SORT or
ByteTrack: Kalman-predicted boxes matched by IoU). One tracker per label, so
objects of two classes never share a track. Two steps of our own on the
library's tracks: a track that starts is joined to one that ended shortly
before near where it was (``OnlineTracks._join``), and short gaps are filled
(``annotation.gap_fill``).

Tracks end at shot boundaries (issue 19): a frame pushed with ``new_shot``
starts the trackers afresh, and no track is joined across it, so no id holds
boxes on both sides of a cut; ids stay unique over the upload.

It runs online (``OnlineTracks``): frames are pushed one at a time while the
video is still being cut, and each frame's ids and filled boxes are returned
once no later frame can change them, a bounded ``horizon`` of frames later
(about 2.6 s of samples with the defaults). They are then exactly what the
whole upload gives in one go (``assign_tracks`` and ``fill_gaps``, built on the
same code), so a task published early keeps its ids.

The library numbers tracks from a process-wide counter; the ids here are
renumbered 1, 2, ... in order of first appearance (sample order, then box
order), so the same boxes always give the same tracks, whichever process or
run computes them.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from annotation.gap_fill import GapFiller, fill_frames
from annotation.track_library import library_tracker, to_detections

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

    # SORT by default: ByteTrack links the noisy scene at 2, 5 and 10 fps just as
    # well (BENCHMARKS.md, since it too gives a track's first box its id: issue
    # 17), at about twice the cost.
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
                  settings: TrackerSettings = TrackerSettings(),
                  new_shots: Sequence[bool] = ()) -> list[list[int | None]]:
    """A track id (None only when nothing is tracked) for each box of each frame;
    ``frames`` in sample order, ``frame_rate`` the sampling rate; ``new_shots``:
    per frame, whether a new shot starts at it (no track spans it)."""
    online = OnlineTracks(frame_rate, settings)
    starts = list(new_shots) + [False] * (len(frames) - len(new_shots))
    done = [final for boxes, new in zip(frames, starts) for final in online.push(boxes, new)]
    done += online.finish()
    return [final.ids for final in done]


def fill_gaps(frames: Sequence[Sequence[TrackBox]], tracks: Sequence[Sequence[int | None]],
              frame_rate: float, seconds: float) -> list[list[tuple[int, TrackBox]]]:
    """Per frame, the (track id, box) interpolated into the track gaps of at most
    ``seconds`` (linearly between the boxes either side, the lower score)."""
    filler = GapFiller(fill_frames(seconds, frame_rate))
    filled: list[list[tuple[int, TrackBox]]] = []
    for boxes, ids in zip(frames, tracks):
        filler.add(boxes, ids)
        filled += filler.take(end=False)
    filled += filler.take(end=True)
    return filled + [[] for _ in range(len(frames) - len(filled))]


@dataclass(frozen=True)
class FinalFrame:
    """One sample's result, final: the batch result over the whole upload gives
    the same ``ids`` and ``filled``, whatever frames come after it."""

    number: int  # sample index, 0-based, in push order
    ids: list[int | None]  # per box of that frame, as assign_tracks gives them
    filled: list[tuple[int, TrackBox]]  # as fill_gaps gives them for that frame


class OnlineTracks:
    """``assign_tracks`` and ``fill_gaps`` over frames pushed one at a time: a
    frame is returned ``horizon`` frames after it, when no later frame can
    change its result.

    Why that many: the library is causal, so a box's library track is known at
    once. But a track starting at frame ``s`` is joined using the other tracks'
    last boxes before ``s``, and a track last matched at ``a`` can still be
    matched up to frame ``a + lost`` (``lost``: the library's own count of
    frames a track survives unmatched), so the join is final once frame
    ``s + lost - 1`` is seen; it is made at ``s + lost + 1`` (a margin of two).
    A gap is then filled from the box after it, up to ``fill`` frames later,
    whose id must be final too: ``horizon = lost + 1 + fill``.
    """

    def __init__(self, frame_rate: float, settings: TrackerSettings = TrackerSettings()) -> None:
        self._rate, self._settings = frame_rate, settings
        self._trackers: dict[str, Any] = {}  # per label, created when it first shows
        self._tracks: dict[str, dict[int, _Track]] = {}  # label -> library id -> track
        self._orders: dict[str, int] = {}  # label -> tracks seen
        self._starts: deque[tuple[int, list[_Track]]] = deque()  # joins not yet made
        self._seen: deque[tuple[int, Sequence[TrackBox], list[_Track | None]]] = deque()
        # Final ids (and their boxes' labels) of the frames whose fills are not.
        self._waiting: deque[tuple[list[int | None], list[str]]] = deque()
        self._numbers = self._returned = 0  # ids given, the highest id returned
        self._counts: dict[str, int] = {}  # label -> ids returned
        self._next = self._done = 0  # frames pushed, frames returned
        self._finished = False
        self._lost = self._join_wait = 0
        self._own = 0  # tracks of our own started (keyed -1, -2, ...)
        self._shot = 0  # shots begun: tracks are keyed by (shot, library id)
        if settings.enabled:
            # The library's own count, whatever rounding it does of frame_rate.
            self._lost = library_tracker(settings, frame_rate).maximum_frames_without_update
            self._join_wait = self._lost + 1
        self._filler = GapFiller(fill_frames(settings.fill_seconds, frame_rate)
                                 if settings.enabled else 0)

    @property
    def horizon(self) -> int:
        """Frames a frame waits before it is final (0 when nothing is tracked)."""
        return self._join_wait + self._filler.most

    def push(self, boxes: Sequence[TrackBox], new_shot: bool = False) -> list[FinalFrame]:
        """The next frame's boxes (``new_shot``: a shot starts at it); returns the
        frames that became final, in order."""
        if self._finished:
            raise RuntimeError("push after finish")
        number, self._next = self._next, self._next + 1
        if new_shot and number:
            # The library's trackers start afresh (as if the shot were the
            # video): none of their tracks is matched across the cut. The
            # tracks before stay known until settled, for joins within their
            # own shot (``_join`` keeps to one shot).
            self._shot += 1
            self._trackers = {}
        tracks = self._observe(number, boxes)
        self._seen.append((number, boxes, tracks))
        starting = sorted((t for t in tracks if t is not None and t.first == number),
                          key=lambda t: t.key)
        if starting:
            self._starts.append((number, starting))
        self._settle(number - self._join_wait)
        self._forget(number)
        return self._ready(end=False)

    def finish(self) -> list[FinalFrame]:
        """The end of the upload: the frames not returned yet."""
        self._finished = True
        self._settle(self._next)
        return self._ready(end=True)

    def counts(self) -> dict[str, int]:
        """Distinct track ids per label (labels sorted) over the frames returned."""
        return dict(sorted(self._counts.items()))

    def _observe(self, number: int, boxes: Sequence[TrackBox]) -> list[_Track | None]:
        """The track of each box: the library's, or one of its own (None: not
        tracked)."""
        found: list[_Track | None] = [None] * len(boxes)
        if not self._settings.enabled:
            return found
        for label in sorted({box.label for box in boxes} - set(self._trackers)):
            # Created when the label first shows: a tracker with no tracks given
            # no boxes is left as it was, as if it had seen the empty frames.
            self._trackers[label] = library_tracker(self._settings, self._rate)
            self._tracks.setdefault(label, {})
            self._orders.setdefault(label, 0)
        for label, tracker in self._trackers.items():
            picked = [i for i, box in enumerate(boxes) if box.label == label]
            tracked = tracker.update(to_detections(boxes, picked))
            # The library's ids come from a process-wide counter: only their
            # order is kept (new ones numbered per label in increasing order),
            # which is the order the batch code broke ties in.
            pairs = sorted((int(raw), int(index)) for index, raw
                           in zip(tracked.data.get("index", []), tracked.tracker_id) if raw >= 0)
            for raw, index in pairs:
                found[index] = self._track(label, raw, number, boxes[index])
        # A box the library leaves without a track starts one of its own, as
        # every auto box carries a trackId (README): ByteTrack's low-score box
        # that no track takes, or a box SORT's second, greedy matching of boxes
        # to tracks (after the update) would leave out. Keyed below the
        # library's ids (>= 0).
        for index, box in enumerate(boxes):
            if found[index] is None:
                self._own -= 1
                found[index] = self._track(box.label, self._own, number, box)
        return found

    def _track(self, label: str, raw: int, number: int, box: TrackBox) -> _Track:
        key = (self._shot, raw)  # a new shot's library may number its tracks anew
        track = self._tracks[label].get(key)
        if track is None:
            track = self._tracks[label][key] = _Track(label, self._orders[label], number, box,
                                                      self._shot)
            self._orders[label] += 1
        else:
            track.last, track.last_box = number, box
        return track

    def _settle(self, upto: int) -> None:
        """Joins the tracks starting at frames <= ``upto`` (their candidates' last
        boxes are final by now), then numbers those frames' boxes."""
        while self._starts and self._starts[0][0] <= upto:
            for track in self._starts.popleft()[1]:  # in (label, order) order
                self._join(track)
        while self._seen and self._seen[0][0] <= upto:
            _, boxes, tracks = self._seen.popleft()
            ids = [None if track is None else self._number(track.chain) for track in tracks]
            self._waiting.append((ids, [box.label for box in boxes]))
            self._filler.add(boxes, ids)

    def _join(self, track: _Track) -> None:
        """Continues the nearest track of its label that ended within lost_seconds
        before it starts, within join_reach box sizes per frame between them
        (ties to the lower key); each ended track is continued once at most."""
        most = self._settings.lost_seconds * self._rate
        near = []
        for old in self._tracks[track.key[0]].values():
            # (The batch code also skipped an old track already joined to this
            # one: it cannot be, since it ended before this one started.)
            gap = track.first - old.last
            if old.continued or old.shot != track.shot or not 0 < gap <= most:
                continue
            distance = _distance(old.last_box, track.first_box)
            if distance <= self._settings.join_reach * gap:
                near.append((distance, old.key, old))
        if near:
            old = min(near, key=lambda candidate: candidate[:2])[2]
            old.continued = True
            track.chain = old.chain

    def _number(self, chain: _Chain) -> int:
        """Ids in order of first appearance (frames are numbered in order)."""
        if chain.number is None:
            self._numbers += 1
            chain.number = self._numbers
        return chain.number

    def _forget(self, number: int) -> None:
        """Drops the tracks the library can no longer match (last seen more than
        ``lost`` frames ago) that no join still to make can continue."""
        future = number - self._join_wait + 1  # the first frame still to join
        for tracks in self._tracks.values():
            for raw in [raw for raw, track in tracks.items()
                        if track.last + self._lost < number
                        and future - track.last > self._settings.lost_seconds * self._rate]:
                del tracks[raw]

    def _ready(self, end: bool) -> list[FinalFrame]:
        done = []
        for filled in self._filler.take(end):
            ids, labels = self._waiting.popleft()
            for track, label in zip(ids, labels):
                # Ids are given in order of first appearance: one above all those
                # returned before is new.
                if track is not None and track > self._returned:
                    self._returned = track
                    self._counts[label] = self._counts.get(label, 0) + 1
            done.append(FinalFrame(self._done, ids, filled))
            self._done += 1
        return done


class _Chain:
    """Tracks joined into one: they share the id given at its first box."""

    def __init__(self) -> None:
        self.number: int | None = None


class _Track:
    """One of the library's tracks: its first and (so far) last box."""

    def __init__(self, label: str, order: int, number: int, box: TrackBox,
                 shot: int = 0) -> None:
        self.key = (label, order)  # sorts as the library's (label, id) would
        self.shot = shot
        self.first, self.first_box = number, box
        self.last, self.last_box = number, box
        self.chain = _Chain()
        self.continued = False  # a later track continues it already


def _distance(a: TrackBox, b: TrackBox) -> float:
    """Between the centres, in box sizes of ``a``."""
    dx, dy = (b.x + b.w / 2) - (a.x + a.w / 2), (b.y + b.h / 2) - (a.y + a.h / 2)
    return (dx * dx + dy * dy) ** 0.5 / max(1e-6, (a.w * a.h) ** 0.5)


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
