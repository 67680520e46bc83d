"""Dataset builds that are killed, lose their store, or are set up wrong (real S3)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, service_env, use_credentials, wait_for
from dataset_data import make_tasks, make_version
from s3_server import SeaweedServer

from intake import dataset_builds
from jobs.dataset import dataset_dir

TASKS, FRAMES = 40, 10  # 800 objects: long enough at one upload thread to kill mid-way


def cli(env: dict, version: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "dataset_processor.py"), "-v", version],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def warm_start(env: dict) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "dataset_creation_warm_start.py")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def half_built(env, mongo, contents, s3_env, s3_server):
    """A version whose CLI was killed -9 mid-upload; (version, env, objects present)."""
    make_tasks(mongo, contents, "u1", TASKS, frames_per_task=FRAMES)
    version = make_version(mongo, s3Prefix="v")
    run_env = {**service_env(env), **s3_env, "S3_UPLOAD_THREADS": "1"}
    process = cli(run_env, version)

    def mid_upload() -> bool:
        assert process.poll() is None, process.communicate()
        return len(s3_server.objects(s3_env["S3_BUCKET"], "v/")) >= 150

    wait_for(mid_upload, 120, "150 objects in the bucket")
    process.send_signal(signal.SIGKILL)
    process.wait()
    present = s3_server.objects(s3_env["S3_BUCKET"], "v/")
    return version, run_env, present


def task_states(mongo, version: str) -> list[str]:
    return [t["state"] for t in mongo.datasets.get_version(version)["taskStatus"]["tasks"]]


def test_rerun_after_kill_sends_only_what_was_missing(half_built, mongo, s3_env, s3_server):
    version, run_env, present = half_built
    states = task_states(mongo, version)
    assert mongo.datasets.get_version(version)["taskStatus"]["state"] == "pending"
    assert "complete" in states and "pending" in states
    assert len(present) < 2 * TASKS * FRAMES
    process = cli(run_env, version)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    final = s3_server.objects(s3_env["S3_BUCKET"], "v/")
    stats = mongo.datasets.get_version(version)["uploadStats"]
    assert stats["skipped"] == len(present)  # nothing already there was sent again
    assert stats["sent"] == len(final) - len(present)
    assert stats["requests"] == stats["sent"]
    assert f"uploaded {stats['sent']} objects" in out
    assert set(task_states(mongo, version)) == {"complete"}
    manifest = json.loads(s3_server.client().get_object(
        Bucket=s3_env["S3_BUCKET"], Key="v/manifest.json")["Body"].read())
    assert {o["key"] for o in manifest["objects"]} | {"v/manifest.json"} == set(final)


def test_warm_start_finishes_a_half_built_version(half_built, mongo, s3_env, s3_server):
    version, run_env, present = half_built
    out = warm_start(run_env)
    assert "finished 1 job(s)" in out
    doc = mongo.datasets.get_version(version)
    assert doc["status"] == 1 and doc["taskStatus"]["state"] == "complete"
    assert doc["uploadStats"]["skipped"] == len(present)
    assert len(s3_server.objects(s3_env["S3_BUCKET"], "v/")) == \
        2 * TASKS * FRAMES + 4 + 2  # images, labels; data.yaml, 3 COCO files; report, manifest
    assert "finished 0 job(s)" in warm_start(run_env)  # nothing left: safe to run again


def test_store_down_mid_build_ends_in_error_then_warm_start_completes(
        env, make_config, mongo, contents, tmp_path, monkeypatch):
    server = SeaweedServer(tmp_path / "s3").start()
    try:
        bucket = server.new_bucket()
        s3 = {**server.env(bucket), "S3_UPLOAD_THREADS": "1", "S3_MAX_ATTEMPTS": "2"}
        use_credentials(monkeypatch, s3)
        config = make_config(**s3)
        make_tasks(mongo, contents, "u1", TASKS, frames_per_task=FRAMES)
        version = make_version(mongo, s3Prefix="v")

        def stop_store_mid_upload(fraction: float) -> None:
            if fraction > 0.3 and server.process:
                server.stop()

        dataset_builds.build_here(mongo, config, version, on_progress=stop_store_mid_upload)
        doc = mongo.datasets.get_version(version)
        assert doc["status"] == 2 and doc["error"]["code"] == "storage_unavailable", doc["error"]
        assert doc["error"]["retryable"] and doc["taskStatus"]["state"] == "error"
        assert "complete" in task_states(mongo, version)
        assert "pending" in task_states(mongo, version)  # nothing half-sent marked complete
        server.start()
        warm_start({**service_env(env), **s3})
        doc = mongo.datasets.get_version(version)
        assert doc["status"] == 1 and set(task_states(mongo, version)) == {"complete"}
        assert len(server.objects(bucket, "v/")) == 2 * TASKS * FRAMES + 6  # + the report
    finally:
        server.stop()


@pytest.mark.parametrize("change, code, message", [
    ({"AWS_SECRET_ACCESS_KEY": "wrong"}, 1, "rejected the credentials"),
    ({"S3_BUCKET": "no-such-bucket-here"}, 1, "does not exist"),
    ({"S3_ENDPOINT_URL": "http://127.0.0.1:9"}, 1, "unreachable"),
    ({"VERSION": "5f0000000000000000000000"}, 2, "no dataset version"),
])
def test_cli_setup_errors(env, mongo, contents, s3_env, change, code, message):
    make_tasks(mongo, contents, "u1", 1)
    version = make_version(mongo)
    run_env = {**service_env(env), **s3_env, "S3_MAX_ATTEMPTS": "1", **change}
    process = cli(run_env, change.get("VERSION", version))
    out, err = process.communicate(timeout=120)
    assert process.returncode == code and message in err, (out, err)
    doc = mongo.datasets.get_version(version)
    if code == 1:
        assert doc["status"] == 2 and message in doc["error"]["message"]
        tasks = (doc.get("taskStatus") or {}).get("tasks", [])
        assert not any(task["state"] == "complete" for task in tasks)


def test_a_second_build_at_once_is_refused(env, mongo, contents, s3_env):
    make_tasks(mongo, contents, "u1", TASKS, frames_per_task=FRAMES)
    version = make_version(mongo)
    run_env = {**service_env(env), **s3_env, "S3_UPLOAD_THREADS": "1"}
    first = cli(run_env, version)

    def building() -> bool:
        assert first.poll() is None, first.communicate()
        return mongo.datasets.get_version(version).get("stage") in ("exporting", "uploading")

    wait_for(building, 60, "the first build to start")
    second = cli(run_env, version)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 3 and "being built by another process" in err
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert os.path.exists(dataset_dir(contents, version) / "manifest.json")
