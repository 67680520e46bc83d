"""Scale-out load: processContent requests through gunicorn to Celery workers.

    python bench/bench_load.py [--requests 200] [--clients 50] [--workers 2]

Starts, on 127.0.0.1 under a temp dir (bench/celery_stack.py): SecantusDB,
redis-server, ``--workers`` Celery workers (``-Q cut -c 1``) and
``gunicorn -c gunicorn.conf.py wsgi:app`` (2 gevent workers) with
QUEUE_BROKER_URL set, so gunicorn starts no embedded executor. One barcode
video (tests/media.py: 30 frames, 1 s, 160x120) is the content of every
upload. ``--requests`` POSTs, each for a distinct upload id (frame_rate 10,
frames_per_task 4: 10 sampled frames, 3 tasks per upload), come from
``--clients`` threads with their own keep-alive session (closed loop).

Reports the accept latency (client side: send to response read), then waits
for every job to end and checks each upload: status 1, exactly the expected
tasks (source frames per task, in order) and frames, and (from the workers'
logs) each job claimed exactly once; the first clip of every 10th upload is
decoded and its barcodes read. Lost = accepted but not completed exact;
duplicated = extra tasks, frames or claims.
"""
from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import requests
from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parent))
from celery_stack import AUTH_KEY, Stack, celery_stack  # noqa: E402
from common import ROOT, machine, median, table  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from media import cfr_video, clip_barcodes, expected_samples  # noqa: E402

FRAMES, FPS, RATE, PER_TASK = 30, 30, 10, 4


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def fire(base: str, upload_ids: list[str], clients: int) -> list[tuple[float, int]]:
    """POST every upload from ``clients`` threads; (latency s, status) each."""
    work: queue.Queue = queue.Queue()
    for upload_id in upload_ids:
        work.put(upload_id)
    results: list[tuple[float, int]] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        while True:
            try:
                upload_id = work.get_nowait()
            except queue.Empty:
                break
            body = {"auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "bench",
                    "frame_rate": RATE, "content_path": "uploads/x.mp4"}
            t0 = time.perf_counter()
            try:
                status = session.post(f"{base}/api/processContent", json=body,
                                      timeout=60).status_code
            except requests.RequestException:
                status = -1
            with lock:
                results.append((time.perf_counter() - t0, status))
        session.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def wait_ended(db, upload_ids: list[str], timeout: float) -> float:
    """Seconds until every upload has left status 0 (or the timeout)."""
    start = time.monotonic()
    ids = [ObjectId(u) for u in upload_ids]
    while time.monotonic() - start < timeout:
        if db["AnnotationContentUpload"].count_documents({"_id": {"$in": ids}, "status": 0}) == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - start


def check(stack: Stack, db, upload_ids: list[str]) -> dict[str, int]:
    samples = expected_samples([Fraction(i, FPS) for i in range(FRAMES)], RATE)
    expected = [samples[i:i + PER_TASK] for i in range(0, len(samples), PER_TASK)]
    claims = Counter(job for job, _, _ in stack.claims())
    out = Counter()
    for n, upload_id in enumerate(upload_ids):
        upload = db["AnnotationContentUpload"].find_one({"_id": ObjectId(upload_id)})
        tasks = list(db["AnnotationTask"].find({"uploadId": ObjectId(upload_id)})
                     .sort("frameStart", 1))
        frames = db["AnnotationFrame"].count_documents({"taskId": {"$in": [t["_id"] for t in tasks]}})
        exact = (upload["status"] == 1 and [t["original_frames"] for t in tasks] == expected
                 and frames == len(samples))
        if exact and n % 10 == 0:
            exact = clip_barcodes(Path(tasks[0]["videoPath"])) == expected[0]
        out["complete and exact"] += exact
        out["lost"] += not exact
        out["extra tasks"] += max(0, len(tasks) - len(expected))
        out["extra frames"] += max(0, frames - len(samples))
        out["jobs claimed twice"] += claims[f"processContent:{upload_id}"] > 1
    return dict(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (-c 1 each)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    from pymongo import MongoClient

    with celery_stack(PER_TASK, keep=args.keep) as stack:
        cfr_video(stack.contents / "uploads" / "x.mp4", FRAMES, FPS, size=(160, 120))
        for i in range(args.workers):
            stack.add_worker(f"w{i}")
        base = stack.start_gunicorn()
        upload_ids = [str(ObjectId()) for _ in range(args.requests)]
        started = time.monotonic()
        results = fire(base, upload_ids, args.clients)
        accepted = time.monotonic() - started
        db = MongoClient(stack.env["MONGODB_URI"], tz_aware=True)["AIData"]
        ended = wait_ended(db, upload_ids, timeout=900) + accepted
        report(args, results, accepted, ended, check(stack, db, upload_ids), stack)
    return 0


def report(args, results, accepted: float, ended: float, checks: dict, stack: Stack) -> None:
    ms = [latency * 1000 for latency, _ in results]
    per_worker = Counter(owner for _, owner, _ in stack.claims())
    print(f"machine: {machine()}")
    print(f"{args.requests} requests, {args.clients} clients, {args.workers} Celery workers; "
          f"statuses {dict(Counter(status for _, status in results))}")
    print(table(["accept", "median ms", "p90 ms", "p99 ms", "max ms", "throughput"],
                [["POST /api/processContent", f"{median(ms):.0f}", f"{percentile(ms, 90):.0f}",
                  f"{percentile(ms, 99):.0f}", f"{max(ms):.0f}",
                  f"{len(ms) / accepted:.0f}/s"]]))
    print(f"all accepted in {accepted:.1f} s; all ended {ended:.1f} s after the first request "
          f"({args.requests / ended:.1f} jobs/s); claims per worker process: "
          f"{sorted(per_worker.values())}")
    print(table(list(checks), [list(checks.values())]))


if __name__ == "__main__":
    sys.exit(main())
