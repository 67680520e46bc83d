"""Track ids for the auto boxes of a video upload, computed over all its sampled
frames in sample order (annotation/tracking.py) and written into its frames.

A new upload's run tracks online as it publishes its tasks (``jobs/publish.py``);
a cutting run (request type 1) that replaces existing tasks tracks here once
all its tasks are staged, just before the commit. Both use the same algorithm
over the same boxes in the same order, so a single pass, segments cut by
several workers and a run resumed after a kill -9 all get the same ids.
Re-annotating (request type 2) tracks the upload's tasks again for that
version. Only the version's own boxes get ids; user boxes keep theirs.
Tracks end at the upload's shot boundaries (jobs/shots.py): the cuts the
staged tasks recorded, or, re-annotating, the shots the upload lists.
"""
from __future__ import annotations

import time

from annotation.registry import get_registry
from annotation.tracking import TrackBox, TrackerSettings, assign_tracks, fill_gaps
from job_states import RequestType
from job_types import ContentJob, ContentParams
from jobs import watchdog
from jobs.context import JobContext
from jobs.shots import cut_frames, shot_starts
from jobs.timings import with_stage
from mongo_manager import new_id
from naming import auto_box_source
from processors.readers import VIDEO  # image sets are not tracked

Tracked = tuple[dict | None, dict]  # tracks per label (None: not tracked), timings


def track_run(job: ContentJob, ctx: JobContext, timings: dict) -> Tracked:
    """Tracks over the staged tasks of a cutting run with auto-annotation: the
    number of tracks per label (None when the run is not tracked), and
    ``timings`` with the tracking stage."""
    params = job.params
    settings = tracker_settings(params, ctx)
    if settings is None:
        return None, timings
    staged = ctx.mongo.runs.staged_tasks(params.upload_id, job.run_id)
    return _track(ctx, [doc["_id"] for doc in staged], params.auto_anno_version,
                  params.frame_rate, settings, timings, cut_frames(staged))


def track_upload(job: ContentJob, ctx: JobContext, tasks: list[dict], timings: dict) -> Tracked:
    """Tracks over an upload's tasks (request type 2, after its boxes were
    replaced), as ``track_run`` returns them."""
    settings = _settings(job.params, ctx)
    if settings is None or not tasks:
        return None, timings
    # The rate the tasks were sampled at (the request carries none).
    cuts = shot_starts(ctx.mongo.uploads.get_upload(job.params.upload_id))
    return _track(ctx, [task["_id"] for task in tasks], job.params.auto_anno_version,
                  tasks[0]["frameRate"], settings, timings, cuts)


def tracker_settings(params: ContentParams, ctx: JobContext) -> TrackerSettings | None:
    """The tracker of a cutting run that auto-annotates a video (None: not tracked)."""
    return _settings(params, ctx) if params.request_type == RequestType.CUT_AND_ANNOTATE \
        else None


def _settings(params: ContentParams, ctx: JobContext) -> TrackerSettings | None:
    if params.content_type != VIDEO:
        return None
    manifest = get_registry(ctx.config.annotation).check(params.auto_anno_version)
    return manifest.tracker if manifest.tracker.enabled else None


def _track(ctx: JobContext, task_ids: list, version: int, frame_rate: float,
           settings: TrackerSettings, timings: dict, cuts: set[int]) -> Tracked:
    started = time.monotonic()
    watchdog.progressed("tracking")
    frames = ctx.mongo.frames.boxes_of(task_ids)
    updates, counts = tracked_boxes(frames, auto_box_source(version), frame_rate, settings,
                                    cuts)
    watchdog.progressed("tracking (writing the track ids)")
    ctx.mongo.frames.set_boxes(updates)
    return counts, with_stage(timings, "tracking", time.monotonic() - started)


def tracked_boxes(frames: list[dict], source: str, frame_rate: float,
                  settings: TrackerSettings,
                  cuts: set[int] = frozenset()) -> tuple[list[tuple], dict[str, int]]:
    """(frame id, its new boxes) for each frame the tracks change, and the number
    of tracks per label; ``frames`` in sample order, ``cuts`` the source frames
    where a shot starts (no track spans one).

    The boxes of ``source`` get their ``trackId``; boxes interpolated into a
    track's short gaps are added (``"interpolated": true``). Boxes an earlier
    attempt interpolated are not tracked and are replaced, so tracking the same
    boxes again gives the same result.
    """
    own = [own_boxes(frame, source) for frame in frames]
    found = [track_input(boxes) for boxes in own]
    ids = assign_tracks(found, frame_rate, settings,
                        [frame.get("sourceFrame") in cuts for frame in frames])
    fills = fill_gaps(found, ids, frame_rate, settings.fill_seconds)
    updates, labels = [], {}
    for frame, boxes, track_ids, filled in zip(frames, own, ids, fills):
        for box, track in zip(boxes, track_ids):
            if track is not None:
                labels.setdefault(box["label"], set()).add(track)
        changed = with_tracks(frame, boxes, track_ids, filled, source)
        if changed is not None:
            updates.append((frame["_id"], changed))
    return updates, {label: len(tracks) for label, tracks in sorted(labels.items())}


def own_boxes(frame: dict, source: str) -> list[dict]:
    """The model's own boxes of a frame (not those interpolated by an earlier attempt)."""
    return [box for box in frame.get("boxes") or []
            if box.get("source") == source and not box.get("interpolated")]


def track_input(boxes: list[dict]) -> list[TrackBox]:
    return [TrackBox(b["label"], b["x"], b["y"], b["w"], b["h"], b.get("confidence", 1.0))
            for b in boxes]


def with_tracks(frame: dict, own: list[dict], track_ids: list, filled: list,
                source: str) -> list[dict] | None:
    """The frame's boxes once tracked: ``own`` (its ``own_boxes``) with their
    ``track_ids``, earlier interpolated boxes replaced by ``filled``; None when
    nothing changes (no boxes of ours, or a frame a person annotated)."""
    stale = any(box.get("interpolated") for box in frame.get("boxes") or [])
    if frame.get("isUserAnnotated") or not (own or filled or stale):
        return None
    tracked = {box["id"]: track for box, track in zip(own, track_ids)}
    kept = [{**box, "trackId": tracked[box["id"]]} if box.get("id") in tracked else box
            for box in frame.get("boxes") or []
            if not (box.get("source") == source and box.get("interpolated"))]
    return kept + [filled_box(box, track, source) for track, box in filled]


def filled_box(box: TrackBox, track: int, source: str) -> dict:
    return {"id": new_id(), "label": box.label, "x": round(box.x, 2), "y": round(box.y, 2),
            "w": round(box.w, 2), "h": round(box.h, 2), "confidence": round(box.score, 4),
            "source": source, "trackId": track, "interpolated": True}
