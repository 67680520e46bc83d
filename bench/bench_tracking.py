"""Tracks: how well each tracker links noisy boxes, and what tracking costs.

    python bench/bench_tracking.py [--reps 5] [--seconds 20] [--seeds 5] [--untracked-only]

0. Boxes left without a trackId (issue 17), SORT and ByteTrack at 5 fps: on
   the edge scene (objects entering at every edge and corner, first seen as a
   box clipped to no width, one-off boxes) and on the noisy scene.
1. IDF1, MOTA and ID switches (also per 1,000 true boxes) of each tracker the
   ``trackers`` library offers (SORT, ByteTrack) at 2, 5 and 10 fps sampling of
   the generated 30 fps scene (tests/tracking_scene.py: seven objects, two
   same-class crossings, a one-second occlusion, edges), with the noisy
   detector (jitter, ~10 % missed, false boxes; ``--seeds`` runs of it),
   linked and gap-filled as the service stores them, scored with motmetrics.
2. Tracking time over detection time per sampled frame: the built-in MTCNN
   face detector on a pan across scikit-image's astronaut, and assign_tracks
   on its boxes and on the scene's (seven objects a frame).
3. A whole upload, request type 1 with the built-in face model on a
   ``--seconds`` astronaut pan at 5 fps, run by the job code (worker_loop,
   embedded database) with the model's default tracker and with the same model
   registered again with ``"tracker": "none"``, alternating: the working time
   each run recorded (cutting + tracking), medians and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, median, table  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from tracking_scene import (  # noqa: E402
    astronaut_pan,
    detect,
    edge_scene,
    sampled,
    score,
    tracked,
)

from annotation.tracking import TrackBox, TrackerSettings, assign_tracks  # noqa: E402


def scene_figures(seeds: int) -> list[list[object]]:
    """Each tracker at each rate, over ``seeds`` noisy detector runs."""
    rows = []
    assign_tracks([[TrackBox("x", 0, 0, 1, 1, 1.0)]], 5)  # imports the library
    for rate in (2, 5, 10):
        frames = sampled(rate)
        runs = [[detect(frame, seed=seed) for frame in frames] for seed in range(seeds)]
        for kind in ("sort", "bytetrack"):
            found, seconds = [], 0.0
            for boxes in runs:
                started = time.perf_counter()
                stored = tracked(boxes, rate, TrackerSettings(kind=kind))  # gaps filled
                seconds += time.perf_counter() - started
                found.append(score(frames, *stored)[0])
            switches = sum(m["switches"] for m in found)
            rows.append([f"{rate} fps", kind, f"{median([m['idf1'] for m in found]):.3f}",
                         f"{median([m['mota'] for m in found]):.3f}",
                         " ".join(str(m["switches"]) for m in found),
                         f"{1000 * switches / sum(m['objects'] for m in found):.1f}",
                         f"{1000 * seconds / len(frames) / seeds:.2f}"])
    return rows


def untracked_figures(seeds: int) -> list[list[object]]:
    """Boxes without a track id, per scene and tracker, at 5 fps."""
    scenes = [("edges (tracking_scene.edge_scene)", [edge_scene()[0]]),
              (f"the noisy scene, seeds 0..{seeds - 1}",
               [[detect(frame, seed=seed) for frame in sampled(5)] for seed in range(seeds)])]
    rows = []
    for name, runs in scenes:
        for kind in ("sort", "bytetrack"):
            ids = [track for boxes in runs
                   for row in assign_tracks(boxes, 5, TrackerSettings(kind=kind)) for track in row]
            rows.append([name, kind, len(ids), sum(track is None for track in ids)])
    return rows


def cost_figures(folder: Path) -> list[list[object]]:
    import av

    from annotation.registry import ModelRegistry
    from config import load_config
    video = astronaut_pan(folder / "pan.mp4", frames=60, rate=10)
    with av.open(str(video)) as container:
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    detector = ModelRegistry(load_config(require_auth_key=False).annotation).detector(1)
    detector.detect(images[:1])  # warm-up
    started = time.perf_counter()
    found = [detector.detect([image])[0] for image in images]
    detect_ms = 1000 * (time.perf_counter() - started) / len(images)
    faces = [[TrackBox(d.label, d.x, d.y, d.w, d.h, d.score) for d in row] for row in found]
    scene = [detect(frame) for frame in sampled(5)]
    rows = []
    for name, boxes in (("MTCNN's boxes (1 face a frame)", faces),
                        ("the scene's boxes (7 objects a frame)", scene)):
        started = time.perf_counter()
        for _ in range(5):
            assign_tracks(boxes, 5)
        track_ms = 1000 * (time.perf_counter() - started) / 5 / len(boxes)
        rows.append([name, f"{track_ms:.2f}", f"{detect_ms:.1f}",
                     f"{100 * track_ms / detect_ms:.2f} %"])
    return rows


def upload_figures(folder: Path, reps: int, seconds: int) -> list[list[object]]:
    untracked = folder / "mtcnn-untracked"
    shutil.copytree(ROOT / "models" / "mtcnn", untracked)
    manifest = json.loads((untracked / "model.json").read_text())
    manifest.update(version=2, tracker="none")
    (untracked / "model.json").write_text(json.dumps(manifest))
    contents = folder / "contents"
    (contents / "uploads").mkdir(parents=True)
    astronaut_pan(contents / "uploads" / "pan.mp4", frames=seconds * 30, rate=30)
    os.environ.update(PATHS_CONTENTS_DIR=str(contents), ANNOTATION_VERSION_2=str(untracked))
    from config import load_config
    from engines.embedded import worker_loop
    from engines.engine import get_notifier
    from intake import uploads
    from intake.schemas import parse_process_request
    from mongo_manager import get_mongo
    config = load_config(require_auth_key=False)
    mongo = get_mongo(config)
    times: dict[int, list[float]] = {1: [], 2: []}
    tracking: list[float] = []
    for rep in range(reps + 1):  # the first round warms up
        for version in ((1, 2) if rep % 2 else (2, 1)):
            upload_id = f"v{version}r{rep}"
            request = parse_process_request({
                "upload_id": upload_id, "project_id": "bench", "frame_rate": 5,
                "content_path": "uploads/pan.mp4", "request_type": 1,
                "auto_anno_version": version}, config.contents_dir, [1, 2])
            uploads.accept(request, mongo, config, get_notifier(config))
            worker_loop(config, threading.Event(), drain=True)
            upload = mongo.uploads.get_upload(upload_id)
            assert upload["status"] == 1, upload.get("errorMessage")
            stages = upload["timings"]["stages"]
            if rep:  # the run's working time as it recorded it: cutting, then tracking
                times[version].append(stages["cutting"] + stages.get("tracking", 0.0))
                if version == 1:
                    tracking.append(stages["tracking"])
    paired = median([a / b for a, b in zip(times[1], times[2])])
    return [["with tracking (version 1)", f"{median(times[1]):.2f}",
             f"{median(times[1]) / median(times[2]):.3f}", f"{paired:.3f}",
             f"{median(tracking):.3f}", f"{100 * median(tracking) / median(times[1]):.1f} %"],
            ["tracker none (version 2)", f"{median(times[2]):.2f}", "1.000", "1.000", "-", "-"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--untracked-only", action="store_true",
                        help="only part 0, the boxes without a trackId (seconds)")
    args = parser.parse_args()
    print(table(["scene", "tracker", "boxes", "without a trackId"],
                untracked_figures(args.seeds)))
    if args.untracked_only:
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    try:
        print(f"machine: {machine()}")
        print(f"the scene, {args.seeds} noisy detector runs (seeds 0..{args.seeds - 1})")
        print(table(["sampling", "tracker", "median IDF1", "median MOTA", "ID switches per run",
                     "switches / 1000 true boxes", "ms / frame"], scene_figures(args.seeds)))
        print(table(["tracking", "tracking ms / frame", "MTCNN ms / frame",
                     "tracking / detection"], cost_figures(folder)))
        print(f"a {args.seconds} s astronaut pan at 5 fps, request type 1, {args.reps} rounds")
        print(table(["upload", "median working s", "/ tracker none", "per-round ratio (median)",
                     "tracking stage s", "stage / upload"],
                    upload_figures(folder, args.reps, args.seconds)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
