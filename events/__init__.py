"""The state-change events the service sends to the backend (README "Events").

An event is recorded in MongoDB's outbox in the same step as the change it
reports (``mongo_manager``), then POSTed by a deliverer (``events/deliverer.py``)
at least once, in ``sequence`` order per stream: one stream per upload, one
per dataset version. Here: the types, and what each event's ``data`` holds.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any

from job_states import canonical_id

Event = tuple[str, dict[str, Any]]  # (type, data) as a state change records it


class EventType(StrEnum):
    UPLOAD_ACCEPTED = "upload.accepted"
    TASK_READY = "upload.task_ready"
    UPLOAD_COMPLETED = "upload.completed"
    UPLOAD_FAILED = "upload.failed"
    ANNOTATION_COMPLETED = "annotation.completed"
    DATASET_COMPLETED = "dataset.completed"
    DATASET_FAILED = "dataset.failed"


class EventState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # max_attempts used up: listed by GET /api/events?state=dead


def upload_stream(upload_id: Any) -> str:
    return canonical_id(str(upload_id))


def dataset_stream(version_id: Any) -> str:
    return f"dataset:{canonical_id(str(version_id))}"


def accepted(upload_id: Any, request_type: int, force_write: int) -> Event:
    return EventType.UPLOAD_ACCEPTED, {"upload_id": str(upload_id),
                                       "request_type": request_type,
                                       "force_write": force_write}


def task_ready(upload_id: Any, number: int, task: dict) -> Event:
    return EventType.TASK_READY, {"upload_id": str(upload_id), "task_id": str(task["_id"]),
                                  "task_name": task["taskName"], "task_number": number,
                                  "clip_path": task["videoPath"],
                                  "frame_count": task["frameCount"]}


def completed(upload_id: Any, task_count: int) -> Event:
    return EventType.UPLOAD_COMPLETED, {"upload_id": str(upload_id), "task_count": task_count}


def failed(upload_id: Any, error: dict) -> Event:
    return EventType.UPLOAD_FAILED, {"upload_id": str(upload_id),
                                     "code": error.get("code"),
                                     "message": error.get("message")}


def annotation_completed(upload_id: Any, version: int, task_count: int) -> Event:
    return EventType.ANNOTATION_COMPLETED, {"upload_id": str(upload_id), "version": version,
                                            "task_count": task_count}


def dataset_completed(version_id: Any, image_count: int, s3_prefix: str | None) -> Event:
    return EventType.DATASET_COMPLETED, {"version_id": str(version_id),
                                         "image_count": image_count, "s3_prefix": s3_prefix}


def dataset_failed(version_id: Any, error: dict) -> Event:
    return EventType.DATASET_FAILED, {"version_id": str(version_id),
                                      "code": error.get("code"),
                                      "message": error.get("message")}
