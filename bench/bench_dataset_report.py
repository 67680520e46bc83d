"""Time and peak memory of the dataset health report (jobs/dataset_report.py).

    python bench/bench_dataset_report.py [--frames 10000] [--boxes-per-frame 10]

Writes ``--frames`` frame JPEGs (320x180; one encoded image with a distinct
tail after its end marker, so every file has its own checksum, as real frames
do) in two uploads of one task each, then exports a version of them with the
real exporter (datasets/export.py: YOLO, COCO and MOT, hard links) and times
that export (the build's local part; the upload to S3 comes on top of it).
Then times ``write_report`` twice: given the build's checksum cache (storage
ChecksumCache, filled as the build's upload leaves it: the report reuses its
MD5s for duplicates) and without it (the report hashes every image itself). Peak
memory: tracemalloc's peak of the scan alone and of the whole write_report
(Python allocations; numpy/cv2 buffers of the 12 sample images included as
numpy reports them), in separate runs so that tracing does not slow the timings;
and the same for a version a tenth the size, to show what grows with it.
Everything lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.export import TaskFrames, export_version  # noqa: E402
from datasets.health import scan  # noqa: E402
from datasets.spec import VersionSpec  # noqa: E402
from jobs.dataset_report import write_report  # noqa: E402
from storage.s3_store import ChecksumCache  # noqa: E402

LABELS = ("car", "person", "bike", "truck", "dog")
WIDTH, HEIGHT = 320, 180


def make_frames(folder: Path, frames: int, boxes_per_frame: int) -> list[TaskFrames]:
    rng = np.random.default_rng(1)
    base = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(base, "JPEG")
    items = []
    for u in range(2):
        task = {"_id": f"t{u}", "uploadId": f"up{u}", "taskName": f"task-1-up{u}",
                "videoResolutionWidth": WIDTH, "videoResolutionHeight": HEIGHT, "frameRate": 5}
        rows = []
        for i in range(frames // 2):
            path = folder / f"up{u}" / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base.getvalue() + f"{u}:{i}".encode())
            w, h = rng.uniform(8, 100, boxes_per_frame), rng.uniform(8, 80, boxes_per_frame)
            x, y = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
            rows.append({"frameId": i + 1, "sourceFrame": i * 6, "imagePath": str(path),
                         "boxes": [{"label": LABELS[k % len(LABELS)], "x": x[k], "y": y[k],
                                    "w": w[k], "h": h[k], "source": "auto:v1", "trackId": k}
                                   for k in range(boxes_per_frame)]})
        items.append(TaskFrames(task, rows))
    return items


class Timer:
    """Wall and CPU seconds of a block: CPU time is what to compare on a shared
    machine, where other processes stretch the wall time."""

    def __enter__(self) -> "Timer":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:6.2f} s wall, {self.cpu:6.2f} s CPU"


def traced(function) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    function()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def run(work: Path, frames: int, boxes_per_frame: int) -> None:
    spec = VersionSpec("bench", "bench", ("p",), (), LABELS, (("train", 80.0), ("val", 20.0)),
                       (1, 5), ("YOLO", "COCO", "MOT"), "datasets/bench")
    items = make_frames(work / "frames", frames, boxes_per_frame)
    root = work / "version"
    with Timer() as export_s:
        export_version(spec, root, items)
    with Timer() as hashing_s:
        summary = write_report(root, work / "report-hashing.html")
    cache = ChecksumCache(root, 8 * 1024 * 1024)  # as the build holds it after its upload
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            cache.etag(str(path.relative_to(root)))
    with Timer() as cached_s:
        write_report(root, work / "report.html", etag=cache.etag)
    _, scan_peak = traced(lambda: scan(root, etag=cache.etag))
    _, report_peak = traced(lambda: write_report(root, work / "report-traced.html",
                                                 etag=cache.etag))
    boxes = summary["overall"]["boxes"]
    print(f"{frames} frames, {boxes} boxes ({boxes_per_frame}/frame, {len(LABELS)} classes, "
          f"YOLO+COCO+MOT):")
    print(f"  export (the build's local part)     {export_s}")
    print(f"  report, checksums from the build    {cached_s} "
          f"(CPU {cached_s.cpu / export_s.cpu:.2f} x the export's)")
    print(f"  report, hashing the images itself   {hashing_s}")
    print(f"  peak memory (tracemalloc): scan {scan_peak / 2**20:.1f} MiB, "
          f"write_report {report_peak / 2**20:.1f} MiB; page "
          f"{(work / 'report.html').stat().st_size / 2**10:.0f} KiB; flags: "
          f"{[f['code'] for f in summary['flags']]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--boxes-per-frame", type=int, default=10)
    args = parser.parse_args()
    for frames in (args.frames // 10, args.frames):
        work = Path(tempfile.mkdtemp(prefix="bench-report-"))
        try:
            run(work, frames, args.boxes_per_frame)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
