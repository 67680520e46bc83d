"""Tasks, frames (real JPEG files) and dataset versions with known boxes."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from bson import ObjectId

from mongo_manager import MongoManager, now

WIDTH, HEIGHT = 64, 48


def box(label: str, x: float, y: float, w: float, h: float, source: str = "user") -> dict:
    return {"id": str(ObjectId()), "label": label, "x": x, "y": y, "w": w, "h": h,
            "confidence": 1.0, "source": source}


def make_task(mongo: MongoManager, contents: Path, upload_id: str, number: int,
              frames: Sequence[Sequence[dict]], project_id: str = "p1", audit: int = 1,
              video_name: str = "clip", first_source: int = 0) -> ObjectId:
    """A task whose frame k (1-based) holds ``frames[k-1]``'s boxes, and its JPEGs."""
    task_id = ObjectId()
    name = f"task-{number}-{video_name}"
    folder = contents / "frames" / upload_id / f"task-{number}"
    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for k, boxes in enumerate(frames, start=1):
        image = np.full((HEIGHT, WIDTH, 3), (number * 37 + k * 11) % 256, np.uint8)
        path = folder / f"{k}.jpg"
        path.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
        source = first_source + (k - 1) * 6
        docs.append({"taskId": task_id, "frameId": k, "sourceFrame": source,
                     "timestamp": source / 30, "imagePath": str(path), "boxes": list(boxes),
                     "isEmpty": not boxes, "isUserAnnotated": bool(boxes)})
    if docs:
        mongo.collections.frames.insert_many(docs)
    mongo.collections.tasks.insert_one({
        "_id": task_id, "projectId": project_id, "uploadId": upload_id, "taskName": name,
        "videoName": video_name, "frameStart": first_source,
        "frameEnd": first_source + 6 * max(0, len(frames) - 1), "frameCount": len(frames),
        "videoResolutionWidth": WIDTH, "videoResolutionHeight": HEIGHT, "taskStatus": 2,
        "auditStatus": audit, "AutoAnnotationVersion": 0, "datasetVersions": [],
        "createdAt": now()})
    return task_id


def make_tasks(mongo: MongoManager, contents: Path, upload_id: str, count: int,
               frames_per_task: int = 10, **kwargs) -> list[ObjectId]:
    """``count`` tasks of plain frames, one person box on each."""
    return [make_task(mongo, contents, upload_id, n,
                      [[box("person", 4, 4, 20, 16)]] * frames_per_task,
                      first_source=(n - 1) * 6 * frames_per_task, **kwargs)
            for n in range(1, count + 1)]


def make_version(mongo: MongoManager, **fields) -> str:
    doc = {"versionNo": 1, "name": "v1", "projectIds": ["p1"], "labels": ["person", "car"],
           "splitCount": [{"type": "train", "percentage": 70},
                          {"type": "val", "percentage": 20},
                          {"type": "test", "percentage": 10}],
           "exportFormats": ["YOLO", "COCO"], "createdAt": now(), **fields}
    return str(mongo.collections.versions.insert_one(doc).inserted_id)
