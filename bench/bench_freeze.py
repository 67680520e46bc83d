"""A frozen database (issue 17): what the API answers while MongoDB does not.

    python bench/bench_freeze.py [--samples 5] [--frames 3600]

Starts a dedicated SecantusDB server and ``gunicorn -c gunicorn.conf.py
wsgi:app`` (one gevent worker, the embedded executor, default settings), and
accepts a barcode video (tests/media.py: ``--frames`` frames at 30 fps,
320x240, cut at 10 fps into tasks of 120 frames). Once it is being cut, the
database server is frozen with SIGSTOP; while frozen, ``--samples`` GET
/api/health and then ``--samples`` POST /api/processContent (each a new
upload) are sent one after the other and timed; then SIGCONT. Prints each
answer's status and median time, the freeze's length, the time from the thaw
to the running upload's end, and whether it ended exact (every sampled frame,
in order, read back from the clips' barcodes), run once (attempts), with
nothing of the refused uploads recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import requests  # noqa: E402
from media import cfr_video, clip_barcodes  # noqa: E402

from embedded_db import embedded_uri, free_port, stop_embedded  # noqa: E402
from mongo_manager import MongoManager  # noqa: E402

KEY = "bench-key-0123456789"
HEADERS = {"X-Auth-Key": KEY, "Connection": "close"}
RATE = 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--frames", type=int, default=3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.samples, args.frames)


def run(tmp: Path, samples: int, frames: int) -> None:
    uri = embedded_uri(tmp / "db")
    db_pid = json.loads((tmp / "db" / "server.json").read_text())["pid"]
    contents = tmp / "contents"
    (contents / "uploads").mkdir(parents=True)
    cfr_video(contents / "uploads" / "v.mp4", frames)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SERVER_AUTH_KEY=KEY, MONGODB_URI=uri, MONGODB_DATABASE="bench",
               PATHS_CONTENTS_DIR=str(contents), GUNICORN_BIND=f"127.0.0.1:{port}",
               GUNICORN_WORKERS="1")
    with open(tmp / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                  cwd=ROOT, env=env, stdout=log, stderr=log,
                                  start_new_session=True)
    base, mongo = f"http://127.0.0.1:{port}", MongoManager(uri, "bench")
    try:
        _until(lambda: _get(base + "/api/health").status_code == 200)
        assert _post(base, "running").status_code == 202
        _until(lambda: (_get(f"{base}/api/processContent/running").json()["progress"] or 0) > 0)
        os.kill(db_pid, signal.SIGSTOP)
        frozen = time.monotonic()
        health = [_timed(lambda: _get(base + "/api/health")) for _ in range(samples)]
        posts = [_timed(lambda i=i: _post(base, f"refused{i}")) for i in range(samples)]
        os.kill(db_pid, signal.SIGCONT)
        thawed = time.monotonic()
        _until(lambda: _get(f"{base}/api/processContent/running").json()["status"] != 0)
        ended = time.monotonic()
        _report(mongo, samples, frames, health, posts, thawed - frozen, ended - thawed)
    finally:
        os.kill(db_pid, signal.SIGCONT)
        mongo.close()
        server.terminate()
        server.wait(60)
        stop_embedded(tmp / "db")


def _report(mongo: MongoManager, samples: int, frames: int, health: list, posts: list,
            frozen_s: float, thaw_to_end_s: float) -> None:
    upload, job = mongo.uploads.get_upload("running"), mongo.jobs.get_job("processContent:running")
    read = [n for task in mongo.frames.tasks_of("running")
            for n in clip_barcodes(Path(task["videoPath"]))]
    refused = [i for i in range(samples) if mongo.jobs.get_job(f"processContent:refused{i}")
               or mongo.uploads.get_upload(f"refused{i}")]
    for name, timed in (("GET /api/health", health), ("POST /api/processContent", posts)):
        codes = sorted({response.status_code for response, _ in timed})
        print(f"{name}: {codes} in median {statistics.median(s for _, s in timed):.2f} s "
              f"(max {max(s for _, s in timed):.2f} s, {len(timed)} requests)")
    print(f"database frozen {frozen_s:.1f} s; thaw to the running upload's end: "
          f"{thaw_to_end_s:.2f} s")
    print(f"running upload: status {upload['status']}, attempts {job['attempts']}, "
          f"exact {read == list(range(0, frames, 30 // RATE))}; "
          f"refused uploads recorded: {len(refused)}")


def _get(url: str) -> requests.Response:
    try:
        return requests.get(url, headers=HEADERS, timeout=60)
    except requests.ConnectionError:
        return requests.Response()


def _post(base: str, upload_id: str) -> requests.Response:
    return requests.post(f"{base}/api/processContent", headers=HEADERS, timeout=60, data={
        "auth_key": KEY, "upload_id": upload_id, "project_id": "p1", "frame_rate": str(RATE),
        "content_path": "uploads/v.mp4", "force_write": "0", "auto_anno_version": "0",
        "request_type": "0", "content_type": "1"})


def _timed(call) -> tuple[requests.Response, float]:
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def _until(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


if __name__ == "__main__":
    main()
