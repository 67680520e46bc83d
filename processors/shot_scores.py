"""The per-frame tests of processors/shots.py: PySceneDetect's
ContentDetector, HashDetector and ThresholdDetector as it runs them
(``min_scene_len=0``, default weights, no stats manager), with the library's
arithmetic; and the camera-motion test (``camera_moved``).

PERFORMANCE (issue 19, "Cost"): importing ``scenedetect`` costs a pipeline
~0.1 s of CPU (it pulls in tqdm, asyncio, email, its ffmpeg and mkvmerge
wrappers...), half of what the whole shot stage may cost a 30 s upload, and
its detectors each convert the frame on their own (HSV, grey, three int32
copies per plane). Here the grey frame is shared, and the HSV difference is
one ``cv2.norm``. The same decisions: fed the same frames, every method gave
the very cuts it gave with the library's detectors on the benchmark's edits
(bench/bench_shots.py), sampling every frame and at 5 fps. AdaptiveDetector
(its rolling window) still comes from the library, imported only by the
methods that use it.
"""
from __future__ import annotations

import cv2
import numpy as np


def median(values: np.ndarray) -> np.floating:
    """``np.median(values)`` (the same value and type) for values without NaN.

    PERFORMANCE: np.median's NaN check imports numpy.ma on its first call,
    ~0.05-0.1 s of CPU in a pipeline that has no other use for it."""
    flat = values.ravel()
    half = flat.size // 2
    if flat.size % 2:
        return np.partition(flat, half)[half]
    low, high = np.partition(flat, (half - 1, half))[half - 1:half + 1]
    return (low + high) / 2  # np.median: the mean of the two, in the values' type


# Camera motion: a change that a global shift of at most MOTION_LIMIT of the frame explains, leaving
# under MOTION_RATIO of the difference, is not a cut.
MOTION_LIMIT = 1 / 3
MOTION_RATIO = 0.5


class ContentScore:
    """ContentDetector: a cut into a frame when the mean absolute difference of
    its HSV planes and the previous frame's (hue, saturation and value
    weighted alike, edges not counted) reaches ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._last: np.ndarray | None = None

    def process(self, seq: int, bgr: np.ndarray, grey: np.ndarray) -> list[int]:
        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        last, self._last = self._last, hsv
        if last is None:
            return []
        return [seq] if self._mean_distance(hsv, last) >= self.threshold else []

    @classmethod
    def score(cls, before: np.ndarray, after: np.ndarray) -> float:
        """The score of BGR frame ``after`` following ``before``."""
        return cls._mean_distance(cv2.cvtColor(after, cv2.COLOR_BGR2HSV),
                                  cv2.cvtColor(before, cv2.COLOR_BGR2HSV))

    @staticmethod
    def _mean_distance(hsv: np.ndarray, last: np.ndarray) -> float:
        # The library: the mean of each plane's sum of |a - b| over the pixels.
        return cv2.norm(hsv, last, cv2.NORM_L1) / hsv.size


class HashScore:
    """HashDetector (size 8, lowpass 2): a cut into a frame when the share of
    differing bits of its perceptual hash and the previous frame's reaches
    ``threshold``. The hash: the grey frame area-resized to 16x16, divided by
    its brightest value, DCT, the 8x8 lowest frequencies above their median."""

    SIZE, LOWPASS = 8, 2

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._last: np.ndarray | None = None

    def process(self, seq: int, bgr: np.ndarray | None, grey: np.ndarray) -> list[int]:
        side = self.SIZE * self.LOWPASS
        resized = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
        brightest = resized.max() or 1  # an all-black frame: not divided by 0
        low = cv2.dct(np.float32(resized) / brightest)[:self.SIZE, :self.SIZE]
        bits = low > median(low)
        last, self._last = self._last, bits
        if last is None:
            return []
        distance = np.count_nonzero(bits != last) / float(self.SIZE * self.SIZE)
        return [seq] if distance >= self.threshold else []


class FadeScore:
    """ThresholdDetector (floor method, fade_bias +1, min_out_length 0): a
    boundary at the first frame whose mean (over pixels and channels) is back
    at or above ``threshold`` after one under it."""

    def __init__(self, threshold: float) -> None:
        self.threshold = int(threshold)  # the library's
        self._dark: bool | None = None

    def process(self, seq: int, mean: float) -> list[int]:
        dark, was_dark = mean < self.threshold, self._dark
        self._dark = dark
        return [seq] if was_dark and not dark else []


class LibraryScore:
    """One of PySceneDetect's own detectors (AdaptiveDetector) behind the same
    ``process``; the library is imported only here, by the methods that need it."""

    def __init__(self, detector: object, rate: float) -> None:
        self.detector, self.rate = detector, rate

    def process(self, seq: int, bgr: np.ndarray, grey: np.ndarray) -> list[int]:
        from scenedetect import FrameTimecode
        timecode = FrameTimecode(seq, fps=self.rate)
        return [cut.frame_num for cut in self.detector.process_frame(timecode, bgr)]


def camera_moved(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether a global shift of ``before`` explains ``after``: the shift is
    under MOTION_LIMIT of the frame and leaves, where the two overlap, a median
    difference under MOTION_RATIO of the plain one. The shift is measured by
    phase correlation over the whole frame and over each quarter, as a large
    moving object can outweigh the background in the whole; the median lets
    such an object be (a minority of the pixels) without spoiling the fit."""
    h, w = after.shape
    if h < 16 or w < 16 or before.shape != after.shape:
        return False
    plain = float(median(np.abs(after - before)))
    if plain == 0:
        return False
    best = plain
    for sx, sy in _shifts(before, after):
        if (sx, sy) == (0, 0) or abs(sx) > MOTION_LIMIT * w or abs(sy) > MOTION_LIMIT * h:
            continue  # no camera move (objects moving at most), or too far for one
        # after(x, y) ~ before(x - sx, y - sy): compare where both see the same place.
        moved = after[max(0, sy):h + min(0, sy), max(0, sx):w + min(0, sx)]
        still = before[max(0, -sy):h - max(0, sy), max(0, -sx):w - max(0, sx)]
        best = min(best, float(median(np.abs(moved - still))))
    return best < MOTION_RATIO * plain


def _shifts(before: np.ndarray, after: np.ndarray, peaks: int = 6) -> list[tuple[int, int]]:
    """Candidate shifts of ``after`` against ``before``: the highest peaks of
    their phase correlation (not only the highest, which a large moving object
    may hold while the background's peak comes second)."""
    h, w = after.shape
    window = _hanning(w, h)
    spectrum = np.fft.rfft2(after * window) * np.conj(np.fft.rfft2(before * window))
    surface = np.fft.irfft2(spectrum / np.maximum(np.abs(spectrum), 1e-9), s=(h, w))
    surface = surface.astype(np.float32)
    tops = surface == cv2.dilate(surface, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero(tops)
    order = np.argsort(surface[ys, xs])[::-1][:peaks]
    # a peak at (y, x) is a shift of y (or y - h) rows and x (or x - w) columns
    found = [(int(x - w if x > w // 2 else x), int(y - h if y > h // 2 else y))
             for y, x in zip(ys[order], xs[order])]
    return found + _tracked_shift(before, after)


def _tracked_shift(before: np.ndarray, after: np.ndarray) -> list[tuple[int, int]]:
    """The median motion of a grid of points followed by pyramidal Lucas-Kanade:
    where the background is smooth, phase correlation finds only the movers."""
    h, w = after.shape
    ys, xs = np.mgrid[h // 10:h:h // 5, w // 16:w:w // 8]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32).reshape(-1, 1, 2)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(before.astype(np.uint8), after.astype(np.uint8),
                                                points, None, winSize=(21, 21), maxLevel=3)
    kept = status.ravel() == 1
    if kept.sum() < len(points) // 2:
        return []
    shifts = (moved - points)[kept].reshape(-1, 2)
    dx, dy = median(shifts[:, 0]), median(shifts[:, 1])
    return [(round(float(dx)), round(float(dy)))]


_HANNING: dict[tuple[int, int], np.ndarray] = {}


def _hanning(w: int, h: int) -> np.ndarray:
    if (w, h) not in _HANNING:
        _HANNING[(w, h)] = cv2.createHanningWindow((w, h), cv2.CV_32F)
    return _HANNING[(w, h)]
