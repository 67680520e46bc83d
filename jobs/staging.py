"""A processContent run's staging and commit, shared by a single pass and by the
segments of a long video: cut into staging folders, stage each finished task
(a new upload's are published as they are ready: ``jobs/publish.py``), then
commit: publish the last tasks, or move the folders into place and swap the
tasks in as one transaction."""
from __future__ import annotations

import logging

import events
from annotation.registry import get_registry
from config import Config
from events import upload_stream
from exceptions import JobCancelled
from job_states import JobState, RequestType, completed_upload, failed_upload
from job_types import ContentJob, ContentParams
from jobs import watchdog
from jobs.context import Heartbeat, JobContext
from jobs.documents import build_task
from jobs.publish import Publisher
from jobs.shots import shot_plan, task_cuts
from jobs.task_order import check_complete, left_out
from jobs.tracks import track_run
from processors.clip_writer import EncoderSettings
from processors.input_guard import MIB, InputLimits, redact
from processors.pipeline import OutputLayout, PipelineSettings, Progress, TaskOutput, run_pipeline
from processors.readers import VIDEO
from processors.source import Source
from storage.contents import RunPaths, move_into_place, remove_staging

log = logging.getLogger(__name__)


def run_paths(config: Config, job: ContentJob) -> RunPaths:
    """The folders of a processContent (or segment) job's current run."""
    return RunPaths(config.contents_dir, job.params.project_id, job.params.upload_id, job.run_id)


def stage_pipeline(job: ContentJob, ctx: JobContext, paths: RunPaths, source: Source,
                   heartbeat: Heartbeat, first_sample: int = 0,
                   publisher: Publisher | None = None) -> tuple[set[int], int]:
    """Cut ``source`` (a whole video, or one segment of it from ``first_sample``)
    into the run's staging folders, staging each finished task (and publishing
    what can be, for a progressive run); tasks the run staged before are
    skipped. Returns the staged task numbers and how many frames this call
    sampled. Closes ``source``."""
    params, run_id, mongo = job.params, job.run_id, ctx.mongo
    done = {doc["number"] for doc in mongo.runs.staged_tasks(params.upload_id, run_id)}
    sampled = 0
    try:
        layout = FencedLayout(paths.staging(paths.clips),
                              paths.staging(paths.frames) if ctx.config.processing.keep_frames
                              else None, source.info.name)
        for event in run_pipeline(source, pipeline_settings(ctx.config, params), layout,
                                  frozenset(done), first_sample=first_sample):
            if isinstance(event, TaskOutput):
                task, frames = build_task(event, source.info, params, paths, run_id)
                mongo.runs.stage_task(params.upload_id, run_id, event.number, task, frames,
                                      task_cuts(event), {"label": event.label,
                                                         "next": event.next,
                                                         "leftOut": event.left_out,
                                                         "lastSample": event.last_sample})
                if mongo.runs.unstage_if_ended(params.upload_id, run_id, task["_id"]):
                    raise JobCancelled("the run ended while this task was staged")
                done.add(event.number)
                sampled += len(event.frames)
                if publisher is not None and publisher.due():
                    heartbeat.holding()  # only a holder of the run publishes
                    publisher.advance()
            elif isinstance(event, Progress):
                heartbeat.beat(event.fraction)
    finally:
        source.close()
    return done, sampled


class FencedLayout(OutputLayout):
    """A run's staging layout: its folders are made only while the run has not
    stalled, so a stall's discard (the watchdog's thread, while this one goes
    on until the process ends) is never undone by them."""

    def make_roots(self) -> None:
        with watchdog.fenced():
            super().make_roots()


def commit_tasks(job: ContentJob, ctx: JobContext, paths: RunPaths, task_count: int,
                 timings: dict, publisher: Publisher | None = None,
                 source: Source | None = None) -> None:
    """Commit the run (status 1). A progressive run publishes its last tasks
    with it; any other tracks its auto boxes, moves its staged folders into
    place, then swaps its tasks in. ``source``: what the run cut, when it
    was cut in one pass (a plan of segments has no timeline to repair)."""
    params, run_id, mongo = job.params, job.run_id, ctx.mongo
    staged = mongo.runs.staged_tasks(params.upload_id, run_id)
    check_complete(staged)
    shots, task_shots = shot_plan(staged) if params.content_type == VIDEO else (None, [])
    fields = completed_upload(timings, timelineRepairs=timeline_repairs(source, params),
                              shots=shots, stillFramesLeftOut=left_out(staged))
    lease = ctx.config.processing.lease_seconds
    if not mongo.jobs.renew_lease(job.id, run_id, ctx.owner, lease):
        raise JobCancelled("the run was replaced before its files were moved into place")
    if publisher is not None:
        if not publisher.finish(fields, task_count):
            raise JobCancelled("the run was replaced before it could be committed")
        return
    tracks, timings = track_run(job, ctx, timings)
    fields = {**fields, "taskCount": task_count, "readyTaskCount": task_count,
              "timings": timings, "tracks": tracks}
    move_into_place(paths)
    # The new tasks are all ready at once: one upload.task_ready each, as a
    # progressive run sends them, then upload.completed.
    ready = [events.task_ready(params.upload_id, number, doc["task"])
             for number, doc in enumerate(staged, 1)]
    if not mongo.runs.commit_run(job.id, params.upload_id, run_id, fields,
                                 ready + [events.completed(params.upload_id, task_count)],
                                 {doc["number"]: {"shots": shots}
                                  for doc, shots in zip(staged, task_shots)}):
        raise JobCancelled("the run was replaced before it could be committed")


def timeline_repairs(source: Source | None, params: ContentParams) -> list[dict] | None:
    """The upload's ``timelineRepairs``: where a video's timestamps restarted or
    jumped and its frames were moved onto one timeline (processors.timeline);
    None for images."""
    if params.content_type != VIDEO:
        return None
    return [repair.to_document() for repair in getattr(source, "timeline_repairs", ())]


def fail_upload(job: ContentJob, ctx: JobContext, paths: RunPaths, error: dict) -> None:
    """End the upload's run as failed: its partial outputs go, the upload shows
    the error (unless the run was replaced meanwhile)."""
    upload_id = job.params.upload_id
    # Messages show paths relative to contents_dir, never the server's own
    # (an unexpected error's text may name a file it failed on).
    error = {**error, "message": redact(str(error.get("message", "")), ctx.config.contents_dir)}
    log.warning("upload %s: %s", upload_id, error["message"])
    discard(ctx, paths)
    ctx.mongo.jobs.end_run(job.id, job.run_id, JobState.FAILED, error,
                           ("upload", upload_id, failed_upload(error)), upload_stream(upload_id),
                           [events.failed(upload_id, error)])


def discard(ctx: JobContext, paths: RunPaths) -> None:
    """Remove a run's partial outputs: staging folders and staged documents."""
    remove_staging(paths)
    ctx.mongo.runs.discard_run(paths.upload_id, paths.run_id)


def input_limits(config: Config) -> InputLimits:
    """What a job's sources may read: files inside contents_dir, of bounded size."""
    processing = config.processing
    return InputLimits(root=config.contents_dir, max_frame_pixels=processing.max_frame_pixels,
                       max_image_bytes=processing.max_image_mb * MIB,
                       max_zip_bytes=processing.max_zip_mb * MIB,
                       max_zip_ratio=processing.max_zip_ratio)


def pipeline_settings(config: Config, params: ContentParams) -> PipelineSettings:
    processing = config.processing
    video = params.content_type == VIDEO  # shots and still frames: videos only
    annotate = None
    # Annotate the sampled frames while cutting.
    if params.request_type == RequestType.CUT_AND_ANNOTATE:
        annotate = get_registry(config.annotation).detector(params.auto_anno_version).detect
    return PipelineSettings(frame_rate=params.frame_rate,
                            frames_per_task=params.frames_per_task,
                            keep_frames=processing.keep_frames,
                            jpeg_quality=processing.jpeg_quality,
                            encoder=EncoderSettings(processing.preset, processing.crf),
                            annotate=annotate, annotate_batch=config.annotation.batch_size,
                            detect_shots=processing.detect_shots and video,
                            task_split=params.task_split if video else "fixed",
                            min_shot_frames=processing.min_shot_frames,
                            skip_still=bool(params.skip_still) and video)
