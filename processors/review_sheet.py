"""The thumbnails of a task clip's contact sheet, its auto boxes drawn.

The review page of an upload (processors/review_page.py) shows a bounded
sample of each task's frames: read from the kept JPEGs, or decoded from the
task clip when frames were not kept (the clip is decoded only up to the last
frame wanted). Boxes are drawn with ``supervision``'s annotators coloured by
``trackId`` (``ColorLookup.TRACK``), so one object keeps one colour across
frames and task clips, and the track timeline uses the same palette.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import av
import cv2
import numpy as np
import supervision as sv
from PIL import Image

from processors.review_model import ReviewBox, ReviewFrame

PALETTE = sv.ColorPalette.DEFAULT


def track_colour(track_id: int | None) -> str:
    """The hex colour the sheet draws ``track_id`` in (grey when not tracked)."""
    return "#a0a0a0" if track_id is None else PALETTE.by_idx(track_id).as_hex()


def pick(count: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``count`` frames, spread evenly, first and last kept."""
    if count <= limit:
        return list(range(count))
    if limit <= 1:
        return [0][:limit]
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def thumbnails(frames: Sequence[ReviewFrame], chosen: Sequence[int], clip: str | None,
               max_side: int = 240, quality: int = 75) -> list[bytes | None]:
    """JPEG bytes of ``frames[i]`` for each ``i`` in ``chosen`` (None: unreadable)."""
    box_drawer = sv.BoxAnnotator(thickness=2, color=PALETTE,
                                 color_lookup=sv.ColorLookup.TRACK)
    label_drawer = sv.LabelAnnotator(text_scale=0.35, text_padding=2, color=PALETTE,
                                     color_lookup=sv.ColorLookup.TRACK)
    out: list[bytes | None] = []
    for index, (image, width, height) in zip(chosen, _images(frames, chosen, clip, max_side)):
        if image is None:
            out.append(None)
            continue
        # Scaled from the frame's own size (boxes are in its pixels), whatever
        # size the decoder gave; drawn after the resize, so lines and text keep
        # their size.
        scale = min(1.0, max_side / max(width, height))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size != (image.shape[1], image.shape[0]):
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        boxes = frames[index].boxes
        if boxes:
            detections = _detections(boxes, scale)
            labels = [f"{b.label} #{b.track_id}" if b.track_id is not None else b.label
                      for b in boxes]
            image = box_drawer.annotate(image, detections)
            image = label_drawer.annotate(image, detections, labels=labels)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(data.tobytes() if ok else None)
    return out


def _detections(boxes: Sequence[ReviewBox], scale: float) -> sv.Detections:
    xyxy = np.array([[b.x, b.y, b.x + b.w, b.y + b.h] for b in boxes], dtype=np.float64) * scale
    # Untracked boxes (image uploads, user boxes) share id 0: one colour, grey-ish.
    tracks = np.array([b.track_id if b.track_id is not None else 0 for b in boxes], dtype=int)
    return sv.Detections(xyxy=xyxy, class_id=np.zeros(len(boxes), dtype=int), tracker_id=tracks)


Decoded = tuple[np.ndarray | None, int, int]  # BGR image (maybe reduced), full width, height
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))


def _images(frames: Sequence[ReviewFrame], chosen: Sequence[int], clip: str | None,
            max_side: int) -> Iterator[Decoded]:
    """The chosen frames: their JPEGs if all are there, else the clip."""
    paths = [frames[i].image_path for i in chosen]
    if all(p and Path(p).is_file() for p in paths):
        for path in paths:
            yield _jpeg(str(path), max_side)
        return
    for image in _from_clip(clip, chosen):
        yield (image, image.shape[1], image.shape[0]) if image is not None else (None, 0, 0)


def _jpeg(path: str, max_side: int) -> Decoded:
    """A JPEG decoded at 1/2, 1/4 or 1/8 of its size where that is still at
    least ``max_side`` (libjpeg scales in the DCT: a 1080p frame reads about
    10 times faster at 1/4), with its full size read from its header."""
    try:
        with Image.open(path) as header:
            width, height = header.size
    except OSError:  # not an image: shown as unreadable
        return None, 0, 0
    flag = next((flag for factor, flag in _REDUCED if max(width, height) // factor >= max_side),
                cv2.IMREAD_COLOR)
    return cv2.imread(path, flag), width, height


def _from_clip(clip: str | None, chosen: Sequence[int]) -> Iterator[np.ndarray | None]:
    """Frame ``k`` of a task clip is its k-th decoded frame (one per sampled frame)."""
    if not chosen:
        return
    wanted = set(chosen)
    found: dict[int, np.ndarray] = {}
    if clip and Path(clip).is_file():
        try:
            with av.open(clip) as container:
                for k, frame in enumerate(container.decode(video=0)):
                    if k in wanted:
                        found[k] = frame.to_ndarray(format="bgr24")
                    if k >= max(chosen):
                        break
        except av.FFmpegError:  # a damaged clip: the frames read so far are shown
            pass
    for k in chosen:
        yield found.get(k)
