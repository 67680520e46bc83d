"""The review page of an upload, read from its documents: the API's
``GET /api/processContent/<id>/review`` and ``app.py process --review``.

Only the auto boxes (``source: "auto:v<n>"``) are shown: the page is for
looking at a model version's pre-labels before annotators get them.
"""
from __future__ import annotations

from exceptions import NotFound
from intake.status import STATUS_TEXT
from mongo_manager import MongoManager
from processors.review_model import Limits, ReviewBox, ReviewFrame, ReviewTask, ReviewUpload


def review_page(mongo: MongoManager, upload_id: str, limits: Limits = Limits()) -> str:
    """The page's HTML; NotFound (404) for an unknown upload."""
    upload = mongo.uploads.get_upload(upload_id)
    if upload is None:
        raise NotFound(f"no upload {upload_id}", code="upload_not_found")
    # Imported here: drawing loads matplotlib and supervision (~80 MiB), which
    # a web worker or a CLI run that draws no page should not carry.
    from processors.review_page import render

    tasks = [_task(mongo, number, task)
             for number, task in enumerate(mongo.frames.tasks_of(upload_id), start=1)]
    return render(ReviewUpload(
        upload_id=str(upload["_id"]),
        status=STATUS_TEXT.get(upload.get("status"), "unknown"),
        tasks=tasks, timings=upload.get("timings"), tracks=upload.get("tracks"),
        # Each shot after the first starts at a cut: drawn on the track timeline.
        shots=[float(s["startTime"]) for s in (upload.get("shots") or [])[1:]]), limits)


def _task(mongo: MongoManager, number: int, task: dict) -> ReviewTask:
    frames = [ReviewFrame(frame_id=int(f.get("frameId", i)),
                          timestamp=float(f.get("timestamp") or 0.0),
                          image_path=f.get("imagePath"),
                          boxes=tuple(_box(b) for b in f.get("boxes") or []
                                      if str(b.get("source", "")).startswith("auto:")))
              for i, f in enumerate(mongo.frames.frames_of(task["_id"]))]
    return ReviewTask(number=number, name=str(task.get("taskName", f"task-{number}")),
                      clip=task.get("videoPath"), frames=frames)


def _box(box: dict) -> ReviewBox:
    track = box.get("trackId")
    return ReviewBox(label=str(box.get("label", "")), x=float(box.get("x", 0)),
                     y=float(box.get("y", 0)), w=float(box.get("w", 0)),
                     h=float(box.get("h", 0)),
                     track_id=track if isinstance(track, int) else None,
                     confidence=box.get("confidence"))
