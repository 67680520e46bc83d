"""No job hangs silently: a job that stops making progress fails ("stalled") and
its process is freed for the next upload, with either engine.

The stalls are real user paths: a registered auto-annotation model whose
inference never returns (a TorchScript loop that runs in C++ with the GIL
released, as a hung decoder or a dead NFS read does), and a dataset build
whose S3 endpoint accepts connections and never answers. A job that takes
longer than ``stall_seconds`` while it progresses is not touched.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import AUTH_KEY, ROOT, service_env, wait_for
from dataset_data import make_tasks, make_version
from media import cfr_video
from queue_fixtures import celery_workers, needs_redis, redis_server  # noqa: F401
from torch import nn

from app import create_app
from config import load_config
from exceptions import ConfigError, JobCancelled
from job_states import RequestType
from job_types import ContentParams, Job
from jobs import watchdog as watchdog_module
from jobs.staging import FencedLayout
from jobs.watchdog import Watchdog
from storage.s3_store import S3Store, UploadItem, file_etag

STALL_SECONDS = 2
HANG_VERSION = 9


class NeverReturns(nn.Module):
    """A detector whose every inference loops (practically) forever."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        i = 0
        while i < 10 ** 15:
            y = y + 0.0
            i += 1
        return y


@pytest.fixture(scope="module")
def hang_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hang-model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, still supported
        torch.jit.script(NeverReturns()).save(str(folder / "model.pt"))
    (folder / "model.json").write_text(json.dumps({
        "name": "hangs", "labels": ["thing"], "format": "torchscript",
        "weights": "model.pt", "output": "boxes", "input_size": [64, 64]}))
    return folder


@pytest.fixture
def env(env: dict[str, str], hang_model: Path) -> dict[str, str]:
    """One job process (or pool process): a stall that kept it would stop everything."""
    return {**env, "PROCESSING_WORKERS": "1", "PROCESSING_STALL_SECONDS": str(STALL_SECONDS),
            f"ANNOTATION_VERSION_{HANG_VERSION}": str(hang_model)}


@pytest.fixture
def start_executor(tmp_path):
    """``python executor.py`` from the repo folder, as the README says; returns its log."""
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str]) -> Path:
        log = tmp_path / "executor.log"
        with open(log, "wb") as out:
            started.append(subprocess.Popen(
                [sys.executable, "executor.py"], env=service_env(env), cwd=ROOT,
                stdout=out, stderr=out, start_new_session=True))
        return log

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def freed_processes(log: Path) -> int:
    """Job processes the supervisor replaced because they were freed from a stall."""
    return len(re.findall(r"exited \(freed from a stalled job\); starting another",
                          log.read_text()))


def next_upload_completes(post, mongo, contents: Path, long: bool = False) -> None:
    """An upload sent now is cut by the one job process slot; a ``long`` one
    takes longer than stall_seconds, and progresses all the while."""
    cfr_video(contents / "uploads" / "b.mp4", 1200 if long else 30, size=(320, 240))
    assert post(upload_id="u2", content_path="uploads/b.mp4",
                frame_rate=30).status_code == 202
    wait_for(lambda: mongo.uploads.get_upload("u2")["status"] in (1, 2), 60, "the next upload to end")
    upload = mongo.uploads.get_upload("u2")
    assert upload["status"] == 1, upload.get("errorMessage")
    if long:
        assert upload["timings"]["processingSeconds"] > STALL_SECONDS


def stall_then_next_upload(post, mongo, contents: Path, long: bool = False,
                           doing: str = "cutting") -> float:
    """u1 hangs in its model; u2, sent once u1 failed, must still be cut by the
    same single job process slot. Returns seconds from sending u1 to its failure."""
    cfr_video(contents / "uploads" / "a.mp4", 90, size=(160, 120))  # 2 tasks at 5 fps
    sent = time.monotonic()
    response = post(upload_id="u1", content_path="uploads/a.mp4", request_type=1,
                    auto_anno_version=HANG_VERSION)
    assert response.status_code == 202, response.get_json()
    wait_for(lambda: mongo.uploads.get_upload("u1")["status"] == 2, 60, "the stalled upload to fail")
    failed_after = time.monotonic() - sent
    upload, job = mongo.uploads.get_upload("u1"), mongo.jobs.get_job("processContent:u1")
    assert upload["errorMessage"]["code"] == "stalled"
    assert upload["errorMessage"]["message"] == \
        f"no progress for {STALL_SECONDS} s while {doing}"
    assert job["state"] == "failed" and job["error"]["code"] == "stalled"
    assert mongo.collections.tasks.count_documents({}) == 0 and mongo.collections.staging.count_documents({}) == 0
    assert not list(contents.rglob(".staging-*"))  # its partial outputs are gone

    next_upload_completes(post, mongo, contents, long)
    # Failed once, for good: not claimed again, not retried into a loop.
    job = mongo.jobs.get_job("processContent:u1")
    assert job["state"] == "failed" and job["attempts"] == 1
    assert mongo.uploads.get_upload("u1")["status"] == 2
    return failed_after


def test_stalled_job_fails_and_frees_the_embedded_executors_process(env, post, mongo, contents,
                                                                     start_executor):
    executor = start_executor(env)
    failed_after = stall_then_next_upload(post, mongo, contents, long=True)
    assert failed_after < 40  # start-up, model load, 2 s without progress
    # The job process that held the stalled job ended; the supervisor replaced it.
    assert freed_processes(executor) == 1


@pytest.fixture
def silent_s3() -> dict[str, str]:
    """The settings of an S3 endpoint that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)  # never accept()ed
    yield {"S3_ENDPOINT_URL": f"http://127.0.0.1:{server.getsockname()[1]}",
           "S3_BUCKET": "datasets", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "secret"}
    server.close()


def test_dataset_build_on_a_silent_store_fails_and_frees_its_process(env, silent_s3, client,
                                                                     post, mongo, contents,
                                                                     start_executor):
    executor = start_executor({**env, **silent_s3})
    make_tasks(mongo, contents, "u1", 2)
    version = make_version(mongo)
    sent = time.monotonic()
    answer = client.post(f"/api/datasets/{version}/build", headers={"X-Auth-Key": AUTH_KEY})
    assert answer.status_code == 202
    wait_for(lambda: mongo.datasets.get_version(version).get("status") == 2, 60,
             "the stalled build to fail")
    assert time.monotonic() - sent < 40  # botocore alone would wait 60 s x 8 attempts
    state = client.get(f"/api/datasets/{version}", headers={"X-Auth-Key": AUTH_KEY}).json
    assert state["status"] == 2 and state["error"] == {
        "code": "stalled", "retryable": False,
        "message": f"no progress for {STALL_SECONDS} s while exporting (checking the bucket)"}
    next_upload_completes(post, mongo, contents)
    job = mongo.jobs.get_job(f"datasetBuild:{version}")
    assert job["state"] == "failed" and job["attempts"] == 1
    assert freed_processes(executor) == 1


@needs_redis
def test_stalled_job_fails_and_frees_a_celery_pool_process(env, redis_server, mongo, contents,
                                                           celery_workers):
    env = {**env, "QUEUE_BROKER_URL": redis_server.url, "QUEUE_VISIBILITY_TIMEOUT": "600"}
    client = create_app(load_config(env=env)).test_client()  # it sends jobs to the broker

    def post_celery(**fields):
        body = {"auth_key": AUTH_KEY, "project_id": "p1", "frame_rate": 5,
                "request_type": 0, "content_type": 1, **fields}
        return client.post("/api/processContent", json=body)

    # Here u1 (3 s) is cut in two segment jobs; the first one stalls.
    worker = celery_workers("w", "cut,annotate", service_env(
        {**env, "PROCESSING_SEGMENT_SECONDS": "1"}), concurrency=1)
    failed_after = stall_then_next_upload(post_celery, mongo, contents,
                                          doing="cutting segment 1")
    assert failed_after < 40
    # The pool process exited; its message came back and found the job failed.
    wait_for(lambda: "processContent:u1#1: not run (failed)" in worker.text(), 30,
             "the redelivered message to find the job failed")
    assert re.search(r"exited with 'exitcode 75'", worker.text())
    assert mongo.jobs.get_job("processContent:u1#1")["attempts"] == 1
    # The other segment stops without cutting: its upload has failed.
    wait_for(lambda: mongo.jobs.get_job("processContent:u1#2")["state"] == "cancelled", 30,
             "the second segment to stop")
    assert worker.claimed().count("processContent:u1#1") == 1


def test_staging_folders_made_as_a_stall_cleans_up_are_never_left(tmp_path, monkeypatch):
    """The race CI met: the watchdog failed the job (and removed its staging)
    while the job's own thread, slow to load its model, went on to make the
    staging folders just before the process ended. Made through the run's
    layout, they wait for the clean-up and then are not made at all."""
    failing, exits = threading.Event(), []
    monkeypatch.setattr(watchdog_module.os, "_exit", exits.append)  # keep pytest alive
    monkeypatch.setattr(watchdog_module.logging, "shutdown", lambda: None)  # and its logging
    params = ContentParams("u1", "p1", 5, "/v.mp4", 0, 0, RequestType.CUT, 1, 10)
    doc = {"_id": "processContent:u1", "kind": "processContent", "runId": "r1",
           "owner": "me", "state": "running", "params": params.to_doc()}
    job = Job.from_doc(doc)
    ctx = SimpleNamespace(owner="me", config=SimpleNamespace(processing=SimpleNamespace(
        stall_seconds=0.2, lease_seconds=60)), mongo=SimpleNamespace(jobs=SimpleNamespace(
        get_job=lambda _id: doc)))

    def fail(job: Job, ctx, error: dict) -> None:  # the discard, slow on a busy disk
        failing.set()
        time.sleep(0.5)

    layout = FencedLayout(tmp_path / ".staging-u1-r1", tmp_path / ".staging-f-r1", "v")
    with Watchdog(job, ctx, fail):
        assert failing.wait(10)
        started = time.monotonic()
        with pytest.raises(JobCancelled):
            layout.make_roots()
        assert time.monotonic() - started > 0.3  # it waited for the clean-up
    assert exits == [watchdog_module.STALL_EXIT_CODE]
    assert not list(tmp_path.iterdir())


def test_stall_seconds_is_validated(make_config):
    with pytest.raises(ConfigError, match="processing.stall_seconds must be between 1"):
        make_config(PROCESSING_STALL_SECONDS="0")


def test_a_large_s3_part_reports_while_it_is_sent(make_config, s3_env, tmp_path):
    """One part of a slow upload can take longer than stall_seconds: its body
    reports each block as it goes, so the job's watchdog sees it progress."""
    config = make_config(**s3_env, S3_PART_MB="5")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 << 20))  # 3 parts
    store = S3Store(config.s3)
    reports: list[float] = []
    store.upload([UploadItem(big, "m/big.bin", file_etag(big, 5 << 20))], lambda item: None,
                 lambda: reports.append(time.monotonic()))
    assert store.stats.sent == 1 and store.stats.requests == 3
    assert len(reports) > 3 * 3  # several while each part is sent, not one per part
