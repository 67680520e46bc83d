"""Cut a long video in time segments that different workers process at once.

A processContent run whose video is longer than ``2 x processing.segment_seconds``
is planned (``processors.segment_plan``: a demux-only scan) and fanned out into
one ``contentSegment`` job per segment, each with the run's id. The parent
job waits (state ``waiting``) while the segments stage their tasks by global
task number into the run's staging folders, exactly as a single pass would.
Each segment publishes the run's tasks that are ready as it stages its own
(``jobs/publish.py``: in number order, whichever segment cut them).
The segment that finishes last claims the parent and commits the run as one;
if it dies doing so, the parent's lease runs out and any worker finishes the
commit. A failed segment fails the upload; a segment whose decoded frames do
not match the plan (``SegmentMismatch``) sends the upload back to a single
pass, which keeps the tasks the other segments already staged.
"""
from __future__ import annotations

import logging
import os
import time

from exceptions import JobCancelled
from job_states import JobKind, JobState
from job_types import ContentJob, ContentParams, Job, SegmentJob, SegmentParams
from jobs import watchdog
from jobs.claims import read_job
from jobs.context import Heartbeat, JobContext
from jobs.failure import run_guarded
from jobs.publish import Publisher, publisher_for
from jobs.staging import commit_tasks, discard, fail_upload, input_limits, run_paths, stage_pipeline
from jobs.timings import RunClock
from mongo_manager import MongoManager
from processes import owner_pid_here
from processors.readers import VIDEO, video_duration
from processors.segment_plan import Segment, open_segment, plan_segments
from processors.segment_source import SegmentMismatch
from storage.contents import RunPaths

log = logging.getLogger(__name__)

KIND = JobKind.SEGMENT
FIRST_TASK_WAIT = 60.0  # seconds
CLAIM_WAIT = 5.0  # seconds the first segment may take to be claimed
# What one segment's cutting keeps busy (decoder threads, x264's, the JPEGs'):
# with fewer cores than this per running segment, the first one waits for no one.
CORES_PER_SEGMENT = 2


def fan_out(job: ContentJob, ctx: JobContext) -> bool:
    """Queue the segments of a long video's run; False: cut it in one pass."""
    params = job.params
    seconds = ctx.config.processing.segment_seconds
    if not seconds or params.content_type != VIDEO or job.single_pass:
        return False
    limits = input_limits(ctx.config)
    count = int(video_duration(params.content_path, limits) // seconds)
    if count < 2:
        return False
    plan = plan_segments(params.content_path, params.frame_rate, params.frames_per_task, count,
                         limits)
    if len(plan) < 2:  # too few tasks, or the scan cannot promise the single pass's frames
        if plan[0].reason:
            log.info("upload %s: cut in one pass: %s", params.upload_id, plan[0].reason)
        return False
    children = [(f"{job.id}#{segment.number}",
                 SegmentParams(**vars(params), parent=job.id, segments=len(plan),
                               total_tasks=plan[-1].last_task, segment=segment.to_dict()).to_doc())
                for segment in plan]
    if not ctx.mongo.segments.fan_out(job.id, job.run_id, ctx.owner, KIND, children):
        raise JobCancelled("the run was replaced before its segments were queued")
    ctx.mongo.uploads.update_upload(params.upload_id, taskCount=plan[-1].last_task)
    log.info("upload %s: %d segments queued", params.upload_id, len(plan))
    for child_id, _ in children:
        ctx.notify(child_id)
    return True


def run_segment_job(job: SegmentJob, ctx: JobContext) -> ContentJob | None:
    """Cut one segment; returns the parent job when this was the last segment
    and this process claimed the parent's commit (the runner runs it next)."""
    paths = run_paths(ctx.config, job)
    upload_id, run_id = job.params.upload_id, job.run_id
    if not run_guarded(lambda: _cut_segment(job, ctx, paths), config=ctx.config,
                       doing="processing",
                       fail=lambda error: fail_segment_job(job, ctx, error),
                       cancelled=lambda: _stopped(job, ctx, paths),
                       ended=lambda: not ctx.mongo.runs.run_is_current(upload_id, run_id)):
        return None
    ctx.mongo.jobs.end_job(job.id, run_id, JobState.DONE)
    return _claim_parent_if_last(job, ctx)


def fail_segment_job(job: SegmentJob, ctx: JobContext, error: dict) -> None:
    """A segment that cannot be cut fails its upload (and so its sibling segments)."""
    parent = _parent(job, ctx.mongo)
    if parent is not None and parent.run_id == job.run_id:
        fail_upload(parent, ctx, run_paths(ctx.config, parent), error)
    ctx.mongo.jobs.end_job(job.id, job.run_id, JobState.FAILED, error)


def _parent(job: SegmentJob, mongo: MongoManager) -> ContentJob | None:
    """The segment's parent (its upload's job) as it is now; None if it is gone."""
    return read_job(mongo, job.params.parent)


def _cut_segment(job: SegmentJob, ctx: JobContext, paths: RunPaths) -> bool:
    """Stage the segment's tasks; False when its frames did not match the plan
    (the upload then goes back to a single pass)."""
    params, run_id, mongo = job.params, job.run_id, ctx.mongo
    # A stale segment of an old run:
    if not mongo.segments.parent_waiting(params.parent, run_id):
        raise JobCancelled("the upload's run is no longer cut in segments")
    segment = Segment.from_dict(params.segment)
    heartbeat = Heartbeat(job, ctx, lambda _: _record_progress(job, ctx))
    publisher = _publisher(params.parent, params, run_id, paths, ctx)
    if publisher is not None and segment.number > 1:
        _first_task_first(job, ctx, heartbeat)
    watchdog.progressed(f"cutting segment {segment.number} (opening the video)")
    try:
        source = open_segment(params.content_path, segment, input_limits(ctx.config))
        watchdog.progressed(f"cutting segment {segment.number}")
        stage_pipeline(job, ctx, paths, source, heartbeat, segment.first_sample, publisher)
    except SegmentMismatch as exc:
        log.warning("upload %s: %s; cutting it in one pass", params.upload_id, exc)
        if mongo.segments.requeue_single_pass(params.parent, run_id):
            ctx.notify(params.parent)
        return False
    return True


def _first_task_first(job: SegmentJob, ctx: JobContext, heartbeat: Heartbeat) -> None:
    """A later segment of a progressive run waits for the run's first task while
    the first segment is being cut on this machine and the machine has no core
    to spare: the first segment then has every core, and people get the first
    task about twice as soon, for a few seconds more on the whole run
    (BENCHMARKS.md, "Progressive results"). At most FIRST_TASK_WAIT seconds."""
    params, mongo = job.params, ctx.mongo
    started = time.monotonic()
    watchdog.progressed("waiting for the first task")
    while time.monotonic() - started < FIRST_TASK_WAIT \
            and not mongo.uploads.ready_task_count(params.upload_id):
        first = read_job(mongo, f"{params.parent}#1")
        if first is not None and first.state == JobState.QUEUED:  # about to be claimed elsewhere
            if time.monotonic() - started > CLAIM_WAIT:
                return
        elif first is None or first.state != JobState.RUNNING \
                or owner_pid_here(first.owner) is None \
                or _spare_cores(mongo, params.parent, job.run_id):
            return
        heartbeat.beat(0.0)  # keeps the lease; stops a replaced run
        time.sleep(0.1)


def _spare_cores(mongo: MongoManager, parent: str, run_id: str) -> bool:
    here = [owner for owner in mongo.segments.segment_owners(parent, run_id)
            if owner_pid_here(owner) is not None]
    return (os.cpu_count() or 1) >= CORES_PER_SEGMENT * len(here)


def _stopped(job: SegmentJob, ctx: JobContext, paths: RunPaths) -> None:
    params, run_id, mongo = job.params, job.run_id, ctx.mongo
    if mongo.segments.parent_waiting(params.parent, run_id):
        return  # merely taken over: the new holder goes on
    log.info("upload %s: segment %s stopped: its run ended", params.upload_id, job.id)
    mongo.jobs.end_job(job.id, run_id, JobState.CANCELLED)
    parent = _parent(job, mongo)
    # Replaced (force_write), or failed: the failure's discard may have run
    # before this segment made its staging folders. Sent back to a single
    # pass (same run, still active): its staged tasks are kept.
    if parent is None or parent.run_id != run_id or parent.state == JobState.FAILED:
        discard(ctx, paths)


def _record_progress(job: SegmentJob, ctx: JobContext) -> None:
    """The upload's progress: staged tasks of all segments. Stops a segment whose
    run was replaced (force_write), failed or sent back to a single pass."""
    params, mongo = job.params, ctx.mongo
    if not mongo.segments.parent_waiting(params.parent, job.run_id):
        raise JobCancelled("the upload's run is no longer cut in segments")
    staged = mongo.runs.count_staged(params.upload_id, job.run_id)
    mongo.uploads.update_upload(params.upload_id,
                                progress=min(99, 100 * staged // max(1, params.total_tasks)))


def _claim_parent_if_last(job: SegmentJob, ctx: JobContext) -> ContentJob | None:
    params, mongo = job.params, ctx.mongo
    if mongo.segments.count_done_segments(params.parent, job.run_id) < params.segments:
        return None
    watchdog.progressed("committing the segments")
    # Two segments ending at once: one of them claims the commit.
    parent = mongo.segments.claim_for_commit(params.parent, job.run_id, ctx.owner,
                                             ctx.config.processing.lease_seconds)
    return Job.from_doc(parent) if parent is not None else None


def commit_segments(job: ContentJob, ctx: JobContext, paths: RunPaths) -> bool:
    """The parent's part: commit once every segment is done (False: not yet)."""
    params, run_id, mongo = job.params, job.run_id, ctx.mongo
    if mongo.segments.count_done_segments(job.id, run_id) < (job.segments or 0):
        mongo.segments.wait_for_segments(job.id, run_id, ctx.owner)  # a retry came too early
        return False
    staged = mongo.runs.staged_tasks(params.upload_id, run_id)  # all: commit_tasks checks
    # The run's clock started when its fan-out began cutting (the upload's startedAt).
    clock = RunClock(job, (mongo.uploads.get_upload(params.upload_id) or {}).get("startedAt"))
    frames = sum(doc["task"]["frameCount"] for doc in staged)
    commit_tasks(job, ctx, paths, len(staged),
                 clock.timings("cutting", frames, segments=job.segments or 0),
                 _publisher(job.id, params, run_id, paths, ctx))
    return True


def _publisher(job_id: str, params: ContentParams, run_id: str, paths: RunPaths,
               ctx: JobContext) -> Publisher | None:
    """The run's publisher when it is progressive (``job_id``: the upload's job)."""
    parent = read_job(ctx.mongo, job_id)
    progressive = parent is not None and parent.progressive
    return publisher_for(job_id, params, run_id, paths, ctx) if progressive else None
