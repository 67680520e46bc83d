"""Run one claimed job, whatever its kind, under its watchdog (both engines call this)."""
from __future__ import annotations

import logging

from job_types import ContentParams, Job
from jobs.context import JobContext
from jobs.kinds import JOB_KINDS
from jobs.watchdog import Watchdog
from logging_setup import upload_context

log = logging.getLogger(__name__)


def run_claimed(job: Job, ctx: JobContext) -> None:
    """Run ``job`` (claimed by ``ctx.owner``), then any job it handed back (the
    parent of a cut-in-segments upload, claimed by its last segment)."""
    next_job: Job | None = job
    while next_job is not None:
        next_job = _run_one(next_job, ctx)


def _run_one(job: Job, ctx: JobContext) -> Job | None:
    kind = JOB_KINDS[job.kind]
    # Every line logged while running an upload's job carries its upload id.
    upload_id = job.params.upload_id if isinstance(job.params, ContentParams) else None
    with upload_context(upload_id):
        if job.attempts > ctx.config.processing.max_attempts:
            kind.fail(job, ctx, {"code": "crashed", "message": f"the job stopped its worker "
                                 f"{job.attempts - 1} times; giving up"})
            return None
        log.info("job %s: running (attempt %d)", job.id, job.attempts)
        # A job that stops making progress fails and ends this process (jobs/watchdog.py).
        with Watchdog(job, ctx, kind.fail):
            return kind.run(job, ctx)
