"""request_type 2: annotate an upload's existing tasks from their kept frames.

Frames come from the kept JPEGs, or from the task clip when frames were not
kept. Loading runs in a thread ahead of inference (a bounded queue), and
boxes are written a batch at a time, so the model does not wait on I/O.
Re-running version n replaces only that version's boxes; user boxes and
frames marked ``isUserAnnotated`` are never touched.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np

import events
from annotation.registry import get_registry
from exceptions import ContentError
from job_states import completed_upload, started_upload
from job_types import ContentJob
from jobs import watchdog
from jobs.context import Heartbeat, JobContext
from jobs.documents import box_documents
from jobs.timings import RunClock
from jobs.tracks import track_upload
from naming import auto_box_source
from processors.readers import task_images
from processors.threads import context_thread, put_unless_stopped

PREFETCH_FRAMES = 32
_END = object()


def annotate_existing(job: ContentJob, ctx: JobContext) -> None:
    upload_id, version, mongo = job.params.upload_id, job.params.auto_anno_version, ctx.mongo
    clock = RunClock(job)
    mongo.uploads.update_upload(upload_id, **started_upload("annotating"))
    watchdog.progressed("annotating (loading the model)")
    detector = get_registry(ctx.config.annotation).detector(version)
    tasks = mongo.frames.tasks_of(upload_id)
    watchdog.progressed("annotating")
    total = sum(task.get("frameCount", 0) for task in tasks) or 1
    heartbeat, done = Heartbeat(job, ctx), 0
    for task in tasks:
        frames = mongo.frames.frames_of(task["_id"])
        for batch, images in _batches(task, frames, ctx.config.annotation.batch_size):
            found = detector.detect(images)
            mongo.frames.write_auto_boxes(
                [(doc, box_documents(boxes, version)) for doc, boxes in zip(batch, found)],
                auto_box_source(version))
            done += len(batch)
            heartbeat.beat(done / total)
        mongo.frames.set_annotation_version(task["_id"], version)
    heartbeat.beat(1.0, force=True)
    tracks, timings = track_upload(job, ctx, tasks, {
        **clock.timings("annotating", done), "framesAnnotated": done})
    fields = completed_upload(timings, tracks=tracks)
    mongo.runs.complete_run(
        job.id, job.run_id, upload_id, fields,
        [events.annotation_completed(upload_id, version, len(tasks))])


def _batches(task: dict, frames: list[dict],
             size: int) -> Iterator[tuple[list, list[np.ndarray]]]:
    """(frame documents, RGB images) in batches; images are loaded in a thread ahead."""
    loaded: queue.Queue = queue.Queue(PREFETCH_FRAMES)
    stop = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            for image in task_images(task["taskName"], [f.get("imagePath") for f in frames],
                                     task["videoPath"]):
                if not put_unless_stopped(loaded, image, stop):
                    return
        except BaseException as exc:  # handed to the consuming thread
            errors.append(exc)
        put_unless_stopped(loaded, _END, stop)

    loader = context_thread(load, name="frame-loader", daemon=True)
    loader.start()
    try:
        for start in range(0, len(frames), size):
            batch = frames[start:start + size]
            images = []
            while len(images) < len(batch) and (image := loaded.get()) is not _END:
                images.append(image)
            if errors:
                raise errors[0]
            if len(images) < len(batch):
                raise ContentError(f"{task['taskName']}: fewer frames than its {len(frames)} "
                                   "frame documents", code="frames_missing")
            yield batch, images
    finally:
        stop.set()
