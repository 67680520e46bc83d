"""The uploads (AnnotationContentUpload) and the projects that list them."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from job_states import UploadStatus, accepted_upload
from stores.common import Store, now, to_id


class UploadStore(Store):
    """The uploads and their projects' lists."""

    def get_upload(self, upload_id: Any) -> dict | None:
        return self.c.uploads.find_one({"_id": to_id(upload_id)})

    def record_upload(self, session: Any, upload_id: Any, project_id: Any,
                      fields: dict) -> Any:
        """The upload document of a newly accepted request (``accepted_upload``);
        returns the project it was under before (None: a new upload)."""
        state = {"projectId": to_id(project_id), **accepted_upload(), **fields}
        before = self.c.uploads.find_one_and_update(
            {"_id": to_id(upload_id)}, {"$set": state, "$setOnInsert": {"createdAt": now(),
                                                                        "readyTaskCount": 0}},
            projection={"projectId": 1}, upsert=True, session=session)
        return (before or {}).get("projectId")

    def list_upload(self, upload_id: Any, project_id: Any, moved_from: Any) -> None:
        """The project lists the upload; one it moved from (force_write) no longer.
        Outside the accept's transaction: every new upload of a project writes
        its list, and concurrent accepts would conflict on it."""
        upload, project = to_id(upload_id), to_id(project_id)
        if moved_from is not None and moved_from != project:
            self.c.projects.update_one({"_id": moved_from}, {"$pull": {"contentUploads": upload}})
        self.c.projects.update_one({"_id": project}, {"$addToSet": {"contentUploads": upload}},
                                   upsert=True)

    def update_upload(self, upload_id: Any, **fields: Any) -> None:
        self.c.uploads.update_one({"_id": to_id(upload_id)}, {"$set": fields})

    def ready_task_count(self, upload_id: Any) -> int:
        """Tasks of the upload's run published so far (jobs/publish.py)."""
        upload = self.c.uploads.find_one({"_id": to_id(upload_id)}, {"readyTaskCount": 1})
        return (upload or {}).get("readyTaskCount") or 0

    def recent_timings(self, since: datetime, limit: int) -> list[dict]:
        """``timings`` of the uploads completed since ``since``, newest first."""
        cursor = self.c.uploads.find({"finishedAt": {"$gte": since},
                                      "status": UploadStatus.COMPLETED},
                                     {"timings": 1, "_id": 0}).sort("finishedAt", -1)
        return [doc["timings"] for doc in cursor.limit(limit) if doc.get("timings")]
