"""A new job starts at once: the process that accepts it wakes the embedded
executor's idle job processes; polling (processing.poll_seconds) stays only as
the fallback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import AUTH_KEY, ROOT, service_env, wait_for
from media import cfr_video

from app import create_app
from config import load_config

POLL = "30"  # so long that a job claimed within a second was woken, not polled


@pytest.fixture
def executor(env, mongo):
    """``python executor.py`` with a long poll, its job processes idle and waiting."""
    run_env = {**env, "PROCESSING_POLL_SECONDS": POLL, "PROCESSING_WORKERS": "2"}
    process = subprocess.Popen([sys.executable, "executor.py"], env=service_env(run_env),
                               cwd=ROOT, start_new_session=True)
    time.sleep(8)  # its job processes started, claimed nothing, and now wait
    yield load_config(env=run_env)
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def claim_delay(client, mongo, contents, upload_id: str) -> float:
    cfr_video(contents / "uploads" / f"{upload_id}.mp4", 10, size=(64, 48))
    sent = time.monotonic()
    answer = client.post("/api/processContent", json={
        "auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "p1", "frame_rate": 5,
        "content_path": f"uploads/{upload_id}.mp4"})
    assert answer.status_code == 202, answer.get_json()
    wait_for(lambda: mongo.jobs.get_job(f"processContent:{upload_id}")["state"] != "queued", 20,
             "the job to be claimed")
    return time.monotonic() - sent


def test_an_accepted_job_is_claimed_at_once(executor, mongo, contents):
    client = create_app(executor).test_client()
    # Two in a row: each wakes one idle process; neither waits for a poll.
    delays = [claim_delay(client, mongo, contents, f"w{n}") for n in range(3)]
    assert max(delays) < 2.0, delays
    wait_for(lambda: all(mongo.uploads.get_upload(f"w{n}")["status"] == 1 for n in range(3)), 60,
             "the uploads to be cut")
