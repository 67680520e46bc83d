"""No job hangs silently: a job that stops making progress fails ("stalled") and
its process is freed for the next upload, with either engine.

The stall is a real user path: a registered auto-annotation model whose
inference never returns (a TorchScript loop that runs in C++ with the GIL
released, as a hung decoder or a dead NFS read does).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import ROOT, service_env, wait_for
from media import cfr_video
from queue_fixtures import celery_workers, needs_redis, redis_server  # noqa: F401

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


def stall_then_next_upload(post, mongo, contents: Path) -> float:
    """u1 hangs in its model; u2, sent once u1 failed, must still be cut by the
    same single job process slot. Returns seconds from sending u1 to its failure."""
    cfr_video(contents / "uploads" / "a.mp4", 60, size=(160, 120))
    cfr_video(contents / "uploads" / "b.mp4", 30, size=(160, 120))
    sent = time.monotonic()
    response = post(upload_id="u1", content_path="uploads/a.mp4", request_type=1,
                    auto_anno_version=HANG_VERSION)
    assert response.status_code == 202, response.get_json()
    wait_for(lambda: mongo.get_upload("u1")["status"] == 2, 60, "the stalled upload to fail")
    failed_after = time.monotonic() - sent
    upload, job = mongo.get_upload("u1"), mongo.get_job("processContent:u1")
    assert upload["errorMessage"]["code"] == "stalled"
    assert upload["errorMessage"]["message"] == \
        f"no progress for {STALL_SECONDS} s while cutting"
    assert job["state"] == "failed" and job["error"]["code"] == "stalled"
    assert mongo.tasks.count_documents({}) == 0 and mongo.staging.count_documents({}) == 0
    assert not list(contents.rglob(".staging-*"))  # its partial outputs are gone

    assert post(upload_id="u2", content_path="uploads/b.mp4").status_code == 202
    wait_for(lambda: mongo.get_upload("u2")["status"] == 1, 60, "the next upload to finish")
    # Failed once, for good: not claimed again, not retried into a loop.
    job = mongo.get_job("processContent:u1")
    assert job["state"] == "failed" and job["attempts"] == 1
    assert mongo.get_upload("u1")["status"] == 2
    return failed_after


def test_stalled_job_fails_and_frees_the_embedded_executors_process(env, post, mongo,
                                                                     contents, tmp_path):
    log = tmp_path / "executor.log"
    with open(log, "wb") as out:  # `python executor.py` from the repo folder (README)
        executor = subprocess.Popen([sys.executable, "executor.py"], env=service_env(env),
                                    cwd=ROOT, stdout=out, stderr=out, start_new_session=True)
    try:
        failed_after = stall_then_next_upload(post, mongo, contents)
    finally:
        os.killpg(executor.pid, signal.SIGTERM)
        executor.wait(timeout=30)
    text = log.read_text()
    # The job process that held the stalled job ended; the supervisor replaced it.
    assert len(re.findall(r"exited \(freed from a stalled job\); starting another", text)) == 1
    assert failed_after < 40  # start-up, model load, 2 s without progress


@needs_redis
def test_stalled_job_fails_and_frees_a_celery_pool_process(env, redis_server, post, mongo,
                                                           contents, celery_workers):
    env = {**env, "QUEUE_BROKER_URL": redis_server.url, "QUEUE_VISIBILITY_TIMEOUT": "600"}
    # The app under test sends jobs to this broker too.
    from app import create_app
    from config import load_config
    from conftest import AUTH_KEY
    client = create_app(load_config(env=env)).test_client()

    def post_celery(**fields):
        body = {"auth_key": AUTH_KEY, "project_id": "p1", "frame_rate": 5,
                "request_type": 0, "content_type": 1, **fields}
        return client.post("/api/processContent", json=body)

    worker = celery_workers("w", "cut,annotate", service_env(env), concurrency=1)
    failed_after = stall_then_next_upload(post_celery, mongo, contents)
    assert failed_after < 40
    # The pool process exited; its message came back and found the job failed.
    wait_for(lambda: "processContent:u1: not run (failed)" in worker.text(), 30,
             "the redelivered message to find the job failed")
    assert re.search(r"exited with 'exitcode 75'", worker.text())
    assert worker.claimed().count("processContent:u1") == 1
