"""One long video cut by 1 Celery worker vs N workers with segment parallelism.

    python bench/bench_scale.py [--seconds 600] [--workers 2] [--reps 2]

Each worker is ``celery -A celery_app worker -Q cut -c 1`` held to one core
with ``taskset -c <i>`` (its pool process and sweeper too). Per round, in
rotating order, the same 1080p30 video (bench/data, testsrc2, GOP 2 s) is cut
at 5 fps, 120 frames per task, three ways:

- ``single``: 1 worker, ``processing.segment_seconds = 0`` (one pass);
- ``1 worker, segments``: 1 worker, the video split into N segments;
- ``N workers, segments``: N workers, one segment each (at once).

Time: from the accept to status 1. Then the tasks of the three are compared
(task boundaries and source frames of every task must be identical).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from celery_stack import Stack, celery_stack
from common import test_video


def cut(stack: Stack, upload_id: str, segment_seconds: float) -> float:
    from config import load_config
    from engines.engine import get_notifier
    from intake import uploads
    from intake.schemas import parse_process_request
    from mongo_manager import get_mongo

    config = load_config(env={**stack.env, "PROCESSING_SEGMENT_SECONDS": str(segment_seconds)})
    mongo = get_mongo(config)
    form = {"upload_id": upload_id, "project_id": "scale", "frame_rate": 5,
            "content_path": "uploads/long.mp4"}
    started = time.perf_counter()
    code, _ = uploads.accept(parse_process_request(form, config.contents_dir), mongo, config,
                             get_notifier(config))
    assert code == 202, code
    while (upload := mongo.uploads.get_upload(upload_id))["status"] == 0:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if upload["status"] != 1:
        raise SystemExit(f"{upload_id} failed: {upload['errorMessage']}")
    return elapsed


def tasks(stack: Stack, upload_id: str) -> list[tuple]:
    from config import load_config
    from mongo_manager import get_mongo
    mongo = get_mongo(load_config(env=stack.env))
    return [(t["taskName"], t["frameStart"], t["frameEnd"], tuple(t["original_frames"]))
            for t in mongo.frames.tasks_of(upload_id)]


def run_round(video, workers: int, duration: float, rep: int) -> dict[str, float]:
    modes = [("single", 1, 0.0), ("1 worker, segments", 1, duration / workers),
             (f"{workers} workers, segments", workers, duration / workers)]
    modes = modes[rep % 3:] + modes[:rep % 3]
    times, results = {}, {}
    for name, count, seconds in modes:
        with celery_stack(frames_per_task=120) as stack:
            (stack.contents / "uploads" / "long.mp4").hardlink_to(video)
            for i in range(count):
                stack.add_worker(f"w{i}", prefix=("taskset", "-c", str(i)))
            times[name] = cut(stack, f"r{rep}", seconds)
            results[name] = tasks(stack, f"r{rep}")
        print(f"round {rep + 1}: {name}: {times[name]:.1f} s ({len(results[name])} tasks)",
              flush=True)
    first = next(iter(results.values()))
    assert all(r == first for r in results.values()), "the three results differ"
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    video = test_video(args.seconds)
    rounds = [run_round(video, args.workers, args.seconds, rep) for rep in range(args.reps)]
    print("identical tasks in every mode and round: yes")
    medians = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    for name, value in medians.items():
        print(f"median {name}: {value:.1f} s")
    parallel = f"{args.workers} workers, segments"
    print(f"speed-up {parallel} vs single: {medians['single'] / medians[parallel]:.2f}x; "
          f"vs 1 worker with segments: "
          f"{medians['1 worker, segments'] / medians[parallel]:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
