"""Pure functions from frames and boxes to YOLO and COCO (no files, no database);
MOT sequences are in ``datasets/mot.py``."""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def assign_split(identity: str, splits: Sequence[tuple[str, float]]) -> str:
    """The split of a frame, from a stable hash of its identity alone.

    Independent of which other frames are in the version, so re-running a
    version or adding tasks never moves a frame to another split.
    """
    digest = hashlib.sha256(identity.encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * 100
    edge = 0.0
    for kind, share in splits:
        edge += share
        if point < edge:
            return kind
    return splits[-1][0]  # only float rounding at the very top lands here


def frame_stem(upload_id: Any, task_name: str, frame_id: int) -> str:
    """A file name stem unique across uploads: the upload and task are in it."""
    return _UNSAFE.sub("_", f"{upload_id}__{task_name}__{frame_id:06d}")


@dataclass
class BoxStats:
    written: Counter = field(default_factory=Counter)  # label -> boxes written
    skipped: Counter = field(default_factory=Counter)  # label not in the version's list
    degenerate: int = 0  # no area left inside the image

    def add(self, other: "BoxStats") -> None:
        self.written.update(other.written)
        self.skipped.update(other.skipped)
        self.degenerate += other.degenerate


@dataclass(frozen=True)
class PixelBox:
    class_index: int
    x: float  # top-left corner, pixels, clipped to the image
    y: float
    w: float
    h: float
    track: Any = None  # (source, trackId) of a tracked box: one object across frames


def map_boxes(boxes: Iterable[dict], labels: Sequence[str], width: int,
              height: int) -> tuple[list[PixelBox], BoxStats]:
    """Boxes mapped to class indexes and clipped to the image; the rest counted."""
    index = {label: i for i, label in enumerate(labels)}
    stats, kept = BoxStats(), []
    for box in boxes:
        label = box.get("label")
        if label not in index:
            stats.skipped[str(label)] += 1
            continue
        x0, y0 = max(0.0, float(box["x"])), max(0.0, float(box["y"]))
        x1 = min(float(width), float(box["x"]) + float(box["w"]))
        y1 = min(float(height), float(box["y"]) + float(box["h"]))
        if x1 <= x0 or y1 <= y0:
            stats.degenerate += 1
            continue
        track = (box.get("source"), box["trackId"]) if box.get("trackId") is not None else None
        kept.append(PixelBox(index[label], x0, y0, x1 - x0, y1 - y0, track))
        stats.written[label] += 1
    return kept, stats


def yolo_lines(boxes: Iterable[PixelBox], width: int, height: int) -> str:
    """``class cx cy w h`` per box, normalised to 0..1; empty for no boxes."""
    return "".join(
        f"{b.class_index} {(b.x + b.w / 2) / width:.6f} {(b.y + b.h / 2) / height:.6f} "
        f"{b.w / width:.6f} {b.h / height:.6f}\n" for b in boxes)


def data_yaml(labels: Sequence[str], splits: Iterable[str]) -> str:
    """Ultralytics-style dataset file; JSON strings are valid YAML scalars.

    No ``path`` key: Ultralytics then takes the folder of this file as the
    dataset root (a relative ``path`` would resolve under its own datasets
    folder instead). It needs ``val``: a version without a val split
    validates on its train images.
    """
    splits = list(splits)
    lines = [f"{split}: images/{split}" for split in splits]
    if "val" not in splits:
        lines.append(f"val: images/{splits[0]}  # this version has no val split")
    lines.append(f"nc: {len(labels)}")
    lines.append("names:")
    lines += [f"  {i}: {json.dumps(label)}" for i, label in enumerate(labels)]
    return "\n".join(lines) + "\n"


class CocoSplit:
    """Builds one ``annotations/<split>.json``: ids unique and dense from 1.

    Images carry their ``video`` (the upload), ``video_id``, ``frame_index``
    (sample order within the upload) and ``shot`` (the index of the upload's
    shot that holds the frame); a tracked box's annotation carries
    ``track_id``, dense from 1 across the split, one per object of a video.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self.categories = [{"id": i + 1, "name": name, "supercategory": "none"}
                           for i, name in enumerate(labels)]
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.videos: dict[str, int] = {}
        self.tracks: dict[tuple, int] = {}

    def add(self, file_name: str, width: int, height: int, boxes: Iterable[PixelBox],
            video: str, frame_index: int, shot: int = 0) -> None:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": width,
                            "height": height, "video": video,
                            "video_id": self.videos.setdefault(video, len(self.videos) + 1),
                            "frame_index": frame_index, "shot": shot})
        for b in boxes:
            annotation = {
                "id": len(self.annotations) + 1, "image_id": image_id,
                "category_id": b.class_index + 1,
                "bbox": [round(b.x, 3), round(b.y, 3), round(b.w, 3), round(b.h, 3)],
                "area": round(b.w * b.h, 3), "iscrowd": 0}
            if b.track is not None:
                annotation["track_id"] = self.tracks.setdefault((video, b.track),
                                                                len(self.tracks) + 1)
            self.annotations.append(annotation)

    def to_json(self) -> str:
        return json.dumps({"images": self.images, "annotations": self.annotations,
                           "categories": self.categories})
