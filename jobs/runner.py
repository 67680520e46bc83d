"""Run one claimed job, whatever its kind, under its watchdog (both engines call this)."""
from __future__ import annotations

import logging

from jobs.context import JobContext
from jobs.kinds import JOB_KINDS
from jobs.watchdog import Watchdog
from logging_setup import upload_context

log = logging.getLogger(__name__)


def run_claimed(job: dict, ctx: JobContext) -> None:
    """Run ``job`` (claimed by ``ctx.owner``), then any job it handed back (the
    parent of a cut-in-segments upload, claimed by its last segment)."""
    while job is not None:
        job = _run_one(job, ctx)


def _run_one(job: dict, ctx: JobContext) -> dict | None:
    kind = JOB_KINDS[job["kind"]]
    # Every line logged while running an upload's job carries its upload id.
    with upload_context((job.get("params") or {}).get("upload_id")):
        if job.get("attempts", 1) > ctx.config.processing.max_attempts:
            kind.fail(job, ctx, {"code": "crashed", "message": f"the job stopped its worker "
                                 f"{job['attempts'] - 1} times; giving up"})
            return None
        log.info("job %s: running (attempt %d)", job["_id"], job.get("attempts", 1))
        # A job that stops making progress fails and ends this process (jobs/watchdog.py).
        with Watchdog(job, ctx, kind.fail):
            return kind.run(job, ctx)
