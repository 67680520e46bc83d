"""Accepting processContent requests and describing uploads (API and CLI)."""
from __future__ import annotations

import events
from config import Config
from engines.engine import JobNotifier
from events import upload_stream
from exceptions import Conflict, NotFound
from intake.schemas import ProcessRequest
from intake.status import STATUS_TEXT, iso
from job_states import JobKind, RequestType, UploadStatus, job_busy, upload_job_id
from job_types import ContentParams
from mongo_manager import MongoManager, new_id, to_id
from storage.space import check_room

# Reads and compare-and-sets before a request gives up on an upload whose job
# keeps changing (each failed one means another request changed it meanwhile).
ACCEPT_TRIES = 3
# Stored request fields that must match for a repeated request to be "the same".
SAME_REQUEST_FIELDS = ("request_type", "content_type", "frame_rate", "frames_per_task",
                       "sourceFilePath", "request_annotation_version", "task_split",
                       "skip_still")
# What an upload recorded before a field existed ran with.
UNRECORDED = {"task_split": "fixed", "skip_still": 0}


def accept(req: ProcessRequest, mongo: MongoManager, config: Config,
           notifier: JobNotifier) -> tuple[int, dict]:
    """Record the job (before answering) and notify its engine.

    Returns (200, body) when ``force_write=0`` and the same request already
    completed, else (202, body); raises Conflict when it cannot be accepted.

    "Completed → 200, running → 409, else start" is one atomic step: the
    decision is made on a read of the job and the upload, and the new run
    starts only if the job is still as read (``start_job``'s ``seen``).
    Otherwise a duplicate request racing the end of a run would start it over
    and replace the tasks people are annotating. Only force_write redoes.
    """
    fields = _upload_fields(req, config)
    job_id = upload_job_id(req.upload_id)
    run_id = new_id()
    params = req.as_params(config.processing)
    for _ in range(ACCEPT_TRIES):
        # The job first: a run commits its upload's final state before its job
        # leaves the active states, so a job read as ended has its upload final.
        seen = mongo.jobs.get_job(job_id)
        existing = mongo.uploads.get_upload(req.upload_id)
        done = _already_done(req, fields, existing, mongo)
        if done is not None:
            return done
        if not req.force_write and job_busy(seen):
            raise Conflict("this upload is being processed now; wait for it to finish or "
                           "send force_write=1 to restart it", code="in_progress")
        check_room(config)  # a run is to start: not onto a full store (507)
        if mongo.jobs.start_job(job_id, JobKind.CONTENT, params.to_doc(), run_id,
                                replace_active=bool(req.force_write), seen=seen):
            break
    else:  # the job kept changing under us: another request is handling it
        raise Conflict("this upload is being accepted by another request now; try again",
                       code="in_progress")
    # An upload already recorded under this project is already in its list.
    listed = bool(existing) and existing.get("projectId") == to_id(req.project_id)
    queue_run(mongo, job_id, run_id, params, fields, listed)
    notifier.notify(job_id)
    return 202, {"upload_id": req.upload_id, "status": UploadStatus.IN_PROGRESS, "stage": "queued",
                 "status_url": f"/api/processContent/{req.upload_id}",
                 "message": "accepted; processing in the background"}


def queue_run(mongo: MongoManager, job_id: str, run_id: str, params: ContentParams,
              fields: dict, listed: bool) -> None:
    """Make a started run claimable, with its upload document (status 0, queued,
    ``fields`` set) and its upload.accepted event."""
    upload_id = params.upload_id
    mongo.jobs.queue_job(job_id, run_id, upload_stream(upload_id),
                         [events.accepted(upload_id, params.request_type,
                                          int(params.force_write))],
                         upload={"upload_id": upload_id, "project_id": params.project_id,
                                 "fields": fields, "listed": listed})


def _already_done(req: ProcessRequest, fields: dict, existing: dict | None,
                  mongo: MongoManager) -> tuple[int, dict] | None:
    """(200, body) when this very request already completed; Conflict when the
    upload cannot take it; None when a run is to start."""
    if req.request_type == RequestType.ANNOTATE:
        _check_annotatable(existing, mongo, req.upload_id)
    if not existing or existing.get("status") != UploadStatus.COMPLETED or req.force_write:
        return None
    if all(existing.get(k, UNRECORDED.get(k)) == v for k, v in fields.items()
           if k in SAME_REQUEST_FIELDS) \
            and existing.get("projectId") == to_id(req.project_id):
        return 200, {**describe(existing), "message": "already processed; nothing redone "
                     "(send force_write=1 to process it again)"}
    if req.request_type != RequestType.ANNOTATE:  # annotating existing tasks again needs no force
        raise Conflict("this upload was already processed with other parameters; "
                       "send force_write=1 to replace the result", code="already_processed")
    return None


def _check_annotatable(existing: dict | None, mongo: MongoManager, upload_id: str) -> None:
    """Request type 2 annotates a whole cut: not one still being cut (its tasks
    appear as they are cut; even force_write must not stop the cut for it) nor
    one whose cut failed half-way (the annotation would end it as complete)."""
    if existing is None or not mongo.frames.count_tasks(upload_id):
        raise Conflict("this upload has no tasks to annotate; cut it first (request_type 0 "
                       "or 1)", code="no_tasks")
    # Complete, or its last request was an annotation, accepted on a complete cut.
    if existing.get("status") == UploadStatus.COMPLETED \
            or existing.get("request_type") == RequestType.ANNOTATE:
        return
    if existing.get("status") == UploadStatus.IN_PROGRESS:
        raise Conflict("this upload is being cut now; annotate it once it completes",
                       code="in_progress")
    raise Conflict("this upload's cut did not complete; cut it again (force_write=1) "
                   "before annotating it", code="cut_incomplete")


def _upload_fields(req: ProcessRequest, config: Config) -> dict:
    fields = {"request_type": req.request_type,
              "request_annotation_version": req.auto_anno_version,
              "content_type": req.content_type, "force_write": req.force_write}
    if req.request_type != RequestType.ANNOTATE:  # keeps the cutting parameters
        params = req.as_params(config.processing)
        fields.update({"frame_rate": req.frame_rate,
                       "frames_per_task": config.processing.frames_per_task,
                       "task_split": params.task_split, "skip_still": params.skip_still,
                       "sourceFilePath": req.content_path, "taskCount": 0})
    return fields


def status(mongo: MongoManager, upload_id: str) -> dict:
    upload = mongo.uploads.get_upload(upload_id)
    if upload is None:
        raise NotFound(f"no upload {upload_id}", code="upload_not_found")
    return {**describe(upload), "message": STATUS_TEXT.get(upload.get("status"), "unknown")}


def describe(upload: dict) -> dict:
    return {
        "upload_id": str(upload["_id"]), "project_id": str(upload.get("projectId")),
        "status": upload.get("status"), "statusText": STATUS_TEXT.get(upload.get("status")),
        "progress": upload.get("progress"), "stage": upload.get("stage"),
        "taskCount": upload.get("taskCount", 0),
        "readyTaskCount": upload.get("readyTaskCount", 0), "errorMessage": upload.get("errorMessage"),
        "createdAt": iso(upload.get("createdAt")), "startedAt": iso(upload.get("startedAt")),
        "finishedAt": iso(upload.get("finishedAt")), "timings": upload.get("timings"),
        "tracks": upload.get("tracks"), "timelineRepairs": upload.get("timelineRepairs"),
        "shots": upload.get("shots"), "stillFramesLeftOut": upload.get("stillFramesLeftOut", 0),
    }
