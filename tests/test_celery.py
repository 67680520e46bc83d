"""The Celery engine with a real redis-server and real worker processes.

Jobs are sent through the API (``queue.broker_url`` set); every test checks
that each upload ends exact: its tasks hold exactly the expected source frames,
once, and no job was run twice unless its worker was killed.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import AUTH_KEY, service_env
from media import cfr_video, clip_barcodes
from queue_fixtures import (  # noqa: F401
    celery_workers,
    needs_redis,
    redis_server,
    secantus_server,
    wait_for,
)

from app import create_app
from config import load_config
from mongo_manager import get_mongo
from processes import owner_pid_here

pytestmark = needs_redis

PER_TASK = 10  # PROCESSING_FRAMES_PER_TASK in conftest's env


@pytest.fixture
def env(env: dict[str, str], redis_server) -> dict[str, str]:
    """conftest's env with the broker set: the app, its client and workers use Celery."""
    return {**env, "QUEUE_BROKER_URL": redis_server.url, "QUEUE_RESUBMIT_SECONDS": "3",
            "QUEUE_SWEEP_SECONDS": "0.5", "QUEUE_VISIBILITY_TIMEOUT": "600",
            "PROCESSING_LEASE_SECONDS": "5"}


def make_videos(contents: Path, count: int, frames: int, prefix: str = "v") -> dict[str, int]:
    """``count`` barcode videos; upload id -> frame count."""
    for i in range(count):
        cfr_video(contents / "uploads" / f"{prefix}{i}.mp4", frames, size=(160, 120))
    return {f"{prefix}{i}": frames for i in range(count)}


def post_all(post, videos: dict[str, int]) -> None:
    for upload_id in videos:
        response = post(upload_id=upload_id, content_path=f"uploads/{upload_id}.mp4",
                        frame_rate=30)
        assert response.status_code == 202, response.get_json()


def job_of(mongo, upload_id: str) -> dict:
    return mongo.jobs.get_job(f"processContent:{upload_id}")


def wait_all_ended(mongo, videos: dict[str, int], timeout: float = 240) -> None:
    wait_for(lambda: all(job_of(mongo, u)["state"] in ("done", "failed") for u in videos),
             timeout, "every job to end")


def assert_exact(mongo, contents: Path, upload_id: str, frames: int) -> None:
    upload = mongo.uploads.get_upload(upload_id)
    assert upload["status"] == 1, upload["errorMessage"]
    tasks = mongo.frames.tasks_of(upload_id)
    expected = [list(range(i, min(i + PER_TASK, frames))) for i in range(0, frames, PER_TASK)]
    assert [t["original_frames"] for t in tasks] == expected
    ids = [t["_id"] for t in tasks]
    assert mongo.collections.frames.count_documents({"taskId": {"$in": ids}}) == frames
    for task in (tasks[0], tasks[-1]):
        assert clip_barcodes(Path(task["videoPath"])) == task["original_frames"]
    assert len(list((contents / "tasks" / "p1" / upload_id).iterdir())) == len(tasks)
    assert mongo.collections.staging.count_documents({"uploadId": upload_id}) == 0


def claims(workers) -> list[str]:
    return [job for worker in workers for job in worker.claimed()]


def test_two_workers_share_a_queue_and_no_job_runs_twice(env, post, mongo, contents,
                                                         celery_workers):
    videos = make_videos(contents, 8, 60)
    workers = [celery_workers(name, "cut", service_env(env)) for name in ("a", "b")]
    post_all(post, videos)
    wait_all_ended(mongo, videos)
    for upload_id, frames in videos.items():
        assert_exact(mongo, contents, upload_id, frames)
        assert job_of(mongo, upload_id)["attempts"] == 1
    assert sorted(claims(workers)) == sorted(f"processContent:{u}" for u in videos)
    assert all(worker.claimed() for worker in workers), "one worker took every job"


@pytest.mark.parametrize("victim", ["worker", "pool_process"])
def test_worker_killed_mid_job_and_another_finishes_it(env, post, mongo, contents,
                                                       celery_workers, victim):
    videos = make_videos(contents, 1, 600, prefix="long")
    # A re-send of the job after its holder dies must not wait for resubmit_seconds.
    env = service_env({**env, "QUEUE_RESUBMIT_SECONDS": "600"})
    workers = [celery_workers(name, "cut", env) for name in ("a", "b")]
    post_all(post, videos)
    job = wait_for(lambda: (j := job_of(mongo, "long0")) and j.get("owner") and j,
                   what="a worker to claim the job")
    wait_for(lambda: mongo.collections.staging.count_documents({}) >= 3, what="tasks to be staged")
    holder_pid = owner_pid_here(job["owner"])
    holder = next(w for w in workers if os.getpgid(holder_pid) == w.proc.pid)
    if victim == "worker":
        holder.kill()  # the worker, its pool process and its sweeper: kill -9
    else:
        os.kill(holder_pid, signal.SIGKILL)  # the worker gives the message back
    assert mongo.collections.staging.count_documents({}) < 60, "the job ended before the kill"
    wait_all_ended(mongo, videos, timeout=60)
    finished = job_of(mongo, "long0")
    assert finished["state"] == "done" and finished["attempts"] == 2
    assert_exact(mongo, contents, "long0", 600)
    assert claims(workers).count("processContent:long0") == 2
    if victim == "worker":
        other = next(w for w in workers if w is not holder)
        assert other.claimed() == ["processContent:long0"]


def test_redis_restarted_mid_run_loses_no_job(env, post, mongo, contents, celery_workers,
                                              redis_server):
    videos = {**make_videos(contents, 1, 600, prefix="long"), **make_videos(contents, 3, 60)}
    worker = celery_workers("a", "cut", service_env(env))
    post_all(post, videos)
    wait_for(lambda: mongo.collections.staging.count_documents({}) >= 3, what="tasks to be staged")
    redis_server.stop(kill=True)  # no persistence: every waiting message is gone
    time.sleep(1)
    redis_server.start()
    wait_all_ended(mongo, videos)
    for upload_id, frames in videos.items():
        assert_exact(mongo, contents, upload_id, frames)
        assert job_of(mongo, upload_id)["attempts"] == 1
    assert sorted(worker.claimed()) == sorted(f"processContent:{u}" for u in videos)
    assert "sent again" in worker.text()


def test_mongodb_restarted_mid_run(env, contents, secantus_server, celery_workers):
    env = {**env, "MONGODB_URI": secantus_server.uri, "MONGODB_TIMEOUT_MS": "2000"}
    config = load_config(env=env)
    mongo, client = get_mongo(config), create_app(config).test_client()
    videos = {**make_videos(contents, 1, 600, prefix="long"), **make_videos(contents, 2, 60)}
    workers = [celery_workers(name, "cut", service_env(env)) for name in ("a", "b")]
    for upload_id in videos:
        response = client.post("/api/processContent", json={
            "auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "p1", "frame_rate": 30,
            "content_path": f"uploads/{upload_id}.mp4"})
        assert response.status_code == 202, response.get_json()
    wait_for(lambda: mongo.collections.staging.count_documents({"uploadId": "long0"}) >= 3,
             what="tasks to be staged")
    secantus_server.stop()
    time.sleep(4)  # longer than the clients' timeout: running jobs hit database errors
    secantus_server.start()
    wait_all_ended(mongo, videos)
    for upload_id, frames in videos.items():
        assert_exact(mongo, contents, upload_id, frames)
    assert set(claims(workers)) == {f"processContent:{u}" for u in videos}


def test_job_accepted_while_broker_down_runs_later(env, post, mongo, contents, celery_workers,
                                                   redis_server):
    videos = make_videos(contents, 1, 60)
    redis_server.stop()
    started = time.monotonic()
    post_all(post, videos)  # the job is recorded: the request still gets its 202
    assert time.monotonic() - started < 10
    redis_server.start()
    worker = celery_workers("a", "cut", service_env(env))
    wait_all_ended(mongo, videos)
    assert_exact(mongo, contents, "v0", 60)
    assert worker.claimed() == ["processContent:v0"]


def test_annotation_goes_only_to_the_gpu_queue(env, post, mongo, contents, celery_workers,
                                               redis_server, client):
    videos = make_videos(contents, 1, 30)
    cpu = celery_workers("cpu", "cut", service_env(env))
    post_all(post, videos)
    wait_all_ended(mongo, videos)
    response = post(upload_id="v0", request_type=2, auto_anno_version=1, content_path=None,
                    frame_rate=None)
    assert response.status_code == 202, response.get_json()
    time.sleep(2)  # the CPU worker never takes annotation work
    assert job_of(mongo, "v0")["state"] == "queued"
    health = client.get("/api/health").get_json()["checks"]["queue"]
    assert health["ok"] and health["engine"] == "celery" and health["waiting"]["annotate"] >= 1
    gpu = celery_workers("gpu", "annotate", service_env(env))
    wait_all_ended(mongo, videos, timeout=300)
    assert job_of(mongo, "v0")["state"] == "done", job_of(mongo, "v0")["error"]
    assert cpu.claimed() == ["processContent:v0"] and gpu.claimed() == ["processContent:v0"]
    assert mongo.uploads.get_upload("v0")["request_type"] == 2


def test_health_reports_the_broker(client, redis_server):
    body = client.get("/api/health").get_json()
    assert body["checks"]["queue"] == {"ok": True, "engine": "celery",
                                       "waiting": {"cut": 0, "annotate": 0}}
    redis_server.stop()
    response = client.get("/api/health")
    assert response.status_code == 503
    assert response.get_json()["checks"]["queue"] == {"ok": False, "engine": "celery",
                                                      "error": "broker unreachable"}


def test_config_accepts_a_redis_broker(make_config):
    config = make_config(QUEUE_BROKER_URL="redis://10.0.0.5:6379/1", QUEUE_GPU_QUEUE="gpu")
    assert config.broker_url == "redis://10.0.0.5:6379/1"
    assert (config.queue.cpu_queue, config.queue.gpu_queue) == ("cut", "gpu")


def test_a_run_taken_over_keeps_its_staged_tasks(config, mongo, contents):
    """A stalled holder whose job a re-send gave to another worker must not
    discard the run's staged tasks: the new holder resumes from them."""
    from jobs.content import run_content_job
    from jobs.context import JobContext
    from job_types import Job
    from jobs.documents import task_object_id

    make_videos(contents, 1, 60)
    mongo.jobs.start_job("processContent:v0", "processContent",
                         {"upload_id": "v0", "project_id": "p1", "request_type": 0, "content_type": 1,
                          "content_path": str(contents / "uploads" / "v0.mp4"), "frame_rate": 30,
                          "frames_per_task": 10, "force_write": 0, "auto_anno_version": 0},
                         "run1", replace_active=False)
    mongo.jobs.queue_job("processContent:v0", "run1")
    job = mongo.jobs.claim_job("host:1", 5, job_id="processContent:v0")
    task = {"_id": task_object_id("run1", 1)}
    mongo.runs.stage_task("v0", "run1", 1, task, [{"taskId": task["_id"], "frameId": 0}])
    mongo.collections.jobs.update_one({"_id": job["_id"]}, {"$set": {"owner": "host:2"}})  # taken over
    run_content_job(Job.from_doc(job), JobContext(mongo, config, "host:1"))
    assert 1 in [doc["number"] for doc in mongo.runs.staged_tasks("v0", "run1")]
    assert mongo.collections.frames.count_documents({"taskId": task["_id"]}) == 1


def segment_claims(workers, upload_id: str) -> dict[str, list[str]]:
    return {worker.name: [job for job in worker.claimed()
                          if job.startswith(f"processContent:{upload_id}#")]
            for worker in workers}


def test_segments_of_one_video_run_on_two_workers_at_once(env, post, mongo, contents,
                                                          celery_workers):
    videos = make_videos(contents, 1, 600, prefix="seg")  # 20 s at 30 fps
    env = service_env({**env, "PROCESSING_SEGMENT_SECONDS": "5"})
    workers = [celery_workers(name, "cut", env) for name in ("a", "b")]
    post_all(post, videos)
    wait_all_ended(mongo, videos)
    assert_exact(mongo, contents, "seg0", 600)  # the single pass's tasks, every frame once
    segments = mongo.collections.jobs.count_documents({"parent": "processContent:seg0", "state": "done"})
    assert segments == 4
    by_worker = segment_claims(workers, "seg0")
    assert all(by_worker.values()), f"one worker cut every segment: {by_worker}"
    assert sum(map(len, by_worker.values())) == segments  # none ran twice


def test_worker_killed_mid_segment_and_the_upload_still_ends_exact(env, post, mongo, contents,
                                                                   celery_workers):
    videos = make_videos(contents, 1, 900, prefix="segkill")
    env = service_env({**env, "PROCESSING_SEGMENT_SECONDS": "10",
                       "QUEUE_RESUBMIT_SECONDS": "600"})
    workers = [celery_workers(name, "cut", env) for name in ("a", "b")]
    post_all(post, videos)
    wait_for(lambda: mongo.collections.staging.count_documents({}) >= 4, what="tasks to be staged")
    running = wait_for(lambda: mongo.collections.jobs.find_one({"parent": "processContent:segkill0",
                                                                "state": "running"}),
                       what="a segment to be running")
    holder_pid = owner_pid_here(running["owner"])
    holder = next(w for w in workers if os.getpgid(holder_pid) == w.proc.pid)
    holder.kill()
    assert mongo.collections.staging.count_documents({}) < 90, "the upload ended before the kill"
    wait_all_ended(mongo, videos, timeout=120)
    assert_exact(mongo, contents, "segkill0", 900)
    assert job_of(mongo, "segkill0")["state"] == "done"
