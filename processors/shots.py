"""Shot boundaries over the sampled frames, one frame at a time (issue 19).

The pipeline hands each sampled frame (a yuv420p ``av.VideoFrame``, or an RGB
array) to ``ShotDetector.push`` with its source frame number; the detector
downscales it (``small_grey``: ~0.45 ms at 1080p through swscale's area
filter, luma only; ``small_frame`` in BGR, ~0.7 ms, where content needs it)
and runs PySceneDetect's per-frame detectors on the small copy (the content,
hash and fade ones with the library's arithmetic in processors/shot_scores.py,
without importing it). No second decode: the frames are the ones the
pipeline already has.

Methods (``ShotDetector(method=...)``; figures in BENCHMARKS.md, "Shots"):

* ``content``: PySceneDetect's ContentDetector (HSV difference of two
  consecutive sampled frames against a fixed threshold);
* ``hash``: its HashDetector (DCT perceptual hash distance of two frames);
* ``adaptive``: its AdaptiveDetector (ContentDetector's score over the mean
  score of ``window_width`` frames on either side: it needs frames *after*
  the candidate, so its decisions come ``delay`` frames late);
* ``vote``: a cut where two of content, adaptive and hash agree;
* ``content+hash`` (default, chosen by measurement) and ``adaptive+hash``:
  a cut where both agree. Content and adaptive fire on flashes (the hash,
  normalised by the frame's brightest value, does not), the hash alone on
  some fast motion; adaptive misses short shots (a cut raises its own
  window's mean). content+hash decides at once (``delay`` 0).

Every method also runs ThresholdDetector (``fades=True``): a fade through
black is one boundary, at the first frame that comes back above the black
level (fade_bias=+1); hard-cut votes between near-black frames (DIM_LEVEL)
are dropped, as they are noise, and so are votes between two frames whose
coarse pictures (16 pixels wide) mostly agree (COARSE_LEVEL): a cut changes
most of the picture's layout, heavy sensor noise (which the library's
detectors see at full strength on a frame already under SMALL_WIDTH) only
its detail. And with ``motion=True`` a vote is dropped
where a camera move explains the change (``camera_moved``): at 5 fps a fast
pan moves the picture a tenth of its width between samples, which every
library detector takes for a cut.

Bounded, so that segments agree with one pass: every library detector is
built with ``min_scene_len=0`` (their minimum-length filters remember the
last cut, which may lie anywhere before), so the decision for frame ``i``
depends only on sampled frames ``i - window`` .. ``i + delay``. A segment
that starts at sampled frame ``s`` pushes frames ``s - window`` .. ``s - 1``
first (its warm-up, whose results it ignores) and, at its end ``e``, frames
up to ``e + delay`` (its look-ahead), or calls ``flush`` at the video's end.
Then its cuts in ``[s, e)`` are exactly those of one pass over the video.
``flush`` decides the last ``delay`` frames with what there is (the vote of
the members that decided them), as one pass does at the video's end.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from processors.shot_scores import (ContentScore, FadeScore, HashScore, LibraryScore,
                                    camera_moved, median)

SMALL_WIDTH = 256  # pixels: enough for a cut, ~30x fewer than 1080p
# method -> (members, votes a cut needs)
METHODS: dict[str, tuple[tuple[str, ...], int]] = {
    "content": (("content",), 1),
    "adaptive": (("adaptive",), 1),
    "hash": (("hash",), 1),
    "vote": (("content", "adaptive", "hash"), 2),
    "content+hash": (("content", "hash"), 2),
    "adaptive+hash": (("adaptive", "hash"), 2),
}
DEFAULT_METHOD = "content+hash"
# ThresholdDetector's default: mean 0..255 under which a frame counts as black.
FADE_LEVEL = 12
# Hard-cut votes between two frames of which one is darker than this (mean
# 0..255) are dropped: in a fade the near-black frames are mostly noise, whose
# hue and hash jump from frame to frame; the fade detector places that boundary.
DIM_LEVEL = 16
# Hard-cut votes between two frames whose 16-pixel-wide grey pictures differ by
# less than this (median absolute difference, 0..255) are dropped. Measured
# (bench/bench_shots.py footage): at least 22 at every true cut, at most 4.5
# between frames of uniform noise of amplitude 128 (tests' square video).
COARSE_LEVEL = 8.0
COARSE_WIDTH = 16
MOTION_WIDTH = 128  # pixels of the grey frame the shift is measured on
# The library needs a rate for its timecodes; with min_scene_len=0 it is never
# used for a decision, so the sampled frames are simply numbered 0, 1, 2, ...
_RATE = 30.0


def small_frame(frame: av.VideoFrame | np.ndarray, width: int = SMALL_WIDTH,
                order: str = "rgb", reformatter: VideoReformatter | None = None) -> np.ndarray:
    """``frame`` at most ``width`` pixels wide (aspect kept), as 8-bit BGR (the
    library's format). ``order``: channel order of an array frame ("rgb" as the
    pipeline's arrays, or "bgr"); a 2-D array is taken as grey. Frames already
    narrower are not scaled up. ``reformatter``: the caller's own swscale
    context (a thread that shares the frame with others must bring one)."""
    if isinstance(frame, av.VideoFrame):
        w, h = _size(frame.width, frame.height, width)
        # PERFORMANCE: swscale's area filter straight from the yuv420p planes:
        # ~0.4 ms at 1080p where to_ndarray + cv2.resize takes ~5 ms.
        # frame.reformat would use the frame's own cached context, which another
        # stage (annotation's to_ndarray) may be using on the same frame at the
        # same time: two threads in one swscale context deadlock.
        return (reformatter or VideoReformatter()).reformat(
            frame, width=w, height=h, format="bgr24", interpolation="AREA").to_ndarray()
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or \
            (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"a frame must be uint8 HxW or HxWx3, not {array.dtype} {array.shape}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif order == "rgb":
        array = array[:, :, ::-1]
    elif order != "bgr":
        raise ValueError(f"order must be 'rgb' or 'bgr', not {order!r}")
    return _area_resize(np.ascontiguousarray(array), width)


def small_grey(frame: av.VideoFrame | np.ndarray, width: int = SMALL_WIDTH,
               order: str = "rgb", reformatter: VideoReformatter | None = None) -> np.ndarray:
    """``frame`` as ``small_frame`` gives it, in 8-bit grey (full range, within
    a level of OpenCV's BGR2GRAY of ``small_frame``'s)."""
    if isinstance(frame, av.VideoFrame):
        w, h = _size(frame.width, frame.height, width)
        # PERFORMANCE: the luma plane alone, through swscale's area filter:
        # ~0.4 ms at 1080p where BGR takes ~0.7 (most of a push's cost).
        return (reformatter or VideoReformatter()).reformat(
            frame, width=w, height=h, format="gray", interpolation="AREA").to_ndarray()
    return cv2.cvtColor(small_frame(frame, width, order), cv2.COLOR_BGR2GRAY)


def _size(w: int, h: int, width: int) -> tuple[int, int]:
    if w < 1 or h < 1:
        raise ValueError(f"an empty frame ({w}x{h})")
    if w <= width:
        return w, h
    return width, max(1, round(h * width / w))


def _area_resize(bgr: np.ndarray, width: int) -> np.ndarray:
    h, w = bgr.shape[:2]
    new_w, new_h = _size(w, h, width)
    if (new_w, new_h) == (w, h):
        return bgr
    return cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Params:
    """The library's thresholds (its defaults unless measured better)."""

    content_threshold: float = 27.0
    # The library's 0.35 is 22.4 of 64 bits: the real cut it missed (bikes.mp4,
    # bench/bench_shots_real.py) differs by 22. 0.33 (21 bits) finds every cut of
    # both benchmarks sampling every frame, costs one false cut at 5 fps in a
    # focus pull, and changes no generated figure (BENCHMARKS.md "Shots").
    hash_threshold: float = 0.33
    adaptive_threshold: float = 3.0
    adaptive_min_content: float = 15.0
    window_width: int = 2  # AdaptiveDetector: frames each side


class ShotDetector:
    """Cuts between sampled frames: ``push`` each frame in order with its
    source frame number; it returns the source frame numbers *before which* a
    new shot starts, as they become final (at most ``delay`` frames late, in
    ascending order). ``flush`` at the end of the input returns the rest.

    ``window``: sampled frames before a frame that its decision needs (the
    warm-up a segment decodes before its start); ``delay``: frames after it.
    The default (content+hash) has window 1 and delay 0: ``push`` returns
    ``[frame_no]`` when a shot starts at this very frame, else ``[]``.
    The first frame pushed never starts a shot (there is nothing before it).

    Frames: the hash, fade, coarse and camera-motion tests run on a grey
    small frame, which swscale makes from the luma plane alone; content
    (HSV) needs BGR, which costs half as much again at 1080p. Where a cut
    needs every member's vote (content+hash) content is scored only on
    frames the hash voted for, from the frame before and this one (kept),
    so most frames cost the grey frame alone (PERFORMANCE: a 1080p push
    ~0.6 ms against ~0.95). The other methods with content or adaptive (the
    library's AdaptiveDetector takes BGR) make a BGR frame of each, as does
    ``colour=True`` (the grey one is then OpenCV's grey of it).

    In the pipeline: push every sampled frame (after ``normalize``, the
    yuv420p frame the clip gets) with its source index; a segment pushes the
    ``window`` sampled frames before its first one and drops their cuts.
    """

    def __init__(self, method: str = DEFAULT_METHOD, fades: bool = True,
                 width: int = SMALL_WIDTH, params: Params = Params(),
                 motion: bool = True, colour: bool = False) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {tuple(METHODS)}, not {method!r}")
        if width < 8:
            raise ValueError(f"width {width} is too small to see a cut")
        self.method, self.width, self.params = method, width, params
        members, need = METHODS[method]
        # Content's HSV score may wait for the other members' votes where all
        # must agree (content+hash); adaptive needs BGR frames, content alone too.
        self._lazy = "content" in members and need == len(members) > 1 and \
            "adaptive" not in members and not colour
        self.colour = colour or ("content" in members and not self._lazy) or "adaptive" in members
        self._members = _members(method, params)
        self._need = need
        self._before: tuple[av.VideoFrame | np.ndarray, str] | None = None  # (frame, order)
        self._bgr: tuple[int, np.ndarray] | None = None  # the last BGR frame made, by sequence
        self._fade = FadeScore(FADE_LEVEL) if fades else None
        self.delay = max(delay for _, delay in self._members)
        # Adaptive's score of its oldest window frame needs the frame before it.
        self.window = params.window_width + 1 if self.delay else 1
        self._seq = 0
        self._frame_nos: deque[int] = deque()  # frame numbers not decided yet, from _first
        self._first = 0  # sequence number of _frame_nos[0]
        self._votes: dict[int, int] = {}
        self._fade_cuts: set[int] = set()
        self._last_no: int | None = None
        self._motion = motion
        # Grey frames not decided yet (and the one before), for the camera-motion
        # test: run only where the detectors vote a cut (PERFORMANCE: it is two
        # thirds of a push, ~2 ms at 1080p, and most frames get no vote).
        self._greys: dict[int, np.ndarray] = {}
        self._means: dict[int, float] = {}  # mean brightness of frames not decided yet (and one before)
        self._reformatter = VideoReformatter()  # this detector's own (see small_frame)
        self._coarse: np.ndarray | None = None  # the last frame, 16 pixels wide, grey
        self._alike: set[int] = set()  # frames whose coarse picture is the one before's

    def push(self, frame_no: int, frame: av.VideoFrame | np.ndarray,
             order: str = "rgb") -> list[int]:
        """Take the next sampled frame; the cuts now decided (source frame numbers)."""
        if self._last_no is not None and frame_no <= self._last_no:
            raise ValueError(f"frame {frame_no} after frame {self._last_no}: frames go forward")
        if self.colour:
            small = small_frame(frame, self.width, order, self._reformatter)
            grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)  # shared by the hash and the tests below
        else:
            small = grey = small_grey(frame, self.width, order, self._reformatter)
        # numpy's mean to the last bit (an exact sum, one division), ~5x faster
        mean = sum(cv2.sumElems(small)) / small.size
        self._means[self._seq] = mean
        self._run_members(small, grey, (frame, order))
        if self._fade is not None:
            self._fade_cuts.update(self._fade.process(self._seq, mean))
        self._last_no = frame_no
        self._frame_nos.append(frame_no)
        self._seq += 1
        return self._decide(self._seq - 1 - self.delay)

    def _run_members(self, small: np.ndarray, grey: np.ndarray,
                     frame: tuple[av.VideoFrame | np.ndarray, str]) -> None:
        """The votes on frame ``_seq``, and what the tests in ``_decide`` need."""
        coarse = _coarse(grey)
        if self._coarse is not None and \
                float(median(np.abs(coarse - self._coarse))) < COARSE_LEVEL:
            self._alike.add(self._seq)
        self._coarse = coarse
        if self._motion:
            self._greys[self._seq] = _motion_grey(grey)
        for detector, _ in self._members:
            if self._lazy and isinstance(detector, ContentScore):
                continue
            for cut in detector.process(self._seq, small, grey):
                self._vote(cut)
        if self._lazy:
            # PERFORMANCE: the BGR frames (~0.7 ms each at 1080p, where the grey
            # one takes ~0.45) only where content's vote can make a cut: the
            # same decisions as scoring every frame, as a vote needs both.
            if self._before is not None and self._votes.get(self._seq, 0) >= self._need - 1:
                before = self._bgr[1] if self._bgr and self._bgr[0] == self._seq - 1 else \
                    self._small_bgr(*self._before)
                self._bgr = (self._seq, self._small_bgr(*frame))
                if ContentScore.score(before, self._bgr[1]) >= self.params.content_threshold:
                    self._vote(self._seq)
            # A VideoFrame is not written to again; an array may be the caller's
            # buffer for the next frame: its small copy is kept instead.
            self._before = frame if isinstance(frame[0], av.VideoFrame) else \
                (self._small_bgr(*frame), "bgr")

    def _small_bgr(self, frame: av.VideoFrame | np.ndarray, order: str) -> np.ndarray:
        return small_frame(frame, self.width, order, self._reformatter)

    def flush(self) -> list[int]:
        """The cuts among the last ``delay`` frames, decided by the members that
        could (the adaptive member cannot see past the end)."""
        return self._decide(self._seq - 1, at_end=True)

    def _camera_moved(self, seq: int) -> bool:
        """Whether a camera move explains the change into frame ``seq``."""
        return self._motion and seq > 0 and camera_moved(self._greys[seq - 1], self._greys[seq])

    def _vote(self, seq: int) -> None:
        if seq > 0:  # never before the first frame pushed
            self._votes[seq] = self._votes.get(seq, 0) + 1

    def _decide(self, through: int, at_end: bool = False) -> list[int]:
        cuts = []
        need = METHODS[self.method][1]
        while self._frame_nos and self._first <= through:
            seq, frame_no = self._first, self._frame_nos.popleft()
            self._first += 1
            votes = self._votes.pop(seq, 0)
            if at_end and self.delay and seq > self._seq - 1 - self.delay:
                need = min(need, len(self._members) - 1) or 1  # adaptive abstains here
            if votes >= need and (seq in self._alike or self._camera_moved(seq) or (
                    seq > 0 and min(self._means[seq - 1], self._means[seq]) < DIM_LEVEL)):
                votes = 0
            self._alike.discard(seq)
            self._means.pop(seq - 1, None)
            self._greys.pop(seq - 1, None)
            if seq > 0 and (votes >= need or seq in self._fade_cuts):
                cuts.append(frame_no)
            self._fade_cuts.discard(seq)
        return cuts


def _coarse(grey: np.ndarray) -> np.ndarray:
    h, w = grey.shape
    return cv2.resize(grey, (COARSE_WIDTH, max(1, round(h * COARSE_WIDTH / w))),
                      interpolation=cv2.INTER_AREA).astype(np.float32)


def _motion_grey(grey: np.ndarray) -> np.ndarray:
    h, w = grey.shape
    if w > MOTION_WIDTH:
        grey = cv2.resize(grey, (MOTION_WIDTH, max(1, round(h * MOTION_WIDTH / w))),
                          interpolation=cv2.INTER_AREA)
    return grey.astype(np.float32)


def _members(method: str, p: Params) -> list[tuple[ContentScore | HashScore | LibraryScore, int]]:
    """The detectors a method runs, each with its look-ahead in frames."""
    made = {
        "content": lambda: (ContentScore(p.content_threshold), 0),
        "hash": lambda: (HashScore(p.hash_threshold), 0),
        "adaptive": lambda: (_adaptive(p), p.window_width),
    }
    return [made[name]() for name in METHODS[method][0]]


def _adaptive(p: Params) -> LibraryScore:
    from scenedetect import AdaptiveDetector  # lazy: see processors/shot_scores.py
    return LibraryScore(AdaptiveDetector(adaptive_threshold=p.adaptive_threshold,
                                         min_content_val=p.adaptive_min_content,
                                         window_width=p.window_width, min_scene_len=0), _RATE)


def detect_cuts(frames: Sequence[tuple[int, av.VideoFrame | np.ndarray]],
                method: str = DEFAULT_METHOD, order: str = "rgb", **kwargs) -> list[int]:
    """All cuts of ``(frame_no, frame)`` pairs in one pass (tests, benchmarks)."""
    detector = ShotDetector(method, **kwargs)
    cuts = []
    for frame_no, frame in frames:
        cuts += detector.push(frame_no, frame, order)
    return cuts + detector.flush()
