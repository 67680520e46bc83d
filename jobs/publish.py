"""Progressive results: a new upload's tasks become visible one by one, in
task-number order, while the rest of its video is still being cut.

A run of an upload with no tasks yet is *progressive* (decided once, when the
run starts cutting, and kept on its job). Each time a task is staged, by the
single pass or by any segment, the staged tasks that follow the published
ones without a gap are published: their clip and JPEGs moved into place,
their boxes' track ids written, then, in one transaction, their
AnnotationTask documents inserted, ``readyTaskCount`` raised and one
``upload.task_ready`` event per task recorded (``mongo.runs.publish_tasks``).
The last publication also commits the run (status 1, ``upload.completed``).

Published tasks are final. Track ids are computed online
(``annotation.tracking.OnlineTracks``) and a task waits until the tracker has
seen ``horizon`` frames past its end, after which its ids can no longer
change; replaying the same boxes in the same order gives the same ids, so a
process that resumes a run after a kill -9, or that publishes after another
one did, gets exactly the ids already published. A run that is not
progressive (its upload has tasks: force_write=1, or a retry after a failure
that published some) keeps the one-step swap of ``jobs/staging.commit_tasks``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import events
from annotation.tracking import FinalFrame, OnlineTracks
from job_types import ContentJob, ContentParams
from jobs import watchdog
from jobs.context import JobContext
from jobs.shots import ShotPlan, cut_frames
from jobs.task_order import chained, label
from jobs.timings import with_stage
from jobs.tracks import own_boxes, track_input, tracker_settings, with_tracks
from naming import auto_box_source
from processors.readers import VIDEO
from storage.contents import RunPaths, publish_task_files, remove_staging

log = logging.getLogger(__name__)

PUBLISH_SECONDS = 0.5


def decide_and_record_progressive(job: ContentJob, ctx: JobContext) -> bool:
    """Whether this run publishes its tasks as they are cut. Decided the first
    time and recorded on the job (so a resumed run decides the same); a
    progressive run also sets its upload's ``readyTaskCount`` to 0 then."""
    if job.progressive is not None:
        return job.progressive
    upload_id = job.params.upload_id
    progressive = ctx.mongo.frames.count_tasks(upload_id) == 0
    if progressive:
        ctx.mongo.uploads.update_upload(upload_id, readyTaskCount=0)
    ctx.mongo.jobs.set_job_fields(job.id, job.run_id, progressive=progressive)
    return progressive


_cached: dict[str, "Publisher"] = {}


def publisher_for(job_id: str, params: ContentParams, run_id: str, paths: RunPaths,
                  ctx: JobContext) -> "Publisher":
    """This process's publisher of the run: kept from one segment job to the
    next of the same run, so its tracker goes on rather than replaying."""
    publisher = _cached.get(run_id)
    if publisher is None:
        _cached.clear()  # one run at a time per process
        publisher = _cached[run_id] = Publisher(job_id, params, run_id, paths, ctx)
    publisher.ctx = ctx
    return publisher


class Publisher:
    """Publishes one run's staged tasks as soon as they are final.

    ``job_id``: the upload's job (a segment passes its parent's), which fences
    each publication on the run.
    """

    def __init__(self, job_id: str, params: ContentParams, run_id: str, paths: RunPaths,
                 ctx: JobContext) -> None:
        self.job_id, self.params, self.run_id, self.paths, self.ctx = (
            job_id, params, run_id, paths, ctx)
        self.upload_id = params.upload_id
        settings = tracker_settings(params, ctx)
        self.tracks = (OnlineTracks(params.frame_rate, settings)
                       if settings is not None else None)
        self.source = auto_box_source(params.auto_anno_version)
        self.fed = 0  # tasks given to the tracker
        self.shot_plan = ShotPlan()  # of the tasks up to the last publication
        # frames pushed, not final yet (push order), with their own boxes
        self.waiting: list[tuple[dict, list[dict]]] = []
        self.final: dict = {}  # frame id -> its boxes with track ids, once final
        self.final_frames = 0
        self.seconds = 0.0  # spent tracking
        self.published_at: float | None = None  # the last advance once a task is out

    def due(self) -> bool:
        """Time to publish again: the first task at once, then at most every
        PUBLISH_SECONDS (short tasks are published in batches: each publication
        is a transaction, ~35 ms, which the cutting waits for)."""
        return self.published_at is None or \
            time.monotonic() - self.published_at >= PUBLISH_SECONDS

    def advance(self) -> int:
        """Publish what can be; returns the number of tasks visible now."""
        staged = self._staged()
        ready = self._ready()
        if self.tracks is not None:
            self._track(staged, finish=False)
            self._forget({doc["_id"] for doc in staged[:ready]})  # published by another
        count = self._publishable(staged)
        if count > ready:
            self._publish(staged, ready, count, {}, [])
        visible = max(ready, count)
        self.published_at = time.monotonic() if visible else None
        return visible

    def finish(self, fields: dict, task_count: int) -> bool:
        """Publish the remaining tasks and commit the run (``fields``: the
        upload's final state). False when the run was replaced."""
        staged = self._staged()
        if len(staged) != task_count:
            raise RuntimeError(f"the run staged {len(staged)} tasks in order of {task_count}")
        if self.tracks is not None:
            self._track(staged, finish=True)
            # The tracking this process did for the run (each segment's process
            # tracks what it publishes; a single pass does it all).
            fields = {**fields, "tracks": self.tracks.counts(),
                      "timings": with_stage(fields["timings"], "tracking", self.seconds)}
        ready = self._ready()
        done = self._publish(staged, ready, task_count, {**fields, "taskCount": task_count},
                             [events.completed(self.upload_id, task_count)], final=True)
        if done:
            remove_staging(self.paths)
        return done

    def _staged(self) -> list[dict]:
        """The staged tasks that follow the first without a gap (jobs/task_order.py)."""
        return chained(self.ctx.mongo.runs.staged_tasks(self.upload_id, self.run_id))

    def _ready(self) -> int:
        return self.ctx.mongo.uploads.ready_task_count(self.upload_id)

    def _publishable(self, staged: list[dict]) -> int:
        """How many of ``staged`` are final (their frames' track ids are)."""
        if self.tracks is None:
            return len(staged)
        frames, count = 0, 0
        for doc in staged:
            frames += doc["task"]["frameCount"]
            if frames > self.final_frames:
                break
            count += 1
        return count

    def _publish(self, staged: list[dict], ready: int, count: int, fields: dict,
                 extra: list, final: bool = False) -> bool:
        chosen = staged[ready:count]
        if self.params.content_type == VIDEO:  # the shots each holds, final already
            for doc in staged[len(self.shot_plan.per_task):count]:
                self.shot_plan.add(doc)
            chosen = [{**doc, "task": {**doc["task"], "shots": shots}}
                      for doc, shots in zip(chosen, self.shot_plan.per_task[ready:count])]
        watchdog.progressed(f"publishing tasks {ready + 1}-{count}")
        for doc in chosen:
            publish_task_files(self.paths, Path(doc["task"]["videoPath"]).name, label(doc))
        self._write_tracks(chosen)
        task_events = [events.task_ready(self.upload_id, number, doc["task"])
                       for number, doc in enumerate(chosen, ready + 1)]
        done = self.ctx.mongo.runs.publish_tasks(self.job_id, self.run_id, self.upload_id, ready,
                                                 chosen, fields, task_events + extra, final)
        if done and chosen:
            log.info("upload %s: tasks %d-%d published", self.upload_id, ready + 1, count)
        return done

    def _track(self, staged: list[dict], finish: bool) -> None:
        """Give the tracker the frames of the newly staged tasks, in order."""
        started = time.monotonic()
        new = staged[self.fed:]
        if new:
            watchdog.progressed("tracking")
            frames = self.ctx.mongo.frames.boxes_of([doc["_id"] for doc in new])
            cuts = cut_frames(new)  # tracks end at them
            self.fed = len(staged)
            for frame in frames:
                own = own_boxes(frame, self.source)
                self.waiting.append((frame, own))
                self._keep(self.tracks.push(track_input(own),
                                            frame.get("sourceFrame") in cuts))
        if finish:
            self._keep(self.tracks.finish())
        self.seconds += time.monotonic() - started

    def _keep(self, finals: list[FinalFrame]) -> None:
        for result in finals:
            frame, own = self.waiting.pop(0)
            self.final_frames += 1
            # (task id, the frame's new boxes, or None when unchanged)
            self.final[frame["_id"]] = (frame["taskId"], with_tracks(
                frame, own, result.ids, result.filled, self.source))

    def _write_tracks(self, chosen: list[dict]) -> None:
        if self.tracks is None or not chosen:
            return
        task_ids = {doc["_id"] for doc in chosen}
        updates = [(frame_id, boxes) for frame_id, (task_id, boxes) in self.final.items()
                   if task_id in task_ids and boxes is not None]
        self.ctx.mongo.frames.set_boxes(updates)
        self._forget(task_ids)

    def _forget(self, task_ids: set) -> None:
        for frame_id in [f for f, (task_id, _) in self.final.items() if task_id in task_ids]:
            del self.final[frame_id]
