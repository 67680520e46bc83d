"""The database side of one accept, and how it grows with the data already there.

    python bench/bench_accept_db.py [--sizes 0,1000,4000] [--reps 50]

Starts a private embedded database (SecantusDB, as ``mongodb.uri = embedded``
does) in a temp dir, fills it with N finished ProcessingJob documents and a
project whose ``contentUploads`` lists N uploads (what N earlier uploads of
one project leave behind), then times, one call at a time, the MongoManager
calls that ``uploads.accept`` makes (get_upload, start_job,
queue_job, which records the upload and lists it in its project) and two single operations that explain
them: the start_job upsert with its ``$or`` filter against the same upsert
with a plain ``{_id, state: {$nin: ...}}`` filter (what start_job could do
first, falling back to the stale-"accepting" case only on a duplicate key),
and the project's ``$addToSet``. Stops the database at the end.

Nothing here changes mongo_manager.py; the "plain filter" row is a
measurement of the proposed query, not of the service.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, median, table  # noqa: E402

sys.path.insert(0, str(ROOT))
from embedded_db import embedded_uri, stop_embedded  # noqa: E402
from job_states import ACTIVE_JOB_STATES  # noqa: E402
from mongo_manager import MongoManager, now  # noqa: E402

PROJECT = ObjectId("6560c0ffee0000000000bea0")


def timed(fn, reps: int) -> float:
    values = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        values.append((time.perf_counter() - t0) * 1000)
    return median(values)


def fill(mongo: MongoManager, have: int, want: int) -> None:
    """Finished jobs and project entries up to ``want`` earlier uploads."""
    batch = 500
    while have < want:
        count = min(batch, want - have)
        uploads = [ObjectId() for _ in range(count)]
        mongo.collections.jobs.insert_many([{
            "_id": f"processContent:{u}", "kind": "processContent", "state": "done",
            "params": {"upload_id": str(u), "project_id": str(PROJECT), "frame_rate": 5,
                       "content_path": "/x/uploads/x.mp4", "force_write": 0,
                       "auto_anno_version": 0, "request_type": 0, "content_type": 1,
                       "frames_per_task": 120},
            "runId": str(ObjectId()), "attempts": 1, "owner": None, "createdAt": now()}
            for u in uploads])
        mongo.collections.projects.update_one(
            {"_id": PROJECT}, {"$push": {"contentUploads": {"$each": uploads}}}, upsert=True)
        have += count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1000,4000",
                        help="earlier uploads (jobs, project entries) to measure at")
    parser.add_argument("--reps", type=int, default=50, help="calls timed per row (default 50)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-accept-db-"))
    rows = []
    try:
        mongo = MongoManager(embedded_uri(tmp / "db"), "AIData")
        mongo.ensure_indexes()
        params = {"upload_id": "", "project_id": str(PROJECT), "frame_rate": 5,
                  "content_path": "/x/uploads/x.mp4", "force_write": 0, "auto_anno_version": 0,
                  "request_type": 0, "content_type": 1, "frames_per_task": 120}
        fields = {"request_type": 0, "content_type": 1, "frame_rate": 5}
        have = 0
        for size in sizes:
            fill(mongo, have, size)
            have = size
            ids = iter([str(ObjectId()) for _ in range(args.reps * 6)])
            state: dict[str, str] = {}

            def accept_calls() -> None:
                upload = next(ids)
                job_id, run_id = f"processContent:{upload}", str(ObjectId())
                mongo.uploads.get_upload(upload)
                mongo.jobs.start_job(job_id, "processContent", {**params, "upload_id": upload},
                                     run_id, replace_active=False)
                mongo.jobs.queue_job(job_id, run_id, upload={"upload_id": upload,
                                                             "project_id": PROJECT, "fields": fields})
                state["last"] = job_id

            def start_job_plain() -> None:
                upload = next(ids)
                mongo.collections.jobs.update_one(
                    {"_id": f"processContent:{upload}", "state": {"$nin": ACTIVE_JOB_STATES}},
                    {"$set": {"kind": "processContent", "params": params, "runId": "r",
                              "state": "accepting", "attempts": 0, "owner": None,
                              "createdAt": now()}}, upsert=True)

            def start_job_current() -> None:
                upload = next(ids)
                mongo.jobs.start_job(f"processContent:{upload}", "processContent", params, "r",
                                     replace_active=False)

            def add_to_project() -> None:
                mongo.collections.projects.update_one({"_id": PROJECT},
                                                      {"$addToSet": {"contentUploads": ObjectId()}})

            row = {
                "the accept calls (get_upload, start_job, queue_job)": timed(accept_calls, args.reps),
                "start_job (upsert, $or filter)": timed(start_job_current, args.reps),
                "same upsert, {_id, state: {$nin}} filter": timed(start_job_plain, args.reps),
                "project $addToSet (in queue_job)": timed(add_to_project, args.reps),
                "get_upload (find_one by _id)": timed(lambda: mongo.uploads.get_upload(next(ids)),
                                                      args.reps),
            }
            for name, value in row.items():
                rows.append([str(size), name, f"{value:.2f}"])
            print(f"{size} earlier uploads: " + ", ".join(f"{k} {v:.2f} ms"
                                                         for k, v in row.items()), flush=True)
        mongo.close()
    finally:
        stop_embedded(tmp / "db")
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"one call at a time, median of {args.reps}; {machine()}")
    print(table(["earlier uploads", "database call", "median ms"], rows))
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
