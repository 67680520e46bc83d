"""The Celery engine's app and its one task: ``celery -A celery_app worker -Q cut``.

A message carries only a job id: the job itself (parameters, state, lease,
staged tasks) lives in MongoDB, so a message can be lost, duplicated or
redelivered without harm. The task claims the job by id with the same atomic,
leased claim as the embedded executor and runs it with ``executor.run_claimed``:
a redelivered job resumes its run, a duplicate finds the job taken or finished
and does nothing.

Delivery settings: ``acks_late`` (a message is acknowledged only after its job
ran, so a worker that dies mid-job leaves it to be delivered again),
``task_reject_on_worker_lost`` (a killed pool process gives its message back at
once), prefetch 1 (a busy worker holds no other job back from idle workers),
and a Redis visibility timeout (``queue.visibility_timeout``) longer than the
longest job, so a slow job is not handed to a second worker while it runs.

Each worker also starts ``queue_sweeper.py``, which re-sends jobs whose
message was lost (Redis restarted without persistence) or whose holder died.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# ``celery -A celery_app`` puts the working folder on sys.path only while it
# imports this module, and its pool processes inherit the path without it; the
# job code imports some modules lazily (``executor.get_executor`` imports the
# Celery send side, model runtimes load on first use), so this folder stays on
# the path for the worker's whole life. Inserted even when it is there already:
# Celery then removes one copy (its own) and ours stays.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from celery import Celery, Task, signals  # noqa: E402

from config import Config, load_config  # noqa: E402
from exceptions import ConfigError, DatabaseUnavailable  # noqa: E402
from executor import get_executor, run_claimed  # noqa: E402
from job_context import JobContext  # noqa: E402
from job_states import LEASED_JOB_STATES  # noqa: E402
from logging_setup import configure_logging  # noqa: E402
from mongo_manager import DatabaseError, MongoManager, get_mongo, now  # noqa: E402
from processes import owner_dead_here, owner_id  # noqa: E402

log = logging.getLogger("celery_app")

RUN_JOB = "content.run_job"
SWEEPER_SCRIPT = Path(__file__).resolve().parent / "queue_sweeper.py"


def make_celery(config: Config) -> Celery:
    """The Celery app of ``config`` (web processes use it to send, workers to run)."""
    if not config.broker_url:
        raise ConfigError("queue.broker_url is empty: set it (redis://...) to use Celery")
    queues = config.queue
    app = Celery("content_processor", broker=config.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=config.processing.workers,
        task_ignore_result=True,  # the job document is the result
        task_default_queue=queues.cpu_queue,
        broker_transport_options={"visibility_timeout": queues.visibility_timeout,
                                  "socket_connect_timeout": 5},
        broker_connection_retry_on_startup=True,
        # A job keeps running while the broker is away: its state is in MongoDB,
        # and its redelivered message (if any) finds it done.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Accepting a request must not hang on a dead broker: the job is already
        # recorded, and the sweeper sends it once the broker is back.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0,
                                   "interval_step": 0.5, "interval_max": 1},
        worker_hijack_root_logger=True,
    )

    @app.task(name=RUN_JOB, bind=True)
    def run_job(task: Task, job_id: str) -> str:
        return run_job_here(task, config, job_id)

    return app


def run_job_here(task: Task, config: Config, job_id: str) -> str:
    """Claim ``job_id`` and run it; returns what happened (for the worker log)."""
    try:
        # A job that creates jobs (a long video's segments) sends them to Celery.
        ctx = JobContext(get_mongo(config), config, owner_id(),
                         submit=get_executor(config).submit)
        job, why = claim_by_id(ctx.mongo, config, job_id, ctx.owner)
        if job is None:
            log.info("job %s: not run (%s)", job_id, why)
            return why
        log.info("job %s: claimed by %s (attempt %d)", job_id, ctx.owner, job["attempts"])
        run_claimed(job, ctx)
        return "ran"
    except (DatabaseError, DatabaseUnavailable) as exc:
        # The database is away: try again once the lease has run out (a new
        # claim needs that); the sweeper would re-send it anyway.
        log.warning("job %s: database error, retrying: %s", job_id, exc)
        raise task.retry(countdown=config.processing.lease_seconds, max_retries=None)


def claim_by_id(mongo: MongoManager, config: Config, job_id: str,
                owner: str) -> tuple[dict | None, str]:
    """The claimed job, or None and why it is not to be run here.

    A job held by a live lease is left to its holder: if the holder dies, its
    lease runs out and the sweeper sends the job again. A holder that was a
    process of this host and is gone (a killed pool process) is released at
    once, so the redelivered message resumes the job without waiting.
    """
    lease = config.processing.lease_seconds
    job = mongo.claim_job(owner, lease, job_id=job_id)
    if job is not None:
        return job, "claimed"
    current = mongo.get_job(job_id)
    if current is None:
        return None, "no such job"
    holder = current.get("owner")
    if current["state"] in LEASED_JOB_STATES and owner_dead_here(holder):
        mongo.release_jobs([holder])
        job = mongo.claim_job(owner, lease, job_id=job_id)
        if job is not None:
            return job, "claimed"
    if current["state"] in LEASED_JOB_STATES:
        left = (current["leaseUntil"] - now()).total_seconds()
        return None, f"held by {holder} for {left:.1f} s more"
    return None, current["state"]


def __getattr__(name: str) -> Any:
    """``app`` for ``celery -A celery_app``, built from config.cfg and the
    environment on first use (importing this module reads no configuration)."""
    if name in ("app", "celery"):
        global app
        app = make_celery(load_config(require_auth_key=False))  # workers serve no HTTP
        return app
    raise AttributeError(name)


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
    _sweeper = subprocess.Popen([sys.executable, str(SWEEPER_SCRIPT), "--parent",
                                 str(os.getpid())])


@signals.worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None and _sweeper.poll() is None:
        _sweeper.terminate()
        _sweeper.wait(timeout=10)
