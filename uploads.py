"""Accepting processContent requests and describing uploads (API and CLI)."""
from __future__ import annotations

from datetime import datetime

from bson import ObjectId

from config import Config
from content_job import KIND, job_id_for
from exceptions import Conflict, NotFound
from executor import Executor
from mongo_manager import MongoManager, to_id
from schemas import ProcessRequest

STATUS_TEXT = {0: "in progress", 1: "completed", 2: "error"}
# Stored request fields that must match for a repeated request to be "the same".
SAME_REQUEST_FIELDS = ("request_type", "content_type", "frame_rate", "frames_per_task",
                       "sourceFilePath", "request_annotation_version")


def accept(req: ProcessRequest, mongo: MongoManager, config: Config,
           executor: Executor) -> tuple[int, dict]:
    """Record the job (before answering) and hand it to the executor.

    Returns (200, body) when ``force_write=0`` and the same request already
    completed, else (202, body); raises Conflict when it cannot be accepted.
    """
    fields = _upload_fields(req, config)
    existing = mongo.get_upload(req.upload_id)
    if req.request_type == 2 and (existing is None or not mongo.count_tasks(req.upload_id)):
        raise Conflict("this upload has no tasks to annotate; cut it first (request_type 0 "
                       "or 1)", code="no_tasks")
    if existing and existing.get("status") == 1 and not req.force_write:
        if all(existing.get(k) == v for k, v in fields.items() if k in SAME_REQUEST_FIELDS) \
                and existing.get("projectId") == to_id(req.project_id):
            return 200, {**describe(existing), "message": "already processed; nothing redone "
                         "(send force_write=1 to process it again)"}
        if req.request_type != 2:  # annotating existing tasks again needs no force
            raise Conflict("this upload was already processed with other parameters; "
                           "send force_write=1 to replace the result", code="already_processed")
    job_id, run_id = job_id_for(req.upload_id), str(ObjectId())
    params = req.as_params(config.processing.frames_per_task)
    if not mongo.start_job(job_id, KIND, params, run_id, replace_active=bool(req.force_write)):
        raise Conflict("this upload is being processed now; wait for it to finish or send "
                       "force_write=1 to restart it", code="in_progress")
    # An upload already recorded under this project is already in its list.
    listed = bool(existing) and existing.get("projectId") == to_id(req.project_id)
    mongo.record_upload_queued(req.upload_id, req.project_id, fields, listed=listed)
    mongo.queue_job(job_id, run_id)
    executor.submit(job_id)
    return 202, {"upload_id": req.upload_id, "status": 0, "stage": "queued",
                 "status_url": f"/api/processContent/{req.upload_id}",
                 "message": "accepted; processing in the background"}


def _upload_fields(req: ProcessRequest, config: Config) -> dict:
    fields = {"request_type": req.request_type,
              "request_annotation_version": req.auto_anno_version,
              "content_type": req.content_type, "force_write": req.force_write}
    if req.request_type != 2:  # annotating existing tasks keeps the cutting parameters
        fields.update({"frame_rate": req.frame_rate,
                       "frames_per_task": config.processing.frames_per_task,
                       "sourceFilePath": req.content_path, "taskCount": 0})
    return fields


def status(mongo: MongoManager, upload_id: str) -> dict:
    upload = mongo.get_upload(upload_id)
    if upload is None:
        raise NotFound(f"no upload {upload_id}", code="upload_not_found")
    return {**describe(upload), "message": STATUS_TEXT.get(upload.get("status"), "unknown")}


def describe(upload: dict) -> dict:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if isinstance(value, datetime) else None

    return {
        "upload_id": str(upload["_id"]), "project_id": str(upload.get("projectId")),
        "status": upload.get("status"), "statusText": STATUS_TEXT.get(upload.get("status")),
        "progress": upload.get("progress"), "stage": upload.get("stage"),
        "taskCount": upload.get("taskCount", 0), "errorMessage": upload.get("errorMessage"),
        "createdAt": iso(upload.get("createdAt")), "startedAt": iso(upload.get("startedAt")),
        "finishedAt": iso(upload.get("finishedAt")), "timings": upload.get("timings"),
    }
