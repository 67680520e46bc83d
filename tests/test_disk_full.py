"""A full contents store (issue 17): the floor, the 507, ``disk_full`` jobs, health.

The contents folder is a small real file system: a tmpfs this test mounts
(root only, as in CI), so every ENOSPC here is the kernel's own. The
database lives elsewhere (the session's SecantusDB), as the contents store
of a real deployment often does.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import pytest
from conftest import AUTH_KEY, ROOT, service_env
from dataset_data import make_tasks, make_version
from event_receiver import events_env
from media import clip_barcodes, expected_samples, write_video
from test_openapi import check

from config import load_config
from job_states import dataset_job_id, upload_job_id
from jobs.dataset import dataset_dir
from storage.space import disk_full

SIZE_MB = 12  # the tmpfs: a few small uploads fit, and a filler takes the rest
FRAMES = 60  # per test video: 60 JPEGs and 6 clips at frame_rate 30
LEFT_KB = 64  # what a filler leaves free: less than one upload's outputs
MIB = 1 << 20


@contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """``path`` as a tmpfs of ``size_mb`` MiB for the duration (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the contents folder needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:  # root without the right (an unprivileged container)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # busy: detach it now


@pytest.fixture
def contents(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "contents", SIZE_MB) as path:
        (path / "uploads").mkdir()
        yield path


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """A floor of 1 MiB (so it never refuses what then fills the store), and
    events on, to show that a refused request records none."""
    return {**env, "PROCESSING_MIN_FREE_MB": "1", **events_env("http://127.0.0.1:9/hooks")}


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(contents: Path, leave: int = LEFT_KB << 10) -> Path:
    """Take all of the store's free space but ``leave`` bytes (another
    tenant's file, a log that grew): the space is really gone."""
    filler = contents / "filler.bin"
    with open(filler, "ab") as handle:
        os.posix_fallocate(handle.fileno(), 0, filler.stat().st_size
                           + free_bytes(contents) - leave)
    assert free_bytes(contents) <= leave
    return filler


def files_of(contents: Path, upload_id: str) -> dict[str, str]:
    """Every file of an upload (clips, JPEGs), with a digest of its bytes."""
    found = {}
    for root in (contents / "tasks" / "p1" / upload_id, contents / "frames" / upload_id):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                found[str(path.relative_to(contents))] = hashlib.sha1(
                    path.read_bytes()).hexdigest()
    return found


def leftovers(contents: Path) -> list[str]:
    """Partial outputs anywhere in the store: staging folders, unfinished clips."""
    return sorted(str(p.relative_to(contents)) for p in contents.rglob("*")
                  if p.name.startswith((".staging-", ".trash-")) or p.name.endswith(".part"))


def snapshot(mongo, contents: Path, upload_id: str) -> tuple:
    upload = mongo.uploads.get_upload(upload_id)
    tasks = mongo.frames.tasks_of(upload_id)
    frames = [mongo.frames.frames_of(task["_id"]) for task in tasks]
    return upload, tasks, frames, files_of(contents, upload_id)


def upload(post, contents: Path, upload_id: str, **fields):
    video = contents / "uploads" / f"{upload_id}.mp4"
    if not video.exists():
        write_video(video, list(range(FRAMES)))
    return post(upload_id=upload_id, content_path=f"uploads/{video.name}", frame_rate=30,
                **fields)


def assert_exact_frames(mongo, upload_id: str) -> None:
    """Status 1 and every task clip and JPEG holds exactly the frames it should."""
    doc = mongo.uploads.get_upload(upload_id)
    assert doc["status"] == 1, doc["errorMessage"]
    tasks = mongo.frames.tasks_of(upload_id)
    expected = expected_samples([Fraction(i, 30) for i in range(FRAMES)], 30)
    assert [f for t in tasks for f in t["original_frames"]] == expected
    for task in tasks:
        assert clip_barcodes(Path(task["videoPath"])) == task["original_frames"]
        for frame in mongo.frames.frames_of(task["_id"]):
            assert clip_barcodes(Path(frame["imagePath"])) == [frame["sourceFrame"]]


def assert_disk_full(error: dict, contents: Path) -> None:
    assert error["code"] == "disk_full", error
    message = error["message"]
    assert "contents store full" in message and "processing.min_free_mb = 1" in message, message
    assert "KiB free" in message, message  # what it had left
    assert str(contents) not in message, message  # paths relative to contents_dir only


def warm_start(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "dataset_creation_warm_start.py")],
                          env=service_env(env), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_upload_that_fills_the_store_ends_disk_full(contents, post, run_jobs, mongo):
    for upload_id in ("u1", "u2"):
        assert upload(post, contents, upload_id).status_code == 202
    assert run_jobs() == 2
    before = {u: snapshot(mongo, contents, u) for u in ("u1", "u2")}
    assert all(len(files) == 66 for _, _, _, files in before.values())  # 6 clips, 60 JPEGs
    assert upload(post, contents, "u3").status_code == 202
    filler = fill(contents)
    assert run_jobs() == 1

    doc = mongo.uploads.get_upload("u3")
    assert doc["status"] == 2 and doc["stage"] == "error"
    assert_disk_full(doc["errorMessage"], contents)
    assert mongo.jobs.get_job(upload_job_id("u3"))["error"]["code"] == "disk_full"
    failed = [e for e in mongo.collections.outbox.find({"stream": "u3"}) if e["type"] == "upload.failed"]
    assert [e["data"]["code"] for e in failed] == ["disk_full"]
    # Partial outputs removed; tasks published before the wall stay whole.
    assert leftovers(contents) == []
    assert mongo.collections.staging.count_documents({"uploadId": "u3"}) == 0
    for task in mongo.frames.tasks_of("u3"):
        assert Path(task["videoPath"]).is_file()
        assert all(Path(f["imagePath"]).is_file() for f in mongo.frames.frames_of(task["_id"]))
    # The uploads before it: every file and document as it was.
    assert {u: snapshot(mongo, contents, u) for u in ("u1", "u2")} == before

    # Space freed: the caller's force_write=1 gives the exact frames.
    filler.unlink()
    assert upload(post, contents, "u3", force_write=1).status_code == 202
    assert run_jobs() == 1
    assert_exact_frames(mongo, "u3")
    assert leftovers(contents) == []


def test_below_the_floor_nothing_is_accepted(contents, client, post, mongo):
    version = make_version(mongo)
    before = mongo.datasets.get_version(version)
    write_video(contents / "uploads" / "u1.mp4", list(range(FRAMES)))
    fill(contents)

    answer = post(upload_id="u1", content_path="uploads/u1.mp4", frame_rate=30)
    assert answer.status_code == 507, answer.json
    assert answer.json["code"] == "insufficient_storage"
    document = client.get("/api/openapi.json").json  # the 507 is documented as it answers
    check(document, "/api/processContent", "post", answer)
    assert "processing.min_free_mb = 1" in answer.json["message"]
    assert str(contents) not in answer.json["message"]
    assert mongo.uploads.get_upload("u1") is None and mongo.jobs.get_job(upload_job_id("u1")) is None
    assert mongo.collections.projects.count_documents({}) == 0

    build = client.post(f"/api/datasets/{version}/build", headers={"X-Auth-Key": AUTH_KEY})
    assert build.status_code == 507, build.json
    assert build.json["code"] == "insufficient_storage"
    check(document, "/api/datasets/{version_id}/build", "post", build)
    assert mongo.jobs.get_job(dataset_job_id(version)) is None
    assert mongo.datasets.get_version(version) == before
    assert mongo.collections.outbox.count_documents({}) == 0  # no event of either


def test_health_uses_the_configured_floor(contents, client):
    body = client.get("/api/health").json
    storage = body["checks"]["storage"]
    assert storage["ok"] is True and storage["minFreeBytes"] == MIB  # 1 MiB, not 1 GiB
    assert MIB < storage["freeBytes"] <= SIZE_MB * MIB

    fill(contents)
    answer = client.get("/api/health")
    assert answer.status_code == 503
    storage = answer.json["checks"]["storage"]
    assert storage == {"ok": False, "freeBytes": storage["freeBytes"], "minFreeBytes": MIB}
    assert storage["freeBytes"] <= LEFT_KB << 10


def test_warm_start_retries_a_disk_full_upload_once_space_is_back(contents, env, post, run_jobs,
                                                                 mongo):
    assert upload(post, contents, "u1").status_code == 202
    filler = fill(contents)
    assert run_jobs() == 1
    assert mongo.uploads.get_upload("u1")["errorMessage"]["code"] == "disk_full"

    out = warm_start(env)  # still below the floor: left for later
    assert "below processing.min_free_mb = 1: 1 upload(s) or dataset build(s) that ran out " \
           "of space (disk_full) left for later" in out, out
    assert "retried 0" in out and "finished 0 job(s)" in out, out
    assert mongo.uploads.get_upload("u1")["status"] == 2

    filler.unlink()
    out = warm_start(env)
    assert "retried 1" in out and "finished 1 job(s)" in out, out
    assert_exact_frames(mongo, "u1")
    assert leftovers(contents) == []
    out = warm_start(env)  # once per failure: a done upload is not run again
    assert "retried 0" in out and "finished 0 job(s)" in out, out


def test_a_dataset_build_that_fills_the_store_ends_disk_full(contents, env, client, run_jobs,
                                                             mongo):
    make_tasks(mongo, contents, "u1", 8)
    version = make_version(mongo)
    answer = client.post(f"/api/datasets/{version}/build", headers={"X-Auth-Key": AUTH_KEY})
    assert answer.status_code == 202, answer.json
    filler = fill(contents)  # the frames are in; 80 label files will not fit
    assert run_jobs() == 1

    doc = mongo.datasets.get_version(version)
    assert doc["status"] == 2 and doc["taskStatus"]["state"] == "error"
    assert_disk_full(doc["error"], contents)
    assert not dataset_dir(contents, version).exists()  # its partial output is gone
    failed = [e for e in mongo.collections.outbox.find({"stream": f"dataset:{version}"})
              if e["type"] == "dataset.failed"]
    assert [e["data"]["code"] for e in failed] == ["disk_full"]

    filler.unlink()
    out = warm_start(env)
    assert "retried 1" in out and "finished 1 job(s)" in out, out
    doc = mongo.datasets.get_version(version)
    assert doc["status"] == 1 and doc["counts"]["images"] == 80, doc.get("error")
    assert len(list(dataset_dir(contents, version).glob("labels/*/*.txt"))) == 80


def test_out_of_space_is_told_apart_wherever_it_was_raised(tmp_path):
    """ENOSPC itself, PyAV's, or one a stage wrapped: disk_full; anything else: not.
    (No mount: this one runs without root too.)"""
    config = load_config(env={"SERVER_AUTH_KEY": AUTH_KEY, "PATHS_CONTENTS_DIR": str(tmp_path),
                              "PROCESSING_MIN_FREE_MB": "1"})

    def raised_from(cause: BaseException) -> BaseException:
        try:
            try:
                raise cause
            except OSError as exc:
                raise RuntimeError("the encoder stage failed") from exc
        except RuntimeError as wrapped:
            return wrapped

    full = OSError(errno.ENOSPC, "No space left on device")
    for exc in (full, raised_from(full), OSError(errno.EDQUOT, "Disk quota exceeded"),
                av.error.OSError(errno.ENOSPC, "No space left on device", "x.mp4.part")):
        error = disk_full(exc, config)
        assert error is not None and error.code == "disk_full", exc
        assert "processing.min_free_mb = 1" in error.message
    for exc in (OSError(errno.EACCES, "Permission denied"), ValueError("no"),
                raised_from(OSError(errno.EIO, "I/O error"))):
        assert disk_full(exc, config) is None, exc
