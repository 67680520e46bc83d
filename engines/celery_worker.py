"""The Celery engine's worker side: the one task, registered only here, and the
worker's sweeper. ``celery -A celery_app worker -Q cut`` loads it.

A message carries only a job id: the job itself (parameters, state, lease,
staged tasks) lives in MongoDB, so a message can be lost, duplicated or
redelivered without harm. The task claims the job by id with the same atomic,
leased claim as the embedded engine and runs it with ``jobs.runner.run_claimed``:
a redelivered job resumes its run, a duplicate finds the job taken or finished
and does nothing. Delivery settings: ``engines/celery_setup.py``.

Each worker also starts the sweeper (``engines/sweeper.py``), which re-sends
jobs whose message was lost (Redis restarted without persistence) or whose
holder died.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from celery import Celery, Task, bootsteps, signals

from config import Config
from engines.celery_setup import RUN_JOB, make_celery
from engines.engine import get_notifier
from exceptions import DatabaseUnavailable
from jobs.claims import claim_by_id
from jobs.context import JobContext
from jobs.runner import run_claimed
from logging_setup import configure_logging
from mongo_manager import DatabaseError, get_mongo
from processes import owner_id

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent  # the repo folder: the sweeper runs from it
KEEP_SWEEPER_SECONDS = 2.0


def run_job_here(task: Task, config: Config, job_id: str) -> str:
    """Claim ``job_id`` and run it; returns what happened (for the worker log)."""
    try:
        # A job that creates jobs (a long video's segments) sends them to Celery.
        ctx = JobContext(get_mongo(config, jobs=True), config, owner_id(),
                         notify=get_notifier(config).notify)
        job, why = claim_by_id(ctx.mongo, config, job_id, ctx.owner)
        if job is None:
            log.info("job %s: not run (%s)", job_id, why)
            return why
        log.info("job %s: claimed by %s (attempt %d)", job_id, ctx.owner, job.attempts)
        run_claimed(job, ctx)
        return "ran"
    except (DatabaseError, DatabaseUnavailable) as exc:
        # The database is away: try again once the lease has run out (a new
        # claim needs that); the sweeper would re-send it anyway.
        log.warning("job %s: database error, retrying: %s", job_id, exc)
        raise task.retry(countdown=config.processing.lease_seconds, max_retries=None)


def worker_app(config: Config) -> Celery:
    """The app a worker runs: the shared settings and the one task."""
    app = make_celery(config)

    @app.task(name=RUN_JOB, bind=True)
    def run_job(task: Task, job_id: str) -> str:
        return run_job_here(task, config, job_id)

    app.steps["worker"].add(SweeperKeeper)
    return app


class SweeperKeeper(bootsteps.StartStopStep):
    """Starts the sweeper again should it die (it delivers this worker's events
    too), from the worker's own timer: no thread in a process that forks."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        self.tref = worker.timer.call_repeatedly(KEEP_SWEEPER_SECONDS, _restart_dead_sweeper)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()


def _restart_dead_sweeper() -> None:
    if _sweeper is not None and _sweeper.poll() is not None:
        log.warning("sweeper %s exited (status %s); starting another", _sweeper.pid,
                    _sweeper.returncode)
        _start_sweeper()


_sweeper: subprocess.Popen | None = None


@signals.setup_logging.connect
def _json_logs(**_: Any) -> None:
    """Connected, so Celery skips its own logging set-up: the worker logs JSON
    lines like every process of the service (with the upload id while a job runs)."""
    configure_logging()


@signals.worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    # Its own process, not a thread: the worker forks pool processes, and a
    # fork of a process with threads and a MongoDB client is unsafe.
    global _sweeper
    _sweeper = subprocess.Popen([sys.executable, "-m", "engines.sweeper", "--parent",
                                 str(os.getpid())], cwd=ROOT)


@signals.worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None and _sweeper.poll() is None:
        _sweeper.terminate()
        _sweeper.wait(timeout=10)
