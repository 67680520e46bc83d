"""Dataset versions (AnnotationDatasetVersion) and the tasks they list."""
from __future__ import annotations

from typing import Any, Iterable

from events import Event
from stores.common import Store, idempotent, to_id


class DatasetStore(Store):
    """Dataset versions, their builds' progress and the tasks they list."""

    def get_version(self, version_id: Any) -> dict | None:
        return self.c.versions.find_one({"_id": to_id(version_id)})

    def dataset_tasks(self, project_ids: Iterable, task_ids: Iterable,
                      audit_statuses: Iterable[int]) -> list[dict]:
        """Tasks of the projects plus the listed tasks, whose audit status is wanted.

        Two queries rather than one $or, so that each uses its index.
        """
        audit = {"auditStatus": {"$in": list(audit_statuses)}}
        found: dict[Any, dict] = {}
        for key, ids in (("projectId", project_ids), ("_id", task_ids)):
            ids = [to_id(i) for i in ids]
            if ids:
                tasks = self.c.tasks.find({key: {"$in": ids}, **audit})
                found.update((t["_id"], t) for t in tasks)
        return sorted(found.values(), key=lambda t: (str(t["uploadId"]), t.get("frameStart", 0),
                                                     t["taskName"]))

    def update_version(self, version_id: Any, **fields: Any) -> None:
        self.c.versions.update_one({"_id": to_id(version_id)}, {"$set": fields})

    def finish_version(self, version_id: Any, fields: dict, stream: str,
                       events: list[Event]) -> None:
        """The version's final fields and its event (dataset.completed), together."""
        def finish(session: Any) -> None:
            self.c.versions.update_one({"_id": to_id(version_id)}, {"$set": fields},
                                       session=session)
            self.outbox.add_events(stream, events, session)
        self.atomically(finish)

    def set_version_task(self, version_id: Any, index: int, **fields: Any) -> None:
        """Set fields of entry ``index`` of ``taskStatus.tasks`` (an index path:
        the embedded server has no positional ``$`` for nested arrays)."""
        self.c.versions.update_one({"_id": to_id(version_id)}, {"$set": {
            f"taskStatus.tasks.{index}.{name}": value for name, value in fields.items()}})

    def versions_to_finish(self) -> list[str]:
        """Builds a crash left pending, and builds the store failed (retryable)."""
        pending = self.c.versions.find({"taskStatus.state": "pending"}, {"_id": 1})
        failed = self.c.versions.find({"taskStatus.state": "error", "error.retryable": True},
                                      {"_id": 1})
        return [str(doc["_id"]) for doc in list(pending) + list(failed)]

    @idempotent
    def set_dataset_version(self, task_ids: list, version_id: Any) -> None:
        """Exactly ``task_ids`` list the version in ``datasetVersions``: a task a
        rebuild left out (rejected meanwhile) no longer does."""
        version = to_id(version_id)
        self.c.tasks.update_many({"_id": {"$in": task_ids}},
                                 {"$addToSet": {"datasetVersions": version}})
        self.c.tasks.update_many({"datasetVersions": version, "_id": {"$nin": task_ids}},
                                 {"$pull": {"datasetVersions": version}})
