"""The Celery deployment on loopback, for the scale-out benchmarks.

A SecantusDB server, a ``redis-server`` (no persistence) and Celery workers
(``celery -A celery_app worker -Q cut -c 1`` each, with their sweepers), all
on 127.0.0.1, under a temp dir; ``gunicorn -c gunicorn.conf.py wsgi:app`` on
request. Everything is stopped (and the database too) when the ``with`` ends.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, wait_healthy  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from queue_fixtures import CeleryWorker, RedisServer  # noqa: E402

from embedded_db import embedded_uri, free_port, stop_embedded  # noqa: E402

AUTH_KEY = "bench-scale-key"
CLAIMED = re.compile(r"job (\S+): claimed by (\S+) \(attempt (\d+)\)")


class Stack:
    def __init__(self, folder: Path, frames_per_task: int) -> None:
        self.folder = folder
        self.contents = folder / "contents"
        (self.contents / "uploads").mkdir(parents=True)
        self.redis = RedisServer(folder)
        self.workers: list[CeleryWorker] = []
        self.gunicorn: subprocess.Popen | None = None
        # No PYTHONPATH: the services start as the README says, from the repo folder.
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env = {**base, "SERVER_AUTH_KEY": AUTH_KEY,
                    "PATHS_CONTENTS_DIR": str(self.contents),
                    "PROCESSING_FRAMES_PER_TASK": str(frames_per_task),
                    "CONFIG_FILE": str(ROOT / "config.cfg")}

    def start(self) -> None:
        self.env["MONGODB_URI"] = embedded_uri(self.folder / "db")
        self.redis.start()
        self.env["QUEUE_BROKER_URL"] = self.redis.url

    def add_worker(self, name: str, prefix: tuple[str, ...] = ()) -> CeleryWorker:
        worker = CeleryWorker(name, "cut", self.env, self.folder, concurrency=1, prefix=prefix)
        self.workers.append(worker)
        return worker.wait_ready()

    def start_gunicorn(self, workers: int = 2) -> str:
        port = free_port()
        env = {**self.env, "GUNICORN_BIND": f"127.0.0.1:{port}",
               "GUNICORN_WORKERS": str(workers)}
        log = open(self.folder / "gunicorn.log", "ab")
        self.gunicorn = subprocess.Popen([str(Path(sys.executable).with_name("gunicorn")), "-c",
                                          "gunicorn.conf.py", "wsgi:app"], env=env, cwd=ROOT,
                                         stdout=log, stderr=log, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, self.gunicorn)
        return base

    def claims(self) -> list[tuple[str, str, int]]:
        """(job id, owner, attempt) of every claim in every worker's log."""
        return [(job, owner, int(attempt)) for worker in self.workers
                for job, owner, attempt in CLAIMED.findall(worker.text())]

    def stop(self) -> None:
        if self.gunicorn is not None and self.gunicorn.poll() is None:
            os.killpg(self.gunicorn.pid, signal.SIGTERM)
            self.gunicorn.wait(timeout=60)
        for worker in self.workers:
            worker.stop()
        self.redis.stop(kill=True)
        stop_embedded(self.folder / "db")


@contextmanager
def celery_stack(frames_per_task: int, keep: bool = False) -> Iterator[Stack]:
    folder = Path(tempfile.mkdtemp(prefix="bench-celery-"))
    stack = Stack(folder, frames_per_task)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        if keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(folder)], check=False)
