"""What a running job has at hand, and its heartbeat (progress + lease)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from config import Config
from exceptions import JobCancelled
from job_types import Job
from jobs import watchdog
from mongo_manager import MongoManager

HEARTBEAT_SECONDS = 0.5  # progress and lease updates: at least once a second


@dataclass
class JobContext:
    mongo: MongoManager
    config: Config
    owner: str
    on_progress: Callable[[float], None] | None = None  # the CLI's progress bar
    # Tells the engine of a job this job recorded (a segment: JobNotifier.notify);
    # without it, the embedded executor's workers find queued jobs themselves.
    notify: Callable[[str], None] = lambda job_id: None


class Heartbeat:
    """Progress in the job's document and the job's lease, at most twice a second.

    A lease that cannot be renewed means the run was replaced (force_write=1)
    or taken over: the run stops with JobCancelled. Call ``beat`` when the job
    moved on: it is what keeps the job's watchdog (jobs/watchdog.py) at bay.
    """

    def __init__(self, job: Job, ctx: JobContext,
                 record: Callable[[int], None] | None = None) -> None:
        self.job, self.ctx = job, ctx
        self.last = 0.0
        # For threads that do not carry the job's context (an S3 upload pool's).
        current = watchdog.current()
        self.alive: Callable[[], None] = current.progressed if current else lambda: None
        # Where progress goes: the upload document unless the job says otherwise.
        self.record = record or (lambda progress: ctx.mongo.uploads.update_upload(
            job.params.upload_id, progress=progress))

    def beat(self, fraction: float, force: bool = False) -> None:
        self.alive()
        if not force and time.monotonic() - self.last < HEARTBEAT_SECONDS:
            return
        self.last = time.monotonic()
        self.holding()
        # 99 at most until the commit: 100 means the tasks are there.
        progress = min(99, int(fraction * 100))
        self.record(progress)
        if self.ctx.on_progress:
            self.ctx.on_progress(fraction)

    def holding(self) -> None:
        """Renew the lease now; JobCancelled if this process no longer holds the run."""
        ctx, job = self.ctx, self.job
        if not ctx.mongo.jobs.renew_lease(job.id, job.run_id, ctx.owner,
                                          ctx.config.processing.lease_seconds):
            raise JobCancelled("the run was replaced")
