"""A rebuilt version holds exactly its content, in the store and locally, and
its manifest.json is true at every moment, across kill -9 (real SeaweedFS)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import ROOT, wait_for
from dataset_data import box, make_tasks, make_version

from intake import dataset_builds
from jobs.dataset import dataset_dir
from mongo_manager import to_id

REJECTED = 2  # auditStatus "Rejected": not in the default [1, 5]


def build(config, mongo, version: str) -> dict:
    assert dataset_builds.build_here(mongo, config, version)
    state = dataset_builds.status(mongo, version)
    assert state["status"] == 1, state
    return state


def reject(mongo, task_ids) -> None:
    mongo.collections.tasks.update_many({"_id": {"$in": list(task_ids)}}, {"$set": {"auditStatus": REJECTED}})


def relabel(mongo, task_ids) -> None:
    """Every frame of these tasks gets another box: their label files change."""
    mongo.collections.frames.update_many({"taskId": {"$in": list(task_ids)}},
                                         {"$set": {"boxes": [box("car", 2, 2, 30, 20)]}})


def manifest_of(client, bucket: str, prefix: str) -> tuple[str, dict] | None:
    try:
        answer = client.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return answer["ETag"].strip('"'), json.loads(answer["Body"].read())


def listing(client, bucket: str, prefix: str) -> dict[str, str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    return {o["Key"]: o["ETag"].strip('"') for page in pages for o in page.get("Contents", [])}


def assert_exact(client, bucket: str, prefix: str, root: Path) -> dict:
    """The prefix and the local folder hold the manifest's objects and the manifest only."""
    etag, manifest = manifest_of(client, bucket, prefix)
    listed = {o["key"]: o["etag"] for o in manifest["objects"]}
    held = listing(client, bucket, prefix)
    assert held == {**listed, f"{prefix}/manifest.json": etag}
    local = {p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and not p.name.startswith(".")}
    assert local == {key.removeprefix(f"{prefix}/") for key in listed} | {"manifest.json"}
    assert not [d for d in root.rglob("*") if d.is_dir() and not any(d.iterdir())]
    return manifest


def test_rebuild_after_a_rejection_holds_exactly_the_version(make_config, mongo, contents,
                                                             s3_env, s3_server):
    config = make_config(**s3_env)
    bucket, client = s3_env["S3_BUCKET"], s3_server.client()
    tasks = make_tasks(mongo, contents, "u1", 4, frames_per_task=10)
    version = make_version(mongo, s3Prefix="v")
    root = dataset_dir(contents, version)
    build(config, mongo, version)
    client.put_object(Bucket=bucket, Key="v/notes/README.txt", Body=b"not the service's")
    reject(mongo, tasks[1:2])
    state = build(config, mongo, version)
    client.delete_object(Bucket=bucket, Key="v/notes/README.txt")  # left alone: checked here
    manifest = assert_exact(client, bucket, "v", root)
    assert state["uploadStats"]["deleted"] == 20  # its 10 images and 10 label files
    assert not [o for o in manifest["objects"] if "task-2-" in o["key"]]
    assert state["counts"]["images"] == 30 and len(state["taskStatus"]["tasks"]) == 3
    assert not list(root.rglob("*task-2-*"))
    listed = {doc["_id"] for doc in mongo.collections.tasks.find({"datasetVersions": to_id(version)})}
    assert listed == set(tasks) - set(tasks[1:2])  # the rejected task is in it no more
    # Another format set: the YOLO folders and data.yaml go too, in both places.
    mongo.datasets.update_version(version, exportFormats=["COCO"])
    state = build(config, mongo, version)
    manifest = assert_exact(client, bucket, "v", root)
    assert state["uploadStats"]["deleted"] == 30 + 1  # 30 label files, data.yaml
    assert not [o for o in manifest["objects"] if "/labels/" in o["key"]]
    again = build(config, mongo, version)  # nothing changed: nothing sent, nothing deleted
    assert again["uploadStats"]["sent"] == again["uploadStats"]["deleted"] == 0


def test_a_rebuild_that_fails_a_task_withdraws_the_manifest(make_config, mongo, contents,
                                                           s3_env, s3_server):
    config = make_config(**s3_env)
    bucket, client = s3_env["S3_BUCKET"], s3_server.client()
    tasks = make_tasks(mongo, contents, "u1", 2)
    version = make_version(mongo, s3Prefix="f")
    root = dataset_dir(contents, version)
    build(config, mongo, version)
    relabel(mongo, tasks[:1])  # its objects change in the store during the failed build
    (contents / "frames" / "u1" / "task-2" / "3.jpg").unlink()
    assert dataset_builds.build_here(mongo, config, version)
    assert mongo.datasets.get_version(version)["error"]["code"] == "task_errors"
    assert manifest_of(client, bucket, "f") is None and not (root / "manifest.json").exists()
    reject(mongo, tasks[1:])  # the auditor takes the broken task out
    state = build(config, mongo, version)
    assert state["uploadStats"]["deleted"] == 20
    assert len(assert_exact(client, bucket, "f", root)["objects"]) == 20 + 4 + 1  # + report


def test_a_reader_never_finds_a_listed_object_missing(make_config, mongo, contents, s3_env,
                                                      s3_server):
    """A reader polls the manifest all through rebuilds; whenever the manifest
    it read is still the one there after its check, every listed object was
    present with the listed checksum."""
    config = make_config(**s3_env, S3_UPLOAD_THREADS="1")
    bucket, client = s3_env["S3_BUCKET"], s3_server.client()
    tasks = make_tasks(mongo, contents, "u1", 12, frames_per_task=10)
    version = make_version(mongo, s3Prefix="r")
    build(config, mongo, version)
    seen, violations, stop = {"polls": 0, "none": 0, "true": set()}, [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            before = manifest_of(client, bucket, "r")
            seen["polls"] += 1
            if before is None:
                seen["none"] += 1
                continue
            held = listing(client, bucket, "r")
            wrong = [o["key"] for o in before[1]["objects"] if held.get(o["key"]) != o["etag"]]
            after = manifest_of(client, bucket, "r")
            if after is not None and after[0] == before[0]:  # the same manifest all along
                if wrong:
                    violations.append(wrong)
                else:
                    seen["true"].add(before[0])

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        wait_for(lambda: seen["true"], 30, "the reader to check the first manifest")
        relabel(mongo, tasks[4:])  # 80 label files change: a long upload
        reject(mongo, tasks[:2])
        first = build(config, mongo, version)
        wait_for(lambda: len(seen["true"]) == 2, 30, "the reader to check the new manifest")
        reject(mongo, tasks[2:3])
        second = build(config, mongo, version)
        polls = seen["polls"]
        wait_for(lambda: seen["polls"] > polls + 2, 30, "the reader to see the last manifest")
    finally:
        stop.set()
        thread.join(30)
    assert violations == []
    assert first["uploadStats"]["deleted"] == 40 and second["uploadStats"]["deleted"] == 20
    assert len(seen["true"]) == 3 and seen["none"] > 0, seen  # old, middle, new; and gaps
    assert_exact(client, bucket, "r", dataset_dir(contents, version))


def plain_env(env: dict, s3_env: dict) -> dict:
    """A person's shell: no server key, no PYTHONPATH, this interpreter first on PATH."""
    base = {k: v for k, v in os.environ.items()
            if k != "PYTHONPATH" and not k.startswith("SERVER_")}
    test = {k: v for k, v in env.items() if k != "SERVER_AUTH_KEY"}
    return {**base, **test, **s3_env,
            "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}


def cli(run_env: dict, version: str) -> subprocess.Popen:
    return subprocess.Popen(["python", "dataset_processor.py", "-v", version], env=run_env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("moment", ["old manifest gone", "new manifest up"])
def test_kill_during_a_rebuild_then_rerun_converges(env, make_config, mongo, contents, s3_env,
                                                    s3_server, moment):
    config = make_config(**s3_env)
    bucket, client = s3_env["S3_BUCKET"], s3_server.client()
    tasks = make_tasks(mongo, contents, "u1", 24, frames_per_task=20)
    version = make_version(mongo, s3Prefix="k")
    build(config, mongo, version)
    old_etag = manifest_of(client, bucket, "k")[0]
    reject(mongo, tasks[5:])  # 760 objects to delete
    relabel(mongo, tasks[:5])  # 100 label files to send again
    run_env = {**plain_env(env, s3_env), "S3_UPLOAD_THREADS": "1"}
    process = cli(run_env, version)

    def reached() -> bool:
        assert process.poll() is None, process.communicate()
        now = manifest_of(client, bucket, "k")
        if moment == "old manifest gone":
            return now is None
        return now is not None and now[0] != old_etag

    wait_for(reached, 120, moment)
    process.send_signal(signal.SIGKILL)
    process.wait()
    now = manifest_of(client, bucket, "k")
    if now is not None:  # whatever is there is true
        held = listing(client, bucket, "k")
        assert all(held.get(o["key"]) == o["etag"] for o in now[1]["objects"])
    left = len(listing(client, bucket, "k"))
    assert mongo.datasets.get_version(version)["taskStatus"]["state"] == "pending"
    done = subprocess.run(["python", "dataset_creation_warm_start.py"], env=run_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "finished 1 job(s)" in done.stdout, done.stderr
    doc = mongo.datasets.get_version(version)
    assert doc["status"] == 1, doc.get("error")
    manifest = assert_exact(client, bucket, "k", dataset_dir(contents, version))
    assert len(manifest["objects"]) == 5 * 20 * 2 + 4 + 1  # + the health report
    assert doc["uploadStats"]["deleted"] == left - len(manifest["objects"]) - (now is not None)
    print(f"killed at '{moment}': {left} objects under the prefix, the warm start "
          f"deleted {doc['uploadStats']['deleted']}")
