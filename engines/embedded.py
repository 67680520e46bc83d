"""The embedded engine: a supervisor keeping ``processing.workers`` job processes
on this machine, which claim queued jobs from MongoDB and run them.

Jobs are durable documents in MongoDB (ProcessingJob) before the API answers
``202``; ``notify`` (``engines/engine.py``) is the seam a distributed engine
(Celery) plugs into. Here one supervisor process per contents folder (a file
lock makes it a singleton, however many gunicorn workers there are) runs the
job processes, which claim jobs with an atomic update and hold a lease while
they work. ``notify`` wakes
an idle job process through the supervisor (``engines.control.wake_executor``:
a datagram on a Unix socket), so a new job starts at once; polling every
``processing.poll_seconds`` only backs that up. Heavy work never
runs inside a web worker. A job process that dies has its job released and
resumed by a fresh process; after a crash of everything, the next start (or
``dataset_creation_warm_start.py``) does the same.

Run the supervisor with ``python executor.py``; it is started for you by
``python app.py`` and by ``gunicorn.conf.py``.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from annotation.registry import get_registry
from config import Config, load_config
from engines.control import executor_lock_path, wake_address, wake_executor
from jobs.claims import claim, release_orphans
from jobs.context import JobContext
from jobs.runner import run_claimed
from jobs.watchdog import STALL_EXIT_CODE
from logging_setup import configure_logging
from mongo_manager import DatabaseError, get_mongo
from processes import owner_id

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent  # the repo folder: the deliverer runs from it
SUPERVISE_SECONDS = 0.5
ORPHAN_SCAN_SECONDS = 5.0


def worker_loop(config: Config, stop: threading.Event, drain: bool = False,
                wake: Any = None) -> int:
    """Claim and run jobs until ``stop`` (or, with ``drain``, until none is left).

    ``wake``: the supervisor's semaphore, released once for each job queued on
    this machine; an idle process waits on it rather than sleeping a whole
    ``processing.poll_seconds``, which stays the fallback.
    """
    mongo = get_mongo(config, jobs=True)  # waits out a short database outage
    # Segments this process fans out wake the other job processes too.
    ctx = JobContext(mongo, config, owner_id(), notify=lambda job_id: wake_executor(config))
    parent = os.getppid()
    ran = 0
    while not stop.is_set():
        try:
            job = claim(mongo, ctx.owner, config.processing.lease_seconds)
            if job is None:
                if drain or os.getppid() != parent:
                    return ran
                if wake is None:
                    stop.wait(config.processing.poll_seconds)
                else:
                    wake.acquire(timeout=config.processing.poll_seconds)
                continue
            run_claimed(job, ctx)
            ran += 1
        except DatabaseError as exc:
            log.warning("database error, retrying: %s", exc)
            stop.wait(1.0)
    return ran


def _worker_main(config: Config, wake: Any) -> None:
    configure_logging()
    worker_loop(config, threading.Event(), wake=wake)


class Supervisor:
    """Keeps ``processing.workers`` job processes alive; releases jobs of dead ones."""

    def __init__(self, config: Config, parent_pid: int | None = None) -> None:
        self.config = config
        self.parent_pid = parent_pid
        self.mongo = get_mongo(config)
        self.context = multiprocessing.get_context("spawn")  # never fork a live client
        self.workers: list[multiprocessing.Process] = []
        self.stopping = threading.Event()
        # Released once per wake-up datagram; idle job processes wait on it.
        self.wake = self.context.Semaphore(0)
        self.deliverer: subprocess.Popen | None = None

    def run(self) -> None:
        release_orphans(self.mongo)
        self.workers = [self._start() for _ in range(self.config.processing.workers)]
        self._keep_deliverer()
        threading.Thread(target=self._relay_wakeups, name="wake-relay", daemon=True).start()
        last_scan = time.monotonic()
        while not self.stopping.wait(SUPERVISE_SECONDS):
            if self.parent_pid and os.getppid() != self.parent_pid:
                log.info("parent %s is gone; stopping", self.parent_pid)
                break
            self._replace_dead()
            self._keep_deliverer()
            if time.monotonic() - last_scan > ORPHAN_SCAN_SECONDS:
                self._safe(lambda: release_orphans(self.mongo))
                last_scan = time.monotonic()
        self._stop_workers()

    def _relay_wakeups(self) -> None:
        """Each datagram on the wake-up socket (``wake_executor``: a job was
        queued) lets one idle job process claim at once."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(wake_address(self.config))
            except OSError as exc:  # polling alone still finds every job
                log.warning("no wake-up socket (%s); new jobs are found by polling", exc)
                return
            sock.settimeout(SUPERVISE_SECONDS)
            while not self.stopping.is_set():
                try:
                    sock.recv(16)
                except (TimeoutError, socket.timeout):
                    continue
                # At most one pending wake-up per process: while all are busy,
                # more would only make them claim in vain later.
                if self.wake.get_value() < len(self.workers):
                    self.wake.release()

    def _start(self) -> multiprocessing.Process:
        process = self.context.Process(target=_worker_main, args=(self.config, self.wake),
                                       daemon=True)
        process.start()
        return process

    def _replace_dead(self) -> None:
        for i, process in enumerate(self.workers):
            if process.is_alive():
                continue
            why = ("freed from a stalled job" if process.exitcode == STALL_EXIT_CODE
                   else f"status {process.exitcode}")
            log.warning("job process %s exited (%s); starting another", process.pid, why)
            owner = owner_id(process.pid)
            self._safe(lambda: self.mongo.jobs.release_jobs([owner]))
            self.workers[i] = self._start()

    def _keep_deliverer(self) -> None:
        """The event deliverer (events.url set): its own process, started again
        if it dies, so that posting events never competes with a job."""
        if not self.config.events.enabled:
            return
        if self.deliverer is not None and self.deliverer.poll() is None:
            return
        if self.deliverer is not None:
            log.warning("event deliverer %s exited (status %s); starting another",
                        self.deliverer.pid, self.deliverer.returncode)
        self.deliverer = subprocess.Popen([sys.executable, "-m", "events.deliverer",
                                           "--parent", str(os.getpid())], cwd=ROOT)

    def _stop_workers(self) -> None:
        if self.deliverer is not None:
            self.deliverer.terminate()
        for process in self.workers:
            process.terminate()
        for process in self.workers:
            process.join(timeout=10)
        owners = [owner_id(p.pid) for p in self.workers]
        self._safe(lambda: self.mongo.jobs.release_jobs(owners))

    @staticmethod
    def _safe(action: Callable) -> None:
        try:
            action()
        except DatabaseError as exc:
            log.warning("database error: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", type=int, help="stop when this process is gone")
    args = parser.parse_args(argv)
    configure_logging()
    config = load_config(require_auth_key=False)  # serves no HTTP
    get_registry(config.annotation)  # a bad model manifest stops start-up here
    path = executor_lock_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("an executor already runs for %s", config.contents_dir)
        return 0
    supervisor = Supervisor(config, args.parent)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: supervisor.stopping.set())
    log.info("executor: %d job processes", config.processing.workers)
    supervisor.run()
    return 0

