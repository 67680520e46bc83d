"""kill -9 of a real job process mid-video: the upload still ends exact."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, service_env, wait_for
from media import cfr_video, clip_barcodes

from processes import owner_pid_here

FRAMES = 900  # 30 fps sampled at 30: 900 samples, 90 tasks of 10


@pytest.fixture
def long_video(contents: Path) -> Path:
    return cfr_video(contents / "uploads" / "long.mp4", FRAMES, size=(480, 360))


def start_executor(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "executor.py")], env=service_env(env),
                            cwd=ROOT, start_new_session=True)


def kill_mid_video(mongo) -> int:
    """Wait until some tasks are staged, then kill -9 the process holding the job."""
    job = wait_for(lambda: (j := mongo.jobs.get_job("processContent:u1")) and j.get("owner") and j,
                   what="a worker to claim the job")
    wait_for(lambda: mongo.collections.staging.count_documents({}) >= 5, what="tasks to be staged")
    pid = owner_pid_here(job["owner"])
    os.kill(pid, signal.SIGKILL)
    staged = mongo.collections.staging.count_documents({})
    assert staged < FRAMES // 10, "the job finished before it could be killed"
    return pid


def assert_exact(mongo, contents: Path) -> None:
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload["errorMessage"]
    tasks = mongo.frames.tasks_of("u1")
    expected = [list(range(i, i + 10)) for i in range(0, FRAMES, 10)]
    assert [t["original_frames"] for t in tasks] == expected
    assert [t["taskName"] for t in tasks] == [f"task-{n}-long" for n in range(1, 91)]
    assert mongo.collections.frames.count_documents({}) == FRAMES
    for task in tasks:
        frames = mongo.frames.frames_of(task["_id"])
        assert [f["sourceFrame"] for f in frames] == task["original_frames"]
    for task in tasks[::9]:
        assert clip_barcodes(Path(task["videoPath"])) == task["original_frames"]
    assert len(list((contents / "tasks" / "p1" / "u1").iterdir())) == 90
    assert mongo.collections.staging.count_documents({}) == 0
    assert not list((contents / "tasks" / "p1").glob(".*"))
    assert not list((contents / "frames").glob(".*"))


def test_killed_job_process_is_replaced_and_job_resumed(env, post, mongo, contents, long_video):
    executor = start_executor({**env, "PROCESSING_WORKERS": "1"})
    try:
        assert post(content_path="uploads/long.mp4", frame_rate=30).status_code == 202
        killed = kill_mid_video(mongo)
        wait_for(lambda: mongo.jobs.get_job("processContent:u1")["state"] in ("done", "failed"),
                 what="the job to end")
        job = mongo.jobs.get_job("processContent:u1")
        assert job["attempts"] == 2 and job["state"] == "done"
        assert not job["owner"] and str(killed) not in str(job)
        assert_exact(mongo, contents)
    finally:
        os.killpg(executor.pid, signal.SIGTERM)
        executor.wait(timeout=30)


@pytest.mark.parametrize("recover_with", ["warm_start", "service_restart"])
def test_everything_killed_then_recovered(env, post, mongo, contents, long_video, recover_with):
    executor = start_executor({**env, "PROCESSING_WORKERS": "1"})
    assert post(content_path="uploads/long.mp4", frame_rate=30).status_code == 202
    wait_for(lambda: mongo.collections.staging.count_documents({}) >= 3, what="tasks to be staged")
    os.killpg(executor.pid, signal.SIGKILL)  # the supervisor and its job process
    executor.wait(timeout=10)
    assert mongo.uploads.get_upload("u1")["status"] == 0
    if recover_with == "warm_start":
        result = subprocess.run([sys.executable, "dataset_creation_warm_start.py"],
                                env=service_env(env), cwd=ROOT, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        assert "finished 1 job" in result.stdout
    else:
        restarted = start_executor(env)
        try:
            wait_for(lambda: mongo.jobs.get_job("processContent:u1")["state"] in ("done", "failed"),
                     what="the job to end")
        finally:
            os.killpg(restarted.pid, signal.SIGTERM)
            restarted.wait(timeout=30)
    assert_exact(mongo, contents)
    assert mongo.jobs.get_job("processContent:u1")["attempts"] == 2


def test_second_executor_for_same_contents_exits(env, mongo):
    first = start_executor(env)
    try:
        time.sleep(2)
        second = subprocess.run([sys.executable, str(ROOT / "executor.py")],
                                env=service_env(env), cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 0
        assert "already runs" in second.stderr
        assert first.poll() is None
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=30)


STUCK_IN_COMMIT = """
import sys, threading, time
from stores.runs import RunStore
from config import load_config
from engines.embedded import worker_loop

real_commit = RunStore._commit
real_publish = RunStore._publish

def commit_then_hang(self, session, *args):
    real_commit(self, session, *args)  # every write done, the transaction still open
    print("inside the commit", flush=True)
    time.sleep(3600)

def publish_then_hang(self, session, *args):
    done = real_publish(self, session, *args)
    if args[-1]:  # the last publication, which commits a new upload's run
        print("inside the commit", flush=True)
        time.sleep(3600)
    return done

RunStore._commit = commit_then_hang
RunStore._publish = publish_then_hang
worker_loop(load_config(), threading.Event(), drain=True)
"""


def test_killed_inside_the_commit_transaction_its_locks_go_with_it(env, post, mongo,
                                                                   contents):
    cfr_video(contents / "uploads" / "short.mp4", 60, size=(160, 120))
    assert post(content_path="uploads/short.mp4", frame_rate=30).status_code == 202
    worker = subprocess.Popen([sys.executable, "-c", STUCK_IN_COMMIT], env=service_env(env),
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "inside the commit"
    worker.kill()
    worker.wait()
    assert mongo.collections.transactions.count_documents({}) == 1  # the open transaction's session
    started = time.monotonic()
    # The warm start ends the dead process's session (its locks on the job, the
    # upload and the tasks go), then resumes the job: seconds, not minutes.
    done = subprocess.run([sys.executable, str(ROOT / "dataset_creation_warm_start.py")],
                          env=service_env(env), cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1 and upload["taskCount"] == 6
    assert [t["original_frames"] for t in mongo.frames.tasks_of("u1")] == \
        [list(range(i, i + 10)) for i in range(0, 60, 10)]
    assert mongo.collections.transactions.count_documents({}) == 0
