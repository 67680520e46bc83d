"""request_type 2: annotate an upload's existing tasks from their kept frames.

Frames come from the kept JPEGs, or from the task clip when frames were not
kept. Loading runs in a thread ahead of inference (a bounded queue), and
boxes are written a batch at a time, so the model does not wait on I/O.
Re-running version n replaces only that version's boxes; user boxes and
frames marked ``isUserAnnotated`` are never touched.
"""
from __future__ import annotations

import contextvars
import queue
import threading
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

import job_watchdog
from annotation.registry import get_registry
from box_documents import box_documents
from exceptions import ContentError
from job_context import Heartbeat, JobContext
from job_timings import RunClock
from mongo_manager import now

PREFETCH_FRAMES = 32
_END = object()


def annotate_existing(job: dict, ctx: JobContext) -> None:
    params, mongo = job["params"], ctx.mongo
    version = params["auto_anno_version"]
    clock = RunClock(job)
    mongo.update_upload(params["upload_id"], status=0, stage="annotating", startedAt=now(),
                        errorMessage=None)
    job_watchdog.progressed("annotating (loading the model)")
    detector = get_registry(ctx.config.annotation).detector(version)
    tasks = mongo.tasks_of(params["upload_id"])
    job_watchdog.progressed("annotating")
    total = sum(task.get("frameCount", 0) for task in tasks) or 1
    heartbeat, done = Heartbeat(job, ctx), 0
    for task in tasks:
        frames = mongo.frames_of(task["_id"])
        for batch, images in _batches(task, frames, ctx.config.annotation.batch_size):
            found = detector.detect(images)
            mongo.write_auto_boxes([(doc, box_documents(boxes, version))
                                    for doc, boxes in zip(batch, found)], f"auto:v{version}")
            done += len(batch)
            heartbeat.beat(done / total)
        mongo.set_annotation_version(task["_id"], version)
    heartbeat.beat(1.0, force=True)
    fields = {"status": 1, "progress": 100, "stage": "done", "finishedAt": now(),
              "errorMessage": None,
              "timings": {**clock.timings("annotating", done), "framesAnnotated": done}}
    mongo.complete_run(job["_id"], job["runId"], params["upload_id"], fields)


def _batches(task: dict, frames: list[dict], size: int) -> Iterator[tuple[list, list]]:
    """(frame documents, RGB images) in batches; images are loaded in a thread ahead."""
    loaded: queue.Queue = queue.Queue(PREFETCH_FRAMES)
    stop = threading.Event()
    errors: list[BaseException] = []

    def offer(item: object) -> bool:
        """Put ``item`` unless the consumer has gone (stop set)."""
        while not stop.is_set():
            try:
                loaded.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def load() -> None:
        try:
            for image in _images(task, frames):
                if not offer(image):
                    return
        except BaseException as exc:  # handed to the consuming thread
            errors.append(exc)
        offer(_END)

    # In a copy of this context, so that what it logs carries the upload id.
    loader = threading.Thread(target=contextvars.copy_context().run, args=(load,),
                              name="frame-loader", daemon=True)
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


def _images(task: dict, frames: list[dict]) -> Iterator[np.ndarray]:
    paths = [Path(f["imagePath"]) if f.get("imagePath") else None for f in frames]
    if paths and all(p is not None and p.is_file() for p in paths):
        for path in paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ContentError(f"{path}: frame image cannot be read", code="bad_image")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    clip = Path(task["videoPath"])  # frames were not kept: decode the task clip
    if not clip.is_file():
        raise ContentError(f"{task['taskName']}: neither frame images nor the clip "
                           f"{clip.name} exist", code="missing_file")
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
