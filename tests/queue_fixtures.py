"""A real Redis server and real Celery worker processes, for tests and benchmarks.

``redis_server``: a ``redis-server`` on a free loopback port, without
persistence (a restart loses every message, as an unlucky production restart
would). ``celery_workers``: starts ``celery -A celery_app worker`` processes
(each with its sweeper) and kills whatever is left at the end of the test.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conftest import wait_for  # noqa: E402

from embedded_db import free_port  # noqa: E402

CLAIMED = re.compile(r"job (\S+): claimed by ")  # celery_app's log line
REDIS = shutil.which("redis-server")
CELERY = shutil.which("celery") or "celery"
needs_redis = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed "
                                 "(.ci/run installs it: apt-get install redis-server)")


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.folder)]
        log = open(self.folder / "redis.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()
        wait_for(self.ping, 20, "redis-server to start")

    def ping(self) -> bool:
        import redis
        try:
            return redis.Redis(port=self.port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=20)


class SecantusServer:
    """A private SecantusDB server on a fixed port, so that it can be restarted
    under clients that keep their URI."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port",
                str(self.port), "--storage-path", str(self.folder / "data"),
                "--log-level", "WARNING"]
        log = open(self.folder / "server.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()
        wait_for(self._listening, 60, "SecantusDB to start")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError((self.folder / "server.log").read_text()[-2000:])
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # It can wait on a transaction a client left open: a crash is a
                # restart too, and WiredTiger recovers from it.
                self.proc.kill()
                self.proc.wait(timeout=30)


class CeleryWorker:
    """``celery -A celery_app worker``; its log (and its sweeper's) goes to ``log``."""

    def __init__(self, name: str, queues: str, env: dict[str, str], folder: Path,
                 concurrency: int = 1, prefix: tuple[str, ...] = ()) -> None:
        self.name, self.log = name, folder / f"worker-{name}.log"
        # prefix: e.g. ("taskset", "-c", "0") holds the worker and its pool to one core.
        # The console script from PATH, as the README says (``python -m celery``
        # puts the working folder on sys.path and once hid a failing import).
        args = [*prefix, CELERY, "-A", "celery_app", "worker", "-Q", queues,
                "-c", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with open(self.log, "ab") as log:
            # Own process group: kill -9 of "the worker" takes its pool and sweeper too.
            self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log,
                                         start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> "CeleryWorker":
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{self.text()[-3000:]}")
            return " ready." in self.text()
        wait_for(ready, timeout, f"worker {self.name} to be ready")
        return self

    def claimed(self) -> list[str]:
        """The job ids this worker's processes claimed, in order."""
        return CLAIMED.findall(self.text())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # pool processes, sweeper
        except ProcessLookupError:
            pass


@pytest.fixture
def redis_server(tmp_path: Path) -> RedisServer:
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def secantus_server(tmp_path: Path) -> SecantusServer:
    folder = tmp_path / "secantus"
    folder.mkdir()
    server = SecantusServer(folder)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def celery_workers(tmp_path: Path):
    """Start workers: ``start(name, queues, env)``; all are stopped after the test."""
    started: list[CeleryWorker] = []

    def start(name: str, queues: str, env: dict[str, str], concurrency: int = 1,
              wait: bool = True) -> CeleryWorker:
        worker = CeleryWorker(name, queues, env, tmp_path, concurrency)
        started.append(worker)
        return worker.wait_ready() if wait else worker

    yield start
    for worker in started:
        worker.stop()
