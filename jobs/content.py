"""Run one processContent job: pipeline -> staged tasks -> published or committed.

A run writes its clips and JPEGs into staging folders and its tasks into
AnnotationTaskStaging (``jobs/staging.py``). A new upload's run publishes each
task as soon as it is final, in number order (``jobs/publish.py``); a run
that replaces existing tasks renames its staging folders into place and, in
one transaction, swaps the upload's tasks, only when every task is done.
Either way status 1 means every file is there, a reader never sees old and
new tasks mixed, a failed run leaves nothing behind but the tasks it
published, and a run killed mid-way resumes from its staged tasks. A long
video is cut in segments by several processes (``jobs/segments.py``).
"""
from __future__ import annotations

import logging

from job_states import ACTIVE_JOB_STATES, JobKind, JobState, RequestType, started_upload
from job_types import ContentJob
from jobs import segments, watchdog
from jobs.annotate import annotate_existing
from jobs.claims import read_job
from jobs.context import Heartbeat, JobContext
from jobs.failure import run_guarded
from jobs.publish import decide_and_record_progressive, publisher_for
from jobs.staging import commit_tasks, discard, fail_upload, input_limits, run_paths, stage_pipeline
from jobs.timings import RunClock
from processors.readers import VIDEO, open_source
from storage.contents import RunPaths, remove_replaced

log = logging.getLogger(__name__)

KIND = JobKind.CONTENT


def run_content_job(job: ContentJob, ctx: JobContext) -> None:
    paths = run_paths(ctx.config, job)
    if job.state == JobState.COMMITTED:  # died after the commit: only the clean-up is left
        _clean_up(job, ctx, paths)
        return
    upload_id, run_id = job.params.upload_id, job.run_id
    if run_guarded(lambda: _run(job, ctx, paths), config=ctx.config, doing="processing",
                   fail=lambda error: fail_upload(job, ctx, paths, error),
                   cancelled=lambda: _cancelled(job, ctx, paths),
                   ended=lambda: not ctx.mongo.runs.run_is_current(upload_id, run_id)):
        _clean_up(job, ctx, paths)


def fail_job(job: ContentJob, ctx: JobContext, error: dict) -> None:
    """End a job that cannot be run (a stall, or it crashed its worker too often)."""
    fail_upload(job, ctx, run_paths(ctx.config, job), error)


def _run(job: ContentJob, ctx: JobContext, paths: RunPaths) -> bool:
    """Do the run's work; False when it is not committed yet (its segments carry on)."""
    if job.params.request_type == RequestType.ANNOTATE:
        annotate_existing(job, ctx)
        return True
    if job.segments:  # its segments are cut: the commit is left
        return segments.commit_segments(job, ctx, paths)
    return _cut(job, ctx, paths)


def _cut(job: ContentJob, ctx: JobContext, paths: RunPaths) -> bool:
    """Cut the upload in one pass and commit it; False when segment jobs took it."""
    params, mongo = job.params, ctx.mongo
    clock = RunClock(job)
    mongo.uploads.update_upload(params.upload_id, **started_upload("cutting"))
    watchdog.progressed("cutting (opening the video)" if params.content_type == VIDEO
                        else "cutting (reading the images)")
    progressive = decide_and_record_progressive(job, ctx)
    if segments.fan_out(job, ctx):
        return False
    heartbeat = Heartbeat(job, ctx)
    source = open_source(params.content_type, params.content_path, params.frame_rate,
                         input_limits(ctx.config))
    watchdog.progressed("cutting")
    publisher = publisher_for(job.id, params, job.run_id, paths, ctx) if progressive else None
    done, sampled = stage_pipeline(job, ctx, paths, source, heartbeat, publisher=publisher)
    heartbeat.beat(1.0, force=True)
    watchdog.progressed("committing")
    commit_tasks(job, ctx, paths, len(done), clock.timings("cutting", sampled), publisher,
                 source)
    return True


def _cancelled(job: ContentJob, ctx: JobContext, paths: RunPaths) -> None:
    upload_id, run_id = job.params.upload_id, job.run_id
    current = read_job(ctx.mongo, job.id)
    if current is not None and current.run_id == run_id and current.state in ACTIVE_JOB_STATES:
        # Taken over, not replaced (this process stalled past its lease): the
        # new holder resumes this very run from its staged tasks; keep them.
        log.info("upload %s: run %s taken over by %s", upload_id, run_id, current.owner)
        return
    log.info("upload %s: run %s replaced or ended, discarding it", upload_id, run_id)
    discard(ctx, paths)


def _clean_up(job: ContentJob, ctx: JobContext, paths: RunPaths) -> None:
    """After the commit: drop what the run replaced (old files, frames, staging)."""
    remove_replaced(paths)
    ctx.mongo.runs.cleanup_after_commit(job.id, job.params.upload_id, job.run_id)
    ctx.mongo.jobs.end_job(job.id, job.run_id, JobState.DONE)
    if ctx.on_progress:
        ctx.on_progress(1.0)
