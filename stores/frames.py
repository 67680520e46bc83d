"""The published tasks (AnnotationTask) and their frames' boxes (AnnotationFrame)."""
from __future__ import annotations

from typing import Any

import pymongo
from bson import ObjectId

from stores.common import Store, idempotent, to_id


class FrameStore(Store):
    """The published tasks and the boxes of their frames."""

    def tasks_of(self, upload_id: Any) -> list[dict]:
        return list(self.c.tasks.find({"uploadId": to_id(upload_id)}).sort("frameStart", 1))

    def count_tasks(self, upload_id: Any) -> int:
        return self.c.tasks.count_documents({"uploadId": to_id(upload_id)})

    def set_annotation_version(self, task_id: ObjectId, version: int) -> None:
        self.c.tasks.update_one({"_id": task_id}, {"$set": {"AutoAnnotationVersion": version}})

    def frames_of(self, task_id: ObjectId) -> list[dict]:
        return list(self.c.frames.find({"taskId": task_id}).sort("frameId", 1))

    def boxes_of(self, task_ids: list) -> list[dict]:
        """The frames of ``task_ids`` (their boxes only), tasks in that order, in
        one query."""
        order = {task_id: i for i, task_id in enumerate(task_ids)}
        frames = self.c.frames.find({"taskId": {"$in": list(task_ids)}},
                                    {"taskId": 1, "frameId": 1, "sourceFrame": 1, "boxes": 1,
                                     "isUserAnnotated": 1})
        return sorted(frames, key=lambda f: (order[f["taskId"]], f["frameId"]))

    @idempotent
    def write_auto_boxes(self, updates: list[tuple[dict, list[dict]]], source: str) -> None:
        """Replace ``source``'s boxes on each frame; user boxes stay, and frames a
        person marked ``isUserAnnotated`` are not touched at all."""
        ops = []
        for frame, new in updates:
            if frame.get("isUserAnnotated"):
                continue
            kept = [b for b in frame.get("boxes") or [] if b.get("source") != source]
            ops.append(pymongo.UpdateOne(
                {"_id": frame["_id"], "isUserAnnotated": {"$ne": True}},
                {"$set": {"boxes": kept + new, "isEmpty": not (kept or new)}}))
        if ops:
            self.c.frames.bulk_write(ops, ordered=False)

    @idempotent
    def set_boxes(self, updates: list[tuple[ObjectId, list[dict]]]) -> None:
        """Set the boxes of each frame (track ids added to its auto boxes, gaps
        filled); a frame a person marked ``isUserAnnotated`` is not touched."""
        ops = [pymongo.UpdateOne({"_id": frame_id, "isUserAnnotated": {"$ne": True}},
                                 {"$set": {"boxes": boxes, "isEmpty": not boxes}})
               for frame_id, boxes in updates]
        for start in range(0, len(ops), 1000):
            self.c.frames.bulk_write(ops[start:start + 1000], ordered=False)
