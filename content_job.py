"""Run one processContent job: pipeline -> staged tasks -> atomic commit.

A run writes its clips and JPEGs into staging folders and its tasks into
AnnotationTaskStaging. Only when every task is done are the staging folders
renamed into place and, in one transaction, the upload's tasks swapped and
its status set to 1, so status 1 always means the files are there. A reader
never sees old and new tasks mixed, a failed run leaves nothing behind, and
a run killed mid-way resumes from its staged tasks.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import job_watchdog
import segment_jobs
from annotate_job import annotate_existing
from annotation.registry import get_registry
from box_documents import box_documents
from config import Config
from exceptions import JobCancelled, ServiceError
from job_context import Heartbeat, JobContext
from job_states import JobState
from job_timings import RunClock
from mongo_manager import DatabaseError, DocumentId, now, object_id_from, to_id
from processors.clip_writer import EncoderSettings
from processors.image_source import ImageSource
from processors.input_guard import MIB, InputLimits, redact
from processors.pipeline import OutputLayout, PipelineSettings, Progress, TaskOutput, run_pipeline
from processors.source import Source, SourceInfo
from processors.video_source import VideoSource

log = logging.getLogger(__name__)

KIND = "processContent"


def job_id_for(upload_id: str) -> str:
    return f"{KIND}:{upload_id}"


@dataclass(frozen=True)
class RunPaths:
    """Final and staging folders of one run of one upload."""

    contents: Path
    project_id: str
    upload_id: str
    run_id: str

    @property
    def clips(self) -> Path:
        return self.contents / "tasks" / self.project_id / self.upload_id

    @property
    def frames(self) -> Path:
        return self.contents / "frames" / self.upload_id

    def staging(self, final: Path) -> Path:
        return final.with_name(f".staging-{final.name}-{self.run_id}")

    def trash(self, final: Path) -> Path:
        return final.with_name(f".trash-{final.name}-{self.run_id}")

    def pairs(self) -> list[tuple[Path, Path]]:
        return [(self.staging(self.clips), self.clips), (self.staging(self.frames), self.frames)]


def task_object_id(run_id: str, number: int) -> DocumentId:
    """Deterministic per run and task, so a resumed run finds its own leftovers."""
    return object_id_from(f"{run_id}:{number}")


def run_content_job(job: dict, ctx: JobContext) -> None:
    params, run_id = job["params"], job["runId"]
    paths = RunPaths(ctx.config.contents_dir, params["project_id"], params["upload_id"], run_id)
    if job["state"] == JobState.COMMITTED:  # died after the commit: only the clean-up is left
        _clean_up(job, ctx, paths)
        return
    try:
        if params["request_type"] == 2:
            annotate_existing(job, ctx)
        elif job.get("segments"):  # its segments are cut: the commit is left
            if not segment_jobs.commit_segments(job, ctx, paths):
                return
        elif not _cut(job, ctx, paths):  # a long video: its segments carry on
            return
    except JobCancelled:
        current = ctx.mongo.get_job(job["_id"])
        if current is not None and current["runId"] == run_id:
            # Taken over, not replaced (this process stalled past its lease): the
            # new holder resumes this very run from its staged tasks; keep them.
            log.info("upload %s: run %s taken over by %s", params["upload_id"], run_id,
                     current.get("owner"))
            return
        log.info("upload %s: run %s replaced, discarding it", params["upload_id"], run_id)
        discard(ctx, paths)
        return
    except ServiceError as exc:  # bad content, an unusable model
        _fail(job, ctx, paths, exc.to_dict())
        return
    except DatabaseError:
        raise  # the database is away: the lease runs out and the job is retried
    except Exception as exc:
        log.exception("upload %s failed", params["upload_id"])
        _fail(job, ctx, paths, {"code": "internal_error", "message": f"processing failed: {exc}"})
        return
    _clean_up(job, ctx, paths)


def _cut(job: dict, ctx: JobContext, paths: RunPaths) -> bool:
    """Cut the upload in one pass and commit it; False when segment jobs took it."""
    params, mongo = job["params"], ctx.mongo
    clock = RunClock(job)
    mongo.update_upload(params["upload_id"], status=0, stage="cutting", startedAt=now(),
                        errorMessage=None)
    job_watchdog.progressed("cutting (opening the video)" if params["content_type"] == 1
                            else "cutting (reading the images)")
    if segment_jobs.fan_out(job, ctx):
        return False
    heartbeat = Heartbeat(job, ctx)
    source = open_source(params, input_limits(ctx.config))
    job_watchdog.progressed("cutting")
    done, sampled = stage_pipeline(job, ctx, paths, source, heartbeat)
    heartbeat.beat(1.0, force=True)
    job_watchdog.progressed("committing")
    commit_tasks(job, ctx, paths, len(done), clock.timings("cutting", sampled))
    return True


def stage_pipeline(job: dict, ctx: JobContext, paths: RunPaths, source: Source,
                   heartbeat: Heartbeat, first_sample: int = 0) -> tuple[set[int], int]:
    """Cut ``source`` (a whole video, or one segment of it from ``first_sample``)
    into the run's staging folders, staging each finished task; tasks the run
    staged before are skipped. Returns the staged task numbers and how many
    frames this call sampled. Closes ``source``."""
    params, run_id, mongo = job["params"], job["runId"], ctx.mongo
    done = {doc["number"] for doc in mongo.staged_tasks(params["upload_id"], run_id)}
    sampled = 0
    try:
        layout = OutputLayout(paths.staging(paths.clips),
                              paths.staging(paths.frames) if ctx.config.processing.keep_frames
                              else None, source.info.name)
        for event in run_pipeline(source, pipeline_settings(ctx.config, params), layout,
                                  frozenset(done), first_sample=first_sample):
            if isinstance(event, TaskOutput):
                task, frames = build_task(event, source.info, params, paths, run_id)
                mongo.stage_task(params["upload_id"], run_id, event.number, task, frames)
                done.add(event.number)
                sampled += len(event.frames)
            elif isinstance(event, Progress):
                heartbeat.beat(event.fraction)
    finally:
        source.close()
    return done, sampled


def commit_tasks(job: dict, ctx: JobContext, paths: RunPaths, task_count: int,
                 timings: dict) -> None:
    """Move the run's staged folders into place, then swap its tasks in (status 1)."""
    params, run_id, mongo = job["params"], job["runId"], ctx.mongo
    fields = {"status": 1, "progress": 100, "stage": "done", "taskCount": task_count,
              "finishedAt": now(), "errorMessage": None, "timings": timings}
    if not mongo.renew_lease(job["_id"], run_id, ctx.owner, ctx.config.processing.lease_seconds):
        raise JobCancelled("the run was replaced before its files were moved into place")
    _move_into_place(paths)
    if not mongo.commit_run(job["_id"], params["upload_id"], run_id, fields):
        raise JobCancelled("the run was replaced before it could be committed")


def open_source(params: dict, limits: InputLimits) -> Source:
    if params["content_type"] == 2:
        return ImageSource(params["content_path"], params["frame_rate"], limits)
    return VideoSource(params["content_path"], limits)


def input_limits(config: Config) -> InputLimits:
    """What a job's sources may read: files inside contents_dir, of bounded size."""
    processing = config.processing
    return InputLimits(root=config.contents_dir, max_frame_pixels=processing.max_frame_pixels,
                       max_image_bytes=processing.max_image_mb * MIB,
                       max_zip_bytes=processing.max_zip_mb * MIB,
                       max_zip_ratio=processing.max_zip_ratio)


def pipeline_settings(config: Config, params: dict) -> PipelineSettings:
    processing = config.processing
    annotate = None
    if params["request_type"] == 1:  # annotate the sampled frames while cutting
        annotate = get_registry(config.annotation).detector(params["auto_anno_version"]).detect
    return PipelineSettings(frame_rate=params["frame_rate"],
                            frames_per_task=params["frames_per_task"],
                            keep_frames=processing.keep_frames,
                            jpeg_quality=processing.jpeg_quality,
                            encoder=EncoderSettings(processing.preset, processing.crf),
                            annotate=annotate, annotate_batch=config.annotation.batch_size)


def build_task(out: TaskOutput, info: SourceInfo, params: dict, paths: RunPaths,
               run_id: str) -> tuple[dict, list[dict]]:
    """The AnnotationTask and AnnotationFrame documents of one finished task."""
    task_id = task_object_id(run_id, out.number)
    name = f"task-{out.number}-{info.name}"
    version = params["auto_anno_version"] if params["request_type"] == 1 else 0
    frames = out.frames
    task = {
        "_id": task_id, "projectId": to_id(params["project_id"]),
        "uploadId": to_id(params["upload_id"]), "taskName": name, "videoName": info.name,
        "videoPath": str(paths.clips / out.clip_path.name),
        "frameStart": frames[0].source_index, "frameEnd": frames[-1].source_index,
        "frameStartTime": frames[0].timestamp, "frameCount": len(frames),
        "original_frames": [f.source_index for f in frames], "frameRate": params["frame_rate"],
        "Originalframerate": info.fps, "videoResolutionWidth": info.width,
        "videoResolutionHeight": info.height, "videoDuration": info.duration,
        "taskStatus": 0, "auditStatus": 0, "AutoAnnotationVersion": version,
        "datasetVersions": [], "createdAt": now(),
    }
    frame_docs = []
    for f in frames:
        boxes = box_documents(f.boxes or [], version)
        frame_docs.append({
            "taskId": task_id, "frameId": f.frame_id, "sourceFrame": f.source_index,
            "timestamp": f.timestamp,
            "imagePath": str(paths.frames / f"task-{out.number}" / f.image_path.name)
            if f.image_path else None,
            "boxes": boxes, "isEmpty": not boxes, "isUserAnnotated": False})
    return task, frame_docs


def _move_into_place(paths: RunPaths) -> None:
    """Rename the staging folders to their final names; the old ones go to trash.

    Idempotent, so a run that died half-way through here redoes it safely.
    """
    for staging, final in paths.pairs():
        if not staging.exists():
            continue
        if final.exists():
            final.rename(paths.trash(final))
        staging.rename(final)


def _clean_up(job: dict, ctx: JobContext, paths: RunPaths) -> None:
    """After the commit: drop what the run replaced (old files, frames, staging)."""
    for _, final in paths.pairs():
        for leftover in final.parent.glob(f".trash-{final.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    ctx.mongo.cleanup_after_commit(job["_id"], job["params"]["upload_id"], job["runId"])
    ctx.mongo.end_job(job["_id"], job["runId"], JobState.DONE)
    if ctx.on_progress:
        ctx.on_progress(1.0)


def _fail(job: dict, ctx: JobContext, paths: RunPaths, error: dict) -> None:
    params = job["params"]
    # Messages show paths relative to contents_dir, never the server's own
    # (an unexpected error's text may name a file it failed on).
    error = {**error, "message": redact(str(error.get("message", "")), ctx.config.contents_dir)}
    log.warning("upload %s: %s", params["upload_id"], error["message"])
    discard(ctx, paths)
    if ctx.mongo.end_job(job["_id"], job["runId"], JobState.FAILED, error):
        ctx.mongo.update_upload(params["upload_id"], status=2, stage="error",
                                errorMessage=error, finishedAt=now())


def remove_tree(path: Path, tries: int = 5) -> None:
    """Remove a folder that a pipeline stage may still be writing into (a
    stalled run's other stages go on until its process ends): a file added
    while rmtree runs leaves the folder behind, so it is removed again. Once
    it is gone it stays gone (run_pipeline's stages never make its root)."""
    for _ in range(tries):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
    log.warning("could not remove %s", path.name)


def discard(ctx: JobContext, paths: RunPaths) -> None:
    """Remove a run's partial outputs: staging folders and staged documents."""
    for staging, _ in paths.pairs():
        remove_tree(staging)
    ctx.mongo.discard_run(paths.upload_id, paths.run_id)


def fail_job(job: dict, ctx: JobContext, error: dict[str, Any]) -> None:
    """End a job that cannot be run (e.g. it crashed its worker too often)."""
    params = job["params"]
    paths = RunPaths(ctx.config.contents_dir, params["project_id"], params["upload_id"],
                     job["runId"])
    _fail(job, ctx, paths, error)
