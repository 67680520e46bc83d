"""The embedded executor: a bound on concurrent jobs, and jobs that crash their process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, service_env
from media import cfr_video


def test_at_most_workers_jobs_run_at_once(env, contents, post, mongo):
    for n in range(5):
        cfr_video(contents / "uploads" / f"v{n}.mp4", 240, size=(480, 360))
        assert post(upload_id=f"u{n}", content_path=f"uploads/v{n}.mp4",
                    frame_rate=30).status_code == 202
    executor = subprocess.Popen([sys.executable, str(ROOT / "executor.py")],
                                env=service_env({**env, "PROCESSING_WORKERS": "2"}), cwd=ROOT,
                                start_new_session=True)
    most, owners = 0, set()
    try:
        deadline = time.monotonic() + 180
        while mongo.collections.jobs.count_documents({"state": "done"}) < 5:
            assert time.monotonic() < deadline, "jobs did not finish"
            running = list(mongo.collections.jobs.find({"state": {"$in": ["running", "committed"]}}))
            most = max(most, len(running))
            owners |= {job["owner"] for job in running}
            time.sleep(0.02)
    finally:
        os.killpg(executor.pid, signal.SIGTERM)
        executor.wait(timeout=30)
    assert most == 2  # both job processes busy, never a third job
    assert len(owners) == 2
    assert all(mongo.uploads.get_upload(f"u{n}")["status"] == 1 for n in range(5))


def test_job_that_keeps_crashing_ends_with_error(contents, post, mongo, run_jobs, config):
    cfr_video(contents / "uploads" / "v.mp4", 30)
    post(content_path="uploads/v.mp4")
    # As if three job processes had died on it: attempts is counted at each claim.
    mongo.collections.jobs.update_one({"_id": "processContent:u1"}, {"$set": {"attempts": 3}})
    assert run_jobs() == 1
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 2 and upload["errorMessage"]["code"] == "crashed"
    assert mongo.collections.tasks.count_documents({}) == 0
