"""Dataset export + upload of 10,000 720p frames to SeaweedFS, against `aws s3 sync`.

    python bench/bench_dataset.py [--frames 10000] [--reps 3]

Starts its own SecantusDB and SeaweedFS (``weed mini``), writes ``--frames``
720p JPEGs (frames of a generated testsrc2 video at quality 90) with 1-3 boxes
each as tasks of 120 frames, and prints:

1. the first build of a version: total, export and upload phase (checksums,
   listing and sending);
2. a re-run with nothing changed, as a share of the first run;
3. the upload phase side by side with ``aws s3 sync`` of the same folder to
   the same store, alternating which goes first, with a cold checksum cache
   for ours (``aws s3 sync`` hashes every body too, CRC32); medians and ratio;
4. a rebuild after an auditor rejected one task (120 frames): objects deleted,
   time against a re-run with nothing changed just before it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
from common import DATA, ROOT, test_video

sys.path.insert(0, str(ROOT / "tests"))

from s3_server import SeaweedServer  # noqa: E402

from config import load_config  # noqa: E402
from embedded_db import embedded_uri, stop_embedded  # noqa: E402
from intake import dataset_builds  # noqa: E402
from jobs.dataset import dataset_dir  # noqa: E402
from mongo_manager import get_mongo, now  # noqa: E402

FRAMES_PER_TASK = 120


def jpegs(count: int) -> list[bytes]:
    """``count`` distinct 720p frames as JPEG (quality 90)."""
    out = []
    with av.open(str(test_video(60, 1280, 720))) as container:
        for frame in container.decode(video=0):
            out.append(cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"),
                                    [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            if len(out) == count:
                return out
    return out


def make_frames(mongo, contents: Path, total: int) -> None:
    images = jpegs(300)
    tasks = (total + FRAMES_PER_TASK - 1) // FRAMES_PER_TASK
    for n in range(1, tasks + 1):
        task = mongo.collections.tasks.insert_one({
            "projectId": "bench", "uploadId": "bench-upload", "taskName": f"task-{n}-bench",
            "videoName": "bench", "frameStart": (n - 1) * FRAMES_PER_TASK,
            "videoResolutionWidth": 1280, "videoResolutionHeight": 720, "auditStatus": 1,
            "taskStatus": 2, "datasetVersions": [], "createdAt": now()}).inserted_id
        folder = contents / "frames" / "bench-upload" / f"task-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        docs = []
        for k in range(1, min(FRAMES_PER_TASK, total - (n - 1) * FRAMES_PER_TASK) + 1):
            index = (n - 1) * FRAMES_PER_TASK + k - 1
            path = folder / f"{k}.jpg"
            path.write_bytes(images[index % len(images)])
            boxes = [{"label": ("person", "car", "bike")[b % 3], "x": 100 + 40 * b,
                      "y": 80 + 30 * b, "w": 120, "h": 90, "source": "user"}
                     for b in range(1 + index % 3)]
            docs.append({"taskId": task, "frameId": k, "sourceFrame": index,
                         "imagePath": str(path), "boxes": boxes})
        mongo.collections.frames.insert_many(docs)


def build(config, mongo, version: str) -> tuple[float, dict]:
    started = time.perf_counter()
    dataset_builds.build_here(mongo, config, version)
    state = dataset_builds.status(mongo, version)
    if state["status"] != 1:
        raise SystemExit(f"build failed: {state['error']}")
    return time.perf_counter() - started, state


def aws_sync(root: Path, store: SeaweedServer, bucket: str, prefix: str) -> float:
    env = {**os.environ, **store.env(bucket), "AWS_DEFAULT_REGION": "us-east-1"}
    started = time.perf_counter()
    subprocess.run(["aws", "s3", "sync", str(root), f"s3://{bucket}/{prefix}/",
                    "--endpoint-url", store.endpoint, "--only-show-errors",
                    "--exclude", ".*"], env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    work = DATA / "dataset-bench"
    shutil.rmtree(work, ignore_errors=True)
    contents = work / "contents"
    store = SeaweedServer(work / "s3").start()
    try:
        bucket = store.new_bucket()
        os.environ.update({k: v for k, v in store.env(bucket).items() if k.startswith("AWS")})
        config = load_config(env={
            "SERVER_AUTH_KEY": "bench", "MONGODB_URI": embedded_uri(work / "db"),
            "PATHS_CONTENTS_DIR": str(contents), **store.env(bucket),
            "CONFIG_FILE": str(ROOT / "config.cfg")})
        mongo = get_mongo(config)
        make_frames(mongo, contents, args.frames)
        run(config, mongo, store, bucket, args)
    finally:
        store.stop()
        stop_embedded(work / "db")


def run(config, mongo, store: SeaweedServer, bucket: str, args) -> None:
    version = str(mongo.collections.versions.insert_one({
        "name": "bench", "projectIds": ["bench"], "labels": ["person", "car", "bike"],
        "splitCount": [{"type": "train", "percentage": 80}, {"type": "val", "percentage": 20}],
        "s3Prefix": "first"}).inserted_id)
    first, state = build(config, mongo, version)
    objects = state["uploadStats"]["sent"]
    print(f"first build: {args.frames} frames, {objects} objects, "
          f"{state['uploadStats']['bytes_sent'] / 2**20:.0f} MiB: total {first:.2f} s "
          f"(export {state['timings']['exportSeconds']:.2f} s, "
          f"upload {state['timings']['uploadSeconds']:.2f} s)")
    report = state["report"]["seconds"]
    print(f"health report: {report:.2f} s of the first build's {first:.2f} s: build with it / "
          f"without it = {first / (first - report):.3f}")
    again, state = build(config, mongo, version)
    print(f"re-run, nothing changed: {again:.2f} s = {again / first:.1%} of the first run "
          f"(sent {state['uploadStats']['sent']}, skipped {state['uploadStats']['skipped']})")
    root = dataset_dir(config.contents_dir, version)
    ours, theirs = [], []
    for rep in range(args.reps):
        order = ("ours", "aws") if rep % 2 == 0 else ("aws", "ours")
        for who in order:
            if who == "aws":
                theirs.append(aws_sync(root, store, bucket, f"aws-{rep}"))
                continue
            mongo.datasets.update_version(version, s3Prefix=f"ours-{rep}")
            (root / ".checksums.json").unlink(missing_ok=True)  # hash every file again
            ours.append(build(config, mongo, version)[1]["timings"]["uploadSeconds"])
        print(f"rep {rep + 1}: ours {ours[-1]:.2f} s, aws s3 sync {theirs[-1]:.2f} s",
              flush=True)
    print(f"upload phase, median of {args.reps}: ours {statistics.median(ours):.2f} s, "
          f"aws s3 sync {statistics.median(theirs):.2f} s, ratio "
          f"{statistics.median(ours) / statistics.median(theirs):.2f} (target <= 1.0)")
    rejection(config, mongo, store, bucket, version)


def rejection(config, mongo, store: SeaweedServer, bucket: str, version: str) -> None:
    """Reject one task, rebuild: what goes, and what it costs next to a no-op re-run."""
    mongo.datasets.update_version(version, s3Prefix="first")
    same, _ = build(config, mongo, version)
    task = mongo.collections.tasks.find_one({"projectId": "bench", "taskName": "task-1-bench"})["_id"]
    mongo.collections.tasks.update_one({"_id": task}, {"$set": {"auditStatus": 2}})  # Rejected
    before = len(store.objects(bucket, "first/"))
    rebuilt, state = build(config, mongo, version)
    after = len(store.objects(bucket, "first/"))
    stats = state["uploadStats"]
    print(f"rebuild after rejecting 1 task: {rebuilt:.2f} s vs {same:.2f} s for a re-run "
          f"with nothing changed ({rebuilt / same:.2f}x); deleted {stats['deleted']} objects, "
          f"sent {stats['sent']}; the prefix held {before} objects, now {after}")


if __name__ == "__main__":
    main()
