"""Sample images of a dataset version with their boxes and labels drawn.

The health report's grid (datasets/health.py picks the stable sample; this
module is where images are decoded, as media stays in processors/). Boxes are
drawn with ``supervision``'s annotators, coloured by class, rather than by hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import supervision as sv


@dataclass(frozen=True)
class Drawn:
    name: str
    jpeg: bytes | None  # None: the image could not be read
    width: int = 0
    height: int = 0


def draw_samples(root: Path, samples: Sequence[tuple[str, Sequence[tuple]]],
                 names: Sequence[str], max_side: int = 360, quality: int = 80) -> list[Drawn]:
    """Each (image name under ``root``, boxes as (class, cx, cy, w, h) normalised)
    as a JPEG no larger than ``max_side``, its boxes and class names drawn."""
    boxes_drawer = sv.BoxAnnotator(thickness=2)
    labels_drawer = sv.LabelAnnotator(text_scale=0.4, text_padding=3)
    drawn = []
    for name, boxes in samples:
        image = cv2.imread(str(root / name), cv2.IMREAD_COLOR)
        if image is None:
            drawn.append(Drawn(name, None))
            continue
        height, width = image.shape[:2]
        scale = min(1.0, max_side / max(width, height))
        if scale < 1.0:  # drawn after the resize, so lines and text keep their size
            image = cv2.resize(image, (round(width * scale), round(height * scale)),
                               interpolation=cv2.INTER_AREA)
        if boxes:
            detections = _detections(boxes, image.shape[1], image.shape[0])
            labels = [names[c] if 0 <= c < len(names) else str(c) for c in detections.class_id]
            image = boxes_drawer.annotate(image, detections)
            image = labels_drawer.annotate(image, detections, labels=labels)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        drawn.append(Drawn(name, data.tobytes() if ok else None, image.shape[1], image.shape[0]))
    return drawn


def _detections(boxes: Sequence[tuple], width: int, height: int) -> sv.Detections:
    array = np.array([b[1:5] for b in boxes], dtype=np.float64)
    cx, cy, w, h = array.T
    xyxy = np.stack([(cx - w / 2) * width, (cy - h / 2) * height,
                     (cx + w / 2) * width, (cy + h / 2) * height], axis=1)
    return sv.Detections(xyxy=xyxy, class_id=np.array([int(b[0]) for b in boxes]))
