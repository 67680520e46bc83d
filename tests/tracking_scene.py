"""A generated multi-object scene with known tracks, a noisy detector over it, and
its scoring with motmetrics (IDF1, MOTA, ID switches).

Seven objects of two classes on a 640x360 frame at 30 fps for 12 s: constant
and changing velocities, two crossings of same-class objects, one object fully
hidden for a second, objects entering and leaving at the edges. The detector
sees the true boxes with a few pixels of jitter, misses about 10 % of them and
adds a few false boxes; it is seeded, so a scene is the same every time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import motmetrics as mm
import numpy as np

from annotation.tracking import TrackBox, TrackerSettings, assign_tracks, fill_gaps

FPS, SECONDS, WIDTH, HEIGHT = 30, 12, 640, 360


@dataclass(frozen=True)
class Actor:
    track: int
    label: str
    size: tuple[int, int]
    path: Callable[[float], tuple[float, float]]  # seconds -> centre
    hidden: tuple[float, float] = (0.0, 0.0)  # seconds when it is fully hidden


ACTORS = [
    # Two cars crossing head-on on nearly the same line (same class).
    Actor(1, "car", (60, 30), lambda t: (-40 + 60 * t, 100)),
    Actor(2, "car", (60, 30), lambda t: (680 - 55 * t, 108)),
    # A car that speeds up, crossing a slower one going down (same class).
    Actor(3, "car", (50, 26), lambda t: (80 + 6 * t * t, 60 + 20 * t)),
    Actor(4, "car", (50, 26), lambda t: (330, -30 + 35 * t)),
    # A person hidden for one second (4.0-5.0 s) mid-walk.
    Actor(5, "person", (24, 48), lambda t: (40 + 30 * t, 280), hidden=(4.0, 5.0)),
    # A person walking in at the top and out at the bottom.
    Actor(6, "person", (24, 48), lambda t: (520, -40 + 40 * t)),
    # A person zigzagging (changing velocity).
    Actor(7, "person", (24, 48), lambda t: (450 + 60 * math.sin(t), 250 + 25 * math.cos(2 * t))),
]


def truth(frame: int) -> list[tuple[int, str, tuple[float, float, float, float]]]:
    """(track, label, x, y, w, h) of every object in view at ``frame`` (30 fps)."""
    t = frame / FPS
    out = []
    for actor in ACTORS:
        if actor.hidden[0] <= t < actor.hidden[1]:
            continue
        cx, cy = actor.path(t)
        w, h = actor.size
        x, y = cx - w / 2, cy - h / 2
        # Clipped to the frame; out of view when less than a third shows.
        x0, y0, x1, y1 = max(0, x), max(0, y), min(WIDTH, x + w), min(HEIGHT, y + h)
        if (x1 - x0) * (y1 - y0) >= w * h / 3:
            out.append((actor.track, actor.label, (x0, y0, x1 - x0, y1 - y0)))
    return out


def sampled(rate: int) -> list[int]:
    """The 30 fps frames a sampling at ``rate`` fps keeps."""
    step = FPS // rate
    return list(range(0, FPS * SECONDS, step))


def detect(frame: int, seed: int = 0, jitter: float = 2.0, miss: float = 0.1,
           false_rate: float = 0.03) -> list[TrackBox]:
    """What a noisy detector finds in ``frame``."""
    rng = np.random.default_rng(seed * 100_003 + frame)
    boxes = []
    for _, label, (x, y, w, h) in truth(frame):
        if rng.random() < miss:
            continue
        dx, dy, dw, dh = rng.normal(0, jitter, 4)
        boxes.append(TrackBox(label, x + dx, y + dy, max(4, w + dw), max(4, h + dh),
                              float(rng.uniform(0.6, 0.95))))
    if rng.random() < false_rate:
        boxes.append(TrackBox(str(rng.choice(["car", "person"])), float(rng.uniform(0, 600)),
                              float(rng.uniform(0, 320)), 30, 30, float(rng.uniform(0.3, 0.7))))
    return boxes


def score(frames: list[int], boxes: list[list[TrackBox]],
          tracks: list[list[int | None]]) -> tuple[dict[str, float], mm.MOTAccumulator]:
    """IDF1, MOTA, ID switches and box count of ``tracks`` against the truth."""
    acc = mm.MOTAccumulator(auto_id=False)
    for number, (frame, found, ids) in enumerate(zip(frames, boxes, tracks)):
        gt = truth(frame)
        hyp = [(box, track) for box, track in zip(found, ids) if track is not None]
        distances = iou_distances([g[2] for g in gt], [(b.x, b.y, b.w, b.h) for b, _ in hyp])
        acc.update([g[0] for g in gt], [t for _, t in hyp], distances, frameid=number)
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "mota", "num_switches",
                                                         "num_objects"], name="scene")
    row = summary.loc["scene"]
    return {"idf1": float(row["idf1"]), "mota": float(row["mota"]),
            "switches": int(row["num_switches"]), "objects": int(row["num_objects"])}, acc


def iou_distances(truths: list, found: list, least_iou: float = 0.5) -> np.ndarray:
    """1 - IoU of each (true, found) pair of x, y, w, h boxes; NaN (may not match)
    below ``least_iou``. (motmetrics' own iou_matrix uses an API numpy 2 removed.)"""
    if not truths or not found:
        return np.empty((len(truths), len(found)))
    a, b = np.asarray(truths, dtype=float)[:, None, :], np.asarray(found, dtype=float)[None]
    w = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
                - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
                - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    iou = inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter)
    return np.where(iou >= least_iou, 1 - iou, np.nan)



def astronaut_pan(path, frames: int = 30, rate: int = 10, side: int = 256):
    """A video panning a ``side`` square window across scikit-image's astronaut
    (a real photo from a registry package): her face crosses the frame."""
    import av
    from skimage import data

    image = data.astronaut()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            left = 16 + round(128 * i / max(1, frames - 1))
            window = np.ascontiguousarray(image[0:side, left:left + side])
            for packet in stream.encode(av.VideoFrame.from_ndarray(window, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def tracked(boxes: list[list[TrackBox]], rate: float,
            settings: TrackerSettings = TrackerSettings()) -> tuple[list, list]:
    """The boxes (gaps filled) and their track ids, as the service stores them."""
    tracks = assign_tracks(boxes, rate, settings)
    fills = fill_gaps(boxes, tracks, rate, settings.fill_seconds)
    return ([list(found) + [box for _, box in extra] for found, extra in zip(boxes, fills)],
            [list(ids) + [track for track, _ in extra] for ids, extra in zip(tracks, fills)])


# The scene as a video, for the whole service: each object is a rectangle of its
# own colour on black, and an exact detector (below) finds each colour's box.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255),
           (0, 255, 255), (255, 255, 255)]  # actor 1..7
GHOST = (255, 128, 0)  # false boxes: a "car" that is not there


def render_scene(path, seed: int = 0, rate: int = FPS):
    """The scene at 30 fps with the noise drawn in: each object's rectangle
    jittered by a couple of pixels, left out of about 10 % of frames (a missed
    detection), and a ghost rectangle in a few frames (a false one)."""
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for frame in range(FPS * SECONDS):
            image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            for track, _, (x, y, w, h) in truth(frame):
                if rng.random() < 0.1:
                    continue
                dx, dy = rng.integers(-2, 3, 2)
                _fill(image, x + dx, y + dy, w, h, COLOURS[track - 1])
            if rng.random() < 0.03:
                _fill(image, rng.uniform(0, 600), rng.uniform(0, 320), 30, 30, GHOST)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _fill(image: np.ndarray, x: float, y: float, w: float, h: float, colour) -> None:
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(WIDTH, round(x + w)), min(HEIGHT, round(y + h))
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = colour


def colour_detector(folder):
    """A registered model version (TorchScript, decoded boxes) that finds the
    box of each colour of the scene: exact but for what the video's encoding
    blurs at the edges."""
    import json

    import torch

    class Colours(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.colours = torch.tensor([*COLOURS, GHOST], dtype=torch.float32) / 255
            self.classes = torch.tensor([0, 0, 0, 0, 1, 1, 1, 0], dtype=torch.float32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] in 0..1
            diff = (x[:, None] - self.colours[None, :, :, None, None]).abs().amax(dim=2)
            mask = diff < 0.25  # [N, K, H, W]
            rows, cols = mask.any(dim=3), mask.any(dim=2)  # [N, K, H], [N, K, W]
            height, width = rows.shape[2], cols.shape[2]
            y0 = rows.float().argmax(dim=2)
            y1 = height - rows.flip(2).float().argmax(dim=2)
            x0 = cols.float().argmax(dim=2)
            x1 = width - cols.flip(2).float().argmax(dim=2)
            score = (mask.flatten(2).sum(dim=2) >= 30).float()  # not a stray pixel
            classes = self.classes[None].expand(x.shape[0], -1)
            return torch.stack([x0.float(), y0.float(), x1.float(), y1.float(), score,
                                classes], dim=2)

    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.jit.trace(Colours(), torch.zeros(1, 3, HEIGHT, WIDTH)).save(str(folder / "m.pt"))
    (folder / "model.json").write_text(json.dumps({
        "name": "colours", "labels": ["car", "person"], "format": "torchscript",
        "weights": "m.pt", "output": "boxes", "input_size": [WIDTH, HEIGHT],
        "letterbox": False, "score_threshold": 0.5, "nms_threshold": 0.95}))
    return folder


# Objects entering at every edge and corner (issue 17): (label, size, top-left
# corner at its first sighting, velocity per sample). Each is first seen just
# past the edge, where a detector that clips its boxes to the frame gives a box
# of no width or height (neither at a corner), then partially, then in full.
ENTRIES = [
    ("car", (60, 30), (-62, 100), (20, 0)),  # left
    ("car", (60, 30), (WIDTH + 2, 220), (-20, 0)),  # right
    ("person", (24, 48), (300, -50), (0, 16)),  # top
    ("person", (24, 48), (420, HEIGHT + 2), (0, -16)),  # bottom
    ("car", (60, 30), (-62, -32), (20, 10)),  # top-left
    ("car", (60, 30), (WIDTH + 2, -32), (-20, 10)),  # top-right
    ("person", (24, 48), (-26, HEIGHT + 2), (8, -16)),  # bottom-left
    ("person", (24, 48), (WIDTH + 2, HEIGHT + 2), (-8, -16)),  # bottom-right
]


def clipped(label: str, x: float, y: float, w: float, h: float, score: float = 0.8) -> TrackBox:
    """A box clipped to the frame and stored to 2 decimals, as the service does."""
    x0, y0 = min(max(x, 0), WIDTH), min(max(y, 0), HEIGHT)
    x1, y1 = min(max(x + w, 0), WIDTH), min(max(y + h, 0), HEIGHT)
    return TrackBox(label, round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2),
                    score)


def edge_scene(length: int = 16) -> tuple[list[list[TrackBox]], list[list[int]]]:
    """The ENTRIES, one starting per sample, and one-off boxes: past the left
    edge and the bottom-right corner (clipped to nothing), at the right edge, in
    the middle, low-scored at the top, and a first sighting partially outside the
    frame left unclipped (a detector that does not clip). The boxes of each
    frame, and each box's object (its ENTRIES index; -1 for a one-off)."""
    frames: list[list[TrackBox]] = [[] for _ in range(length)]
    objects: list[list[int]] = [[] for _ in range(length)]
    for k, (label, (w, h), (x, y), (vx, vy)) in enumerate(ENTRIES):
        for i in range(length - k):
            frames[k + i].append(clipped(label, x + vx * i, y + vy * i, w, h))
            objects[k + i].append(k)
    one_offs = [(3, clipped("car", -40, 200, 30, 20)),
                (6, clipped("person", WIDTH + 5, HEIGHT + 5, 24, 48)),
                (9, clipped("car", WIDTH - 12, 300, 60, 30)),
                (11, clipped("person", 200, 150, 24, 48)),
                (12, clipped("car", 100, 0, 60, 30, score=0.2)),
                (13, TrackBox("person", -10, 80, 24, 48, 0.9))]
    for number, box in one_offs:
        frames[number].append(box)
        objects[number].append(-1)
    return frames, objects
