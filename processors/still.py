"""Still frames: a sampled frame that shows nothing new next to the last kept
frame of its shot (issue 19, ``skip_still``).

``StillFilter.keep(frame)`` says whether to keep a frame; the caller calls
``reset()`` at every shot cut (the first frame of a shot is always kept) and
at every fixed line of its sample grid that a segment may start on (a task
boundary), so that a decision depends only on frames since the last reset,
which a segment decodes itself: one pass and segments then agree.

What "nothing new" means was measured (bench/bench_shots.py, BENCHMARKS.md
"Shots") on generated footage put through libx264 (sensor noise sigma 1.5-4,
crf 23, GOP 2 s; fixed cameras at 320x180 and 640x360, and edits with pans,
movers, flashes, dark shots) against exact ground truth, for four distances
between the frame and the last kept one:

* ``phash`` / ``dhash`` (imagehash, 64 bits) and ``ssim`` (1 - mean SSIM):
  global by design. A 10x10 box entering a 320x180 frame flips no hash bit
  and moves the mean SSIM less than noise does: at any threshold that keeps
  every changed frame they leave out 0-6 % of the still ones. Unusable.
* ``block`` (the filter's): the frame at ``SMALL_WIDTH`` pixels, BGR (a red
  object on a background of its brightness changes no grey), blurred a little,
  the absolute difference averaged over ``BLOCK``x``BLOCK`` blocks, the
  largest over blocks and channels. Averaging cancels noise (independent from
  pixel to pixel) while an object fills its block. Still pairs measured up to
  12 levels (320x180 at sigma 4, across a keyframe: the least averaging), a
  change of >= 2 source pixels down to 5.6 (a dim object in a dark shot).
  ``THRESHOLD`` 8: at 5 fps it left out 97.4 % of the still frames and kept
  every changed one; sampling every frame, 99.2 % and 99.8 % (the 4 lost: a
  2-pixel step of a dim object in a dark shot, whose next step was kept, as
  moves add up against the last kept frame). 10 and 12 leave out more
  (98-100 %) but lose more changes: when in doubt, keep.
"""
from __future__ import annotations

from typing import Callable

import av
import cv2
from av.video.reformatter import VideoReformatter
import imagehash
import numpy as np
from PIL import Image

from processors.shots import small_frame

SMALL_WIDTH = 160  # pixels: a 1080p frame's 12x12 pixels averaged into one
BLOCK = 2  # pixels of the small frame: 2x2 ~ 24x24 at 1080p, 4x4 at 320 wide
THRESHOLD = 8.0  # levels (0..255) in the most changed block and channel: see the docstring
METRICS = ("block", "ssim", "phash", "dhash")


def prepare(frame: av.VideoFrame | np.ndarray, order: str = "rgb",
            reformatter: VideoReformatter | None = None) -> np.ndarray:
    """``frame`` as the distances compare it: small BGR float32, blurred a little
    (noise that differs from pixel to pixel cancels, an object does not).
    ``reformatter``: the caller's swscale context (processors.shots.small_frame)."""
    small = small_frame(frame, SMALL_WIDTH, order, reformatter).astype(np.float32)
    return cv2.GaussianBlur(small, (3, 3), 0)


def block_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Levels of change in the most changed BLOCK x BLOCK block of any channel
    (colour too: a red object on a background of its brightness shows in no grey)."""
    diff = np.abs(a - b)
    h, w = diff.shape[:2]
    grid = (max(1, w // BLOCK), max(1, h // BLOCK))
    return float(cv2.resize(diff, grid, interpolation=cv2.INTER_AREA).max())


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def ssim_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - mean SSIM of the grey frames (Gaussian window, sigma 1.5, as Wang et al.)."""
    a, b = _grey(a), _grey(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur: Callable[[np.ndarray], np.ndarray] = lambda x: cv2.GaussianBlur(x, (7, 7), 1.5)
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / \
        ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(1 - ssim.mean())


def _hash_distance(kind: Callable) -> Callable[[np.ndarray, np.ndarray], float]:
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        image = lambda x: Image.fromarray(np.clip(_grey(x), 0, 255).astype(np.uint8))
        return float(kind(image(a)) - kind(image(b)))
    return distance


DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "block": block_distance,
    "ssim": ssim_distance,
    "phash": _hash_distance(imagehash.phash),
    "dhash": _hash_distance(imagehash.dhash),
}


class StillFilter:
    """Keeps a frame unless it differs from the last kept frame (since the last
    ``reset``) by less than ``threshold`` in ``metric``."""

    def __init__(self, threshold: float = THRESHOLD, metric: str = "block") -> None:
        if metric not in DISTANCES:
            raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
        if threshold < 0:
            raise ValueError(f"threshold {threshold} < 0")
        self.threshold, self.metric = threshold, metric
        self._distance = DISTANCES[metric]
        self._kept: np.ndarray | None = None
        self.left_out = 0
        # PERFORMANCE: one swscale context for all frames; a new one per frame
        # costs more than the rest of ``keep`` at 1080p (bench/bench_shots_cost.py).
        self._reformatter = VideoReformatter()

    def reset(self) -> None:
        """A new shot (or a grid line a segment may start on): keep the next frame."""
        self._kept = None

    def keep(self, frame: av.VideoFrame | np.ndarray, order: str = "rgb") -> bool:
        """Whether ``frame`` shows something new (it becomes the reference) or not."""
        image = prepare(frame, order, self._reformatter)
        if self._kept is None or self._kept.shape != image.shape or \
                self._distance(image, self._kept) >= self.threshold:
            self._kept = image
            return True
        self.left_out += 1
        return False
