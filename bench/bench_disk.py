"""A full contents store (issue 17), met from outside as an operator meets it.

    sudo python bench/bench_disk.py [--size-mb 64] [--rounds 5] [--requests 50]

Mounts a tmpfs of ``--size-mb`` MiB as the contents folder (root only), starts
the service as the README says (gunicorn, embedded executor, 2 job
processes) with ``PROCESSING_MIN_FREE_MB=1`` and its database outside that
folder (a SecantusDB of its own), then:

1. ``--rounds`` new uploads whose outputs do not fit (a 10 s 640x360 video
   cut at 30 fps: 300 JPEGs of ~30 KB and 30 clips, with 3 MiB free) run out
   of space: the answer, and the time from ENOSPC (the first moment the store
   has no page free, polled every 0.2 ms) to status 2 visible in MongoDB
   (polled every 2 ms);
2. ``--rounds`` builds of a dataset version that does not fit (60 tasks, 600
   label files, 1.5 MiB free) the same way;
3. with the store filled to 64 KiB free (below the floor): ``--requests``
   POST /api/processContent and POST /api/datasets/<id>/build (each refused
   with 507) and GET /api/health (503), with their latencies;
4. the filler removed: the upload of (1) sent again with force_write=1, and
   the time to status 1, its tasks checked frame by frame.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, LiveService, machine, median, table, test_video  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from dataset_data import make_tasks, make_version  # noqa: E402

from config import load_config  # noqa: E402
from embedded_db import embedded_uri, stop_embedded  # noqa: E402
from mongo_manager import MongoManager  # noqa: E402
from storage.space import free_bytes  # noqa: E402

KEY = "bench-disk-key-0123456789"
PAGE = 4096


def fill(contents: Path, leave: int) -> Path:
    """Take the store's free space but ``leave`` bytes (the filler grows or shrinks)."""
    filler = contents / "filler.bin"
    filler.unlink(missing_ok=True)
    with open(filler, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, max(PAGE, free_bytes(contents) - leave))
    return filler


class FirstFull(threading.Thread):
    """The first moment the store has less than a page free: when a writer gets ENOSPC."""

    def __init__(self, contents: Path) -> None:
        super().__init__(daemon=True)
        self.contents, self.at, self.stop = contents, None, threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stop.is_set() and self.at is None:
            if free_bytes(self.contents) < PAGE:
                self.at = time.monotonic()
            time.sleep(0.0002)


def wait_for(predicate, timeout: float = 120.0, every: float = 0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value, time.monotonic()
        time.sleep(every)
    raise RuntimeError("timed out")


def timed(send) -> tuple[int, float, dict]:
    started = time.perf_counter()
    answer = send()
    return answer.status_code, (time.perf_counter() - started) * 1000, answer.json()


def run_out(contents: Path, start, done) -> tuple[dict, float]:
    """Start a job that will not fit; (its error, ms from ENOSPC to status 2)."""
    watch = FirstFull(contents)
    start()
    error, seen = wait_for(done)
    watch.stop.set()
    if watch.at is None:
        raise RuntimeError("the store never ran out: make the job bigger")
    return error, (seen - watch.at) * 1000


def accepted(answer: requests.Response) -> None:
    assert answer.status_code == 202, answer.text


def job_row(case: str, found: list[tuple[dict, float]]) -> list[str]:
    codes = sorted({error["code"] for error, _ in found})
    times = sorted(ms for _, ms in found)
    return [case, f"status 2, {codes}", f"median {median(times):.0f} ms, {times[0]:.0f}-"
            f"{times[-1]:.0f} ms from ENOSPC to status 2 ({len(times)} runs)"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_disk.py mounts a tmpfs: run it as root", file=sys.stderr)
        return 2
    video = test_video(10, 640, 360)
    folder = Path(tempfile.mkdtemp(prefix="bench-disk-"))
    contents = folder / "contents"
    contents.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mb}m", "tmpfs",
                    str(contents)], check=True)
    uri = embedded_uri(folder / "db")  # the database elsewhere, as in production
    service = None
    try:
        settings = {"MONGODB_URI": uri, "MONGODB_DATABASE": "bench_disk",
                    "PROCESSING_MIN_FREE_MB": "1", "PROCESSING_FRAMES_PER_TASK": "10"}
        service = LiveService(folder, KEY, **settings)
        config = load_config(env={**os.environ, **settings, "SERVER_AUTH_KEY": KEY,
                                  "PATHS_CONTENTS_DIR": str(contents)})
        mongo = MongoManager(uri, "bench_disk")
        shutil.copy(video, contents / "uploads" / "big.mp4")
        base, headers = service.base, {"X-Auth-Key": KEY}
        body = {"upload_id": "full", "project_id": "p1", "frame_rate": 30,
                "content_path": "uploads/big.mp4"}
        rows = []

        # 1. Uploads that fill the store.
        found = []
        for round_ in range(args.rounds):
            fill(contents, 3 << 20)
            upload_id = "full" if round_ == 0 else f"full{round_}"

            def upload_failed():
                doc = mongo.uploads.get_upload(upload_id) or {}
                return doc.get("status") == 2 and doc["errorMessage"]

            found.append(run_out(contents, lambda: accepted(requests.post(
                f"{base}/api/processContent", json={**body, "upload_id": upload_id},
                headers=headers)), upload_failed))
        rows.append(job_row("upload that runs out of space", found))
        print(f"upload: {found[0][0]['message']}")

        # 2. Dataset builds that fill the store.
        (contents / "filler.bin").unlink()  # room for the tasks' frames first
        make_tasks(mongo, contents, "d1", 60)
        version = make_version(mongo)

        def build_failed():
            doc = mongo.datasets.get_version(version) or {}
            return doc.get("status") == 2 and doc["error"]

        found = []
        for _ in range(args.rounds):
            fill(contents, 3 << 19)
            found.append(run_out(contents, lambda: accepted(requests.post(
                f"{base}/api/datasets/{version}/build", headers=headers)), build_failed))
        rows.append(job_row("dataset build that runs out of space", found))
        print(f"dataset: {found[0][0]['message']}")

        # 3. Below the floor: refused, and health says so.
        filler = fill(contents, 64 << 10)
        for name, send in [
            ("POST /api/processContent (new upload)", lambda i: requests.post(
                f"{base}/api/processContent", headers=headers,
                json={**body, "upload_id": f"refused{i}"})),
            ("POST /api/datasets/<id>/build", lambda i: requests.post(
                f"{base}/api/datasets/{version}/build", headers=headers)),
            ("GET /api/health", lambda i: requests.get(f"{base}/api/health")),
        ]:
            results = [timed(lambda: send(i)) for i in range(args.requests)]
            codes = sorted({code for code, _, _ in results})
            times = sorted(ms for _, ms, _ in results)
            answer = results[-1][2]
            what = answer.get("code") or answer["checks"]["storage"]
            rows.append([f"{name}, below the floor", f"{codes} {what}",
                         f"median {median(times):.1f} ms, max {times[-1]:.1f} ms "
                         f"({args.requests} requests)"])
        left = [u for u in (f"refused{i}" for i in range(args.requests)) if mongo.uploads.get_upload(u)]
        assert not left and mongo.collections.jobs.count_documents({"_id": {"$regex": "refused"}}) == 0

        # 4. Space freed: the caller's force_write=1 gives the whole upload.
        filler.unlink()
        started = time.monotonic()
        answer = requests.post(f"{base}/api/processContent", headers=headers,
                               json={**body, "force_write": 1})
        assert answer.status_code == 202, answer.text
        doc, done = wait_for(lambda: (d := mongo.uploads.get_upload("full")) and d["status"] != 0 and d,
                             300, 0.05)
        tasks = mongo.collections.tasks.count_documents({"uploadId": "full"})
        frames = sum(t["frameCount"] for t in mongo.collections.tasks.find({"uploadId": "full"}))
        rows.append(["the same upload again, force_write=1, space freed",
                     f"status {doc['status']}, {tasks} tasks, {frames} frames",
                     f"{done - started:.1f} s to status 1"])

        print(f"\n{machine()}; tmpfs {args.size_mb} MiB, processing.min_free_mb = "
              f"{config.processing.min_free_mb}, gunicorn + embedded executor\n")
        print(table(["case", "answer", "time"], rows))
        mongo.client.drop_database("bench_disk")
        mongo.close()
    finally:
        if service is not None:
            service.stop()
        stop_embedded(folder / "db")
        subprocess.run(["umount", str(contents)], check=False)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
