"""Scale-out faults: kill -9 of the Celery worker running a job, at random points.

    python bench/bench_faults.py [--trials 10] [--frames 1200] [--seed 1] [--redis-restart]

Starts (bench/celery_stack.py) SecantusDB, redis-server and two Celery
workers (``-Q cut -c 1``) on 127.0.0.1. The content is a barcode video
(tests/media.py: ``--frames`` frames, 30 fps, 320x240; 1200 by default) cut at frame_rate 30
into tasks of 10 frames. Two undisturbed jobs first measure a job's duration
(claim to done, the slower of the two), for reference. Then, per trial, a new upload is accepted (uploads.accept,
the API's code path, with the Celery engine), and at a uniformly random
point p in [0, 1) of the job (once p x its task count are staged; p near 1:
the move into place and the commit), the worker holding the job is killed with
SIGKILL (its whole process group: main process, pool process, sweeper), and
a fresh worker is started in its place. With ``--redis-restart`` Redis is
killed (-9, no persistence: every waiting message is lost) and restarted right
after the worker, so the job's redelivery rests on the sweepers alone. Each upload must end complete and
exact: status 1, every task with exactly its 10 source frames in order, every
clip's barcodes (all clips decoded) equal to its frames, no leftover staging.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from celery_stack import Stack, celery_stack  # noqa: E402
from common import ROOT, machine, table  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from media import cfr_video, clip_barcodes  # noqa: E402

from processes import owner_pid_here  # noqa: E402

PER_TASK = 10


def submit(stack: Stack, upload_id: str) -> None:
    from config import load_config
    from engines.engine import get_notifier
    from intake import uploads
    from intake.schemas import parse_process_request
    from mongo_manager import get_mongo

    config = load_config(env=stack.env)
    form = {"upload_id": upload_id, "project_id": "faults", "frame_rate": 30,
            "content_path": "uploads/long.mp4"}
    req = parse_process_request(form, config.contents_dir)
    code, _ = uploads.accept(req, get_mongo(config), config, get_notifier(config))
    assert code == 202, code


def wait(predicate, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.005)
    raise RuntimeError("timed out")


def exact(mongo, upload_id: str, frames: int) -> bool:
    upload = mongo.uploads.get_upload(upload_id)
    tasks = mongo.frames.tasks_of(upload_id)
    expected = [list(range(i, min(i + PER_TASK, frames))) for i in range(0, frames, PER_TASK)]
    if upload["status"] != 1 or [t["original_frames"] for t in tasks] != expected:
        return False
    if mongo.collections.frames.count_documents({"taskId": {"$in": [t["_id"] for t in tasks]}}) != frames:
        return False
    if mongo.collections.staging.count_documents({"uploadId": upload_id}):
        return False
    return all(clip_barcodes(Path(t["videoPath"])) == t["original_frames"] for t in tasks)


def holder(stack: Stack, owner: str | None):
    """The live worker whose pool process holds the job, if any."""
    pid = owner_pid_here(owner)
    if pid is None:
        return None
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:  # it just finished
        return None
    return next((w for w in stack.workers if w.proc.poll() is None and w.proc.pid == group),
                None)


def calibrate(stack: Stack, mongo, upload_id: str) -> float:
    """Seconds from claim to done of an undisturbed job."""
    job_id = f"processContent:{upload_id}"
    submit(stack, upload_id)
    wait(lambda: (mongo.jobs.get_job(job_id) or {}).get("owner"))
    started = time.monotonic()
    wait(lambda: mongo.jobs.get_job(job_id)["state"] == "done")
    return time.monotonic() - started


def run_trial(stack: Stack, mongo, upload_id: str, point: float, frames: int,
              redis_restart: bool = False) -> list:
    """Kill the holder once ``point`` (0..1) of the job's tasks are staged."""
    job_id = f"processContent:{upload_id}"
    submit(stack, upload_id)
    wait(lambda: (mongo.jobs.get_job(job_id) or {}).get("owner"))
    target = int(point * frames // PER_TASK)
    wait(lambda: mongo.collections.staging.count_documents({"uploadId": upload_id}) >= target
         or mongo.jobs.get_job(job_id)["state"] != "running")
    job = mongo.jobs.get_job(job_id)
    staged = mongo.collections.staging.count_documents({"uploadId": upload_id})
    state = job["state"]
    killed = "-"
    victim = holder(stack, job.get("owner"))
    if victim is not None:
        victim.kill()
        killed = victim.name
    if redis_restart:
        stack.redis.stop(kill=True)
        stack.redis.start()
    t_kill = time.monotonic()
    if victim is not None:
        stack.add_worker(f"{victim.name}r")  # two workers again (recovery may not wait)
    wait(lambda: mongo.jobs.get_job(job_id)["state"] in ("done", "failed"))
    recovered = time.monotonic() - t_kill
    job = mongo.jobs.get_job(job_id)
    return [upload_id, f"{point:.2f}", f"{staged}/{frames // PER_TASK}", state, killed,
            job["attempts"], f"{recovered:.1f}", "yes" if exact(mongo, upload_id, frames) else "NO"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--redis-restart", action="store_true",
                        help="also kill -9 and restart Redis right after each worker kill")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with celery_stack(PER_TASK, keep=args.keep) as stack:
        os.environ.update(stack.env)  # this process submits with the stack's config
        from config import load_config
        from mongo_manager import get_mongo
        mongo = get_mongo(load_config(env=stack.env))
        cfr_video(stack.contents / "uploads" / "long.mp4", args.frames, size=(320, 240))
        for name in ("a", "b"):
            stack.add_worker(name)
        duration = max(calibrate(stack, mongo, f"calibrate{i}") for i in range(2))
        rows = [run_trial(stack, mongo, f"t{i}", rng.random(), args.frames, args.redis_restart)
                for i in range(args.trials)]
    print(f"machine: {machine()}")
    print(f"undisturbed job (claim to done, the slower of 2): {duration:.2f} s, "
          f"{args.frames} frames, "
          f"{args.frames // PER_TASK} tasks")
    print(table(["upload", "kill point", "staged at kill", "state at kill", "worker killed",
                 "attempts", "kill to done s", "complete and exact"], rows))
    good = sum(row[-1] == "yes" for row in rows)
    print(f"{good}/{len(rows)} uploads complete and exact"
          + (" (worker kill -9 + Redis restart)" if args.redis_restart else ""))
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
