"""OnlineTracks: frames pushed one at a time get, ``horizon`` frames later, the
very ids and filled boxes the batch computation over the whole upload gives,
and never other ones afterwards (a published task's trackIds never change).

The reference is the batch code as it was before tracking went online, copied
verbatim below with the later fixes (issue 17: every box gets a track, marked
there); the library trackers are the real ones (``trackers``).
"""
from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from tracking_scene import detect, sampled

from annotation import track_library, tracking
from annotation.tracking import FinalFrame, OnlineTracks, TrackBox, TrackerSettings

# ---- The reference: annotation/tracking.py's batch code, verbatim. ----------
# ruff: noqa: B008 (its default TrackerSettings(), as in the module)


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
        found = _with_own_tracks(frames, found)
    joined = _join(frames, found, frame_rate, settings)
    ids: dict[tuple[str, int], int] = {}
    return [[_renumber(joined.get(found.get((number, i))), ids) for i in range(len(boxes))]
            for number, boxes in enumerate(frames)]


def _with_own_tracks(frames: Sequence[Sequence[TrackBox]],
                     found: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
    """(Issue 17.) Each box the library left untracked is a track of its own.
    Keys become (label, first frame, 0, library id) and (label, frame, 1, box
    index): the order the tracks were created in, the library's first."""
    first: dict[Any, int] = {}
    for (number, _), key in sorted(found.items()):
        first.setdefault(key, number)
    return {(number, index): (found[(number, index)][0], first[found[(number, index)]], 0,
                              found[(number, index)][1])
            if (number, index) in found else (box.label, number, 1, index)
            for number, boxes in enumerate(frames) for index, box in enumerate(boxes)}


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
    # (Issue 17.) The library's trackers and boxes as the module gives them:
    # ByteTrack gives a track's first box its id, tracks survive at least one
    # frame, boxes are at least 1 px wide and high.
    return track_library.library_tracker(settings, frame_rate)


_detections = track_library.to_detections


# ---- Helpers. ----------------------------------------------------------------

Frames = list[list[TrackBox]]


def reference(frames: Frames, rate: float,
              settings: TrackerSettings) -> tuple[list, list]:
    ids = assign_tracks(frames, rate, settings)
    return ids, fill_gaps(frames, ids, rate, settings.fill_seconds)


def reference_counts(frames: Sequence[Sequence[TrackBox]],
                     ids: Sequence[Sequence[int | None]]) -> dict[str, int]:
    """Distinct ids per label, as jobs/tracks.py's tracked_boxes counts them."""
    labels: dict[str, set[int]] = {}
    for boxes, row in zip(frames, ids):
        for box, track in zip(boxes, row):
            if track is not None:
                labels.setdefault(box.label, set()).add(track)
    return {label: len(tracks) for label, tracks in sorted(labels.items())}


def pushed(frames: Frames, rate: float, settings: TrackerSettings,
           cut: int | None = None) -> tuple[list[list[FinalFrame]], OnlineTracks]:
    """What each push (and finish, last, unless ``cut`` pushes stop it) returned."""
    online = OnlineTracks(rate, settings)
    returns = [online.push(boxes) for boxes in frames[:cut]]
    return returns + ([online.finish()] if cut is None else []), online


def check_online(frames: Frames, rate: float, settings: TrackerSettings) -> None:
    """Online == the reference for every frame, each frame returned exactly
    ``horizon`` pushes after its own, counts() as the reference counts; the
    module's batch functions (built on OnlineTracks) give the reference too."""
    ids, fills = reference(frames, rate, settings)
    returns, online = pushed(frames, rate, settings)
    done = [final for frames_returned in returns for final in frames_returned]
    assert [final.number for final in done] == list(range(len(frames)))
    assert [final.ids for final in done] == ids
    assert [final.filled for final in done] == fills
    returned = list(itertools.accumulate(len(r) for r in returns[:-1]))
    assert returned == [max(0, k - online.horizon) for k in range(1, len(frames) + 1)]
    assert online.counts() == reference_counts(frames, ids)
    assert tracking.assign_tracks(frames, rate, settings) == ids
    assert tracking.fill_gaps(frames, ids, rate, settings.fill_seconds) == fills


def check_final(frames: Frames, rest: Frames, rate: float, settings: TrackerSettings) -> None:
    """The frames returned while pushing ``frames`` are the reference result of
    ``frames + rest``, whatever ``rest`` is: nothing after them changes them."""
    returns, online = pushed(frames, rate, settings, cut=len(frames))
    done = [final for frames_returned in returns for final in frames_returned]
    whole = frames + rest
    ids, fills = reference(whole, rate, settings)
    assert [final.ids for final in done] == ids[:len(done)]
    assert [final.filled for final in done] == fills[:len(done)]
    assert online.counts() == reference_counts(whole[:len(done)], ids[:len(done)])


def scene(rate: int, seed: int) -> Frames:
    """The noisy scene's detections at ``rate`` fps, as test_tracking.py builds them."""
    return [detect(frame, seed=seed) for frame in sampled(rate)]


KINDS = [TrackerSettings(kind="sort"), TrackerSettings(kind="bytetrack")]


# ---- (a) The noisy scene. ----------------------------------------------------

@pytest.mark.parametrize("settings", KINDS, ids=lambda s: s.kind)
@pytest.mark.parametrize("rate", [2, 5, 10])
def test_the_noisy_scene_online_is_the_batch_result(rate, settings):
    for seed in range(3):
        check_online(scene(rate, seed), rate, settings)


@pytest.mark.parametrize("settings", KINDS, ids=lambda s: s.kind)
def test_the_noisy_scene_cut_anywhere_keeps_the_returned_frames(settings):
    """(c) on the scene: whatever follows a cut, the frames returned before it
    stand, including after a continuation that replays recent frames backwards
    (lost tracks reappear, new tracks start where old ones ended)."""
    frames = scene(5, seed=1)
    rng = np.random.default_rng(7)
    for cut in sorted(rng.choice(len(frames), 6, replace=False)):
        for rest in (frames[cut:], [], frames[max(0, cut - 12):cut][::-1],
                     [[]] * 3 + frames[max(0, cut - 4):cut]):
            check_final(frames[:cut], rest, 5, settings)


# ---- (b), (c) Generated boxes. -----------------------------------------------

@st.composite
def sequences(draw: Any) -> Frames:
    """A few objects of two labels moving, jumping, vanishing for a while; some
    stray boxes; empty frames; boxes in any order within a frame."""
    length = draw(st.integers(0, 24))
    objects = draw(st.lists(st.tuples(
        st.sampled_from("ab"), st.integers(0, 120), st.integers(0, 60),  # label, x, y
        st.integers(-25, 25), st.integers(-10, 10), st.integers(8, 40),  # vx, vy, size
        st.lists(st.sampled_from("mmmmvj"), min_size=length, max_size=length),
        st.sampled_from([0.3, 0.6, 0.9])), max_size=4))
    frames: Frames = [[] for _ in range(length)]
    for label, x, y, vx, vy, size, events, score in objects:
        for number, event in enumerate(events):
            x, y = x + vx, y + vy
            if event == "j":  # a jump: the object is elsewhere from now on
                x, y = x + draw(st.integers(-60, 60)), y + draw(st.integers(-30, 30))
            if event != "v":
                frames[number].append(TrackBox(label, float(x), float(y), size, size, score))
    for number in draw(st.lists(st.integers(0, max(0, length - 1)), max_size=3)):
        if length:
            frames[number].append(TrackBox(draw(st.sampled_from("ab")), 50.0, 20.0, 15, 15,
                                           draw(st.sampled_from([0.3, 0.9]))))
    return [draw(st.permutations(boxes)) for boxes in frames]


tracker_settings = st.builds(
    TrackerSettings, kind=st.sampled_from(["sort", "bytetrack"]),
    lost_seconds=st.sampled_from([0.3, 1.0, 2.0]), min_iou=st.sampled_from([0.01, 0.3]),
    high_score=st.sampled_from([0.5, 0.8]), fill_seconds=st.sampled_from([0.0, 0.5, 1.5]),
    join_reach=st.sampled_from([0.0, 1.0, 4.0]))
rates = st.sampled_from([1, 2, 3.3, 5, 10])
generated = hyp_settings(max_examples=150, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


@generated
@given(frames=sequences(), rate=rates, settings=tracker_settings)
def test_generated_boxes_online_are_the_batch_result(frames, rate, settings):
    check_online(frames, rate, settings)


@generated
@given(frames=sequences(), rest=sequences(), rate=rates, settings=tracker_settings,
       data=st.data())
def test_generated_boxes_cut_anywhere_keep_the_returned_frames(frames, rest, rate, settings,
                                                              data):
    """(c): after k pushes, what was returned is the reference over the whole
    sequence, for an unrelated continuation and for recent frames replayed."""
    cut = data.draw(st.integers(0, len(frames)))
    replay = frames[max(0, cut - 8):cut]
    for after in (frames[cut:], rest, replay[::-1], rest[:2] + replay):
        check_final(frames[:cut], after, rate, settings)


# ---- (d) Horizon, counts, determinism, memory. -------------------------------

def test_the_horizon():
    """The library's lost-frame count (lost_track_buffer = lost_seconds * 30,
    scaled by frame_rate / 30), one frame to join, one of margin, plus the
    frames of fill_seconds; 0 when nothing is tracked."""
    assert OnlineTracks(5).horizon == 10 + 1 + 2  # 2.6 s at 5 fps
    assert OnlineTracks(2).horizon == 4 + 1 + 1
    assert OnlineTracks(10).horizon == 20 + 1 + 5
    assert OnlineTracks(5, TrackerSettings(kind="bytetrack")).horizon == 13
    assert OnlineTracks(5, TrackerSettings(fill_seconds=0)).horizon == 11
    assert OnlineTracks(5, TrackerSettings(kind="none")).horizon == 0
    for rate in (1, 2, 3.3, 5, 7.5, 10, 30):
        for seconds in (0.3, 1.0, 2.0):
            settings = TrackerSettings(lost_seconds=seconds, fill_seconds=0)
            lost = track_library.library_tracker(settings, rate).maximum_frames_without_update
            assert lost == max(1, int(rate / 30.0 * max(1, round(seconds * 30))))
            assert OnlineTracks(rate, settings).horizon == lost + 1


def test_nothing_tracked_returns_each_frame_at_once():
    frames = scene(5, seed=0)[:20]
    online = OnlineTracks(5, TrackerSettings(kind="none"))
    for number, boxes in enumerate(frames):
        assert online.push(boxes) == [FinalFrame(number, [None] * len(boxes), [])]
    assert online.finish() == [] and online.counts() == {}


def test_counts_grow_with_the_frames_returned():
    frames = scene(5, seed=2)
    ids, _ = reference(frames, 5, TrackerSettings())
    online = OnlineTracks(5)
    returned = 0
    for boxes in frames:
        returned += len(online.push(boxes))
        assert online.counts() == reference_counts(frames[:returned], ids[:returned])
    online.finish()
    assert online.counts() == reference_counts(frames, ids)
    assert sum(online.counts().values()) >= 7  # the scene's seven objects at least


def test_ids_do_not_depend_on_the_library_counter():
    """Two uploads tracked at once in one process (the library's process-wide
    counter interleaved between them): each gets the ids it gets alone."""
    one, two = scene(5, seed=3), scene(5, seed=4)
    alone = [reference(frames, 5, TrackerSettings())[0] for frames in (one, two)]
    a, b = OnlineTracks(5), OnlineTracks(5)
    got: list[list[FinalFrame]] = [[], []]
    for boxes_a, boxes_b in zip(one, two):
        got[0] += a.push(boxes_a)
        got[1] += b.push(boxes_b)
    got[0] += a.finish()
    got[1] += b.finish()
    assert [[final.ids for final in frames] for frames in got] == alone


def test_memory_stays_bounded_on_a_long_upload():
    """An hour-long stream keeps only the look-ahead's frames and the tracks a
    join or a gap can still use, not the whole upload."""
    online = OnlineTracks(5)
    most = 0
    for number in range(1500):
        # Objects living 40 frames each, a new one every 10 frames.
        boxes = [TrackBox("a", float((number - born) * 5), float(born % 300), 20, 20, 0.9)
                 for born in range(max(0, number - 39) // 10 * 10, number + 1, 10)]
        online.push(boxes)
        kept = sum(len(tracks) for tracks in online._tracks.values())
        most = max(most, kept, len(online._filler._last))
        assert len(online._seen) <= online._join_wait + 1
        assert len(online._waiting) <= online._filler.most + 1
    assert most <= 12, most
