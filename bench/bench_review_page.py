"""Time and size of an upload's review page (processors/review_page.py).

    python bench/bench_review_page.py [--tasks 150] [--frames-per-task 120] [--boxes 5]

An upload of ``--tasks`` task clips (default: an hour at 5 fps, 120 frames a
task) with ``--boxes`` tracked boxes on every frame; the frames the contact
sheets show are written as 1080p JPEGs (a smooth picture with shapes, not
noise: noise is the worst case of JPEG decoding, about 3 times slower). Prints
the render time (thumbnails, timeline, template) and the page's size: both
are bounded by the page's limits (240 thumbnails), not by the upload's length.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.review_model import Limits, ReviewBox, ReviewFrame, ReviewTask, ReviewUpload  # noqa: E402
from processors.review_page import render  # noqa: E402
from processors.review_sheet import pick  # noqa: E402


def picture(width: int = 1920, height: int = 1080) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    image = np.dstack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                       (x + y) / 2]).astype(np.uint8)
    for i in range(12):
        cv2.circle(image, (150 * i + 80, 300 + 40 * i), 60, (40 * i % 255, 200, 90), -1)
    return image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=150)
    parser.add_argument("--frames-per-task", type=int, default=120)
    parser.add_argument("--boxes", type=int, default=5)
    args = parser.parse_args()
    limits = Limits()
    per_task = max(1, min(limits.per_task, limits.total // args.tasks))
    with tempfile.TemporaryDirectory() as folder:
        ok, jpeg = cv2.imencode(".jpg", picture(), [cv2.IMWRITE_JPEG_QUALITY, 90])
        tasks = []
        for t in range(args.tasks):
            shown = set(pick(args.frames_per_task, per_task))
            frames = []
            for k in range(args.frames_per_task):
                path = Path(folder) / f"{t}-{k}.jpg"
                if k in shown:
                    path.write_bytes(jpeg.tobytes())
                boxes = tuple(ReviewBox("car", 100 + 300 * j + k, 400, 160, 120,
                                        track_id=t * args.boxes + j + 1)
                              for j in range(args.boxes))
                frames.append(ReviewFrame(k, (t * args.frames_per_task + k) / 5, str(path),
                                          boxes))
            tasks.append(ReviewTask(t + 1, f"task-{t + 1}", None, frames))
        upload = ReviewUpload("bench", "completed", tasks, {"stages": {"cutting": 1.0}})
        render(ReviewUpload("warm", "completed", tasks[:1]))  # matplotlib's first-use costs
        start = time.perf_counter()
        html = render(upload, limits)
        seconds = time.perf_counter() - start
    frames, thumbnails = args.tasks * args.frames_per_task, html.count('class="thumb"')
    print(f"{args.tasks} tasks, {frames} frames, {frames * args.boxes} boxes: "
          f"{thumbnails} thumbnails, render {seconds:.2f} s, "
          f"page {len(html) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
