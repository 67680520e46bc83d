"""The kinds of job and the states of a job run (a ProcessingJob document's
``kind`` and ``state``), an upload's ``status`` and a request's ``request_type``,
named once; and the upload fields of each state a run ends in.

``StrEnum`` and ``IntEnum``: each member is the very string or integer stored
in MongoDB and shown by the API, and compares equal to it, so documents read
back as plain values still match, and JSON shows the plain value.
"""
from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from typing import Any, Mapping


class JobState(StrEnum):
    ACCEPTING = "accepting"  # recorded by a request that has not answered yet: not claimable
    QUEUED = "queued"  # claimable
    RUNNING = "running"  # held by a lease
    WAITING = "waiting"  # its segments (jobs/segments.py) are being cut; no holder
    COMMITTED = "committed"  # its tasks are in place; held by a lease until cleaned up
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # a segment whose run was replaced or stopped


# A run in one of these blocks a new run of its job (unless replaced: force_write).
ACTIVE_JOB_STATES = [JobState.ACCEPTING, JobState.QUEUED, JobState.RUNNING,
                     JobState.WAITING, JobState.COMMITTED]
# Held by a lease: its holder's death (or the lease running out) frees it.
LEASED_JOB_STATES = [JobState.RUNNING, JobState.COMMITTED]
# A request that died between recording its job and answering never got a
# 202; after this long its "accepting" job no longer blocks a new request.
ACCEPT_TIMEOUT = timedelta(seconds=60)


def job_busy(doc: Mapping[str, Any] | None) -> bool:
    """A run of this job is active: a new one may start only by replacing it
    (force_write). A request that died while accepting blocks only ACCEPT_TIMEOUT.

    ``doc``: the job's document as read (None: there is none), not a typed
    ``Job``: the accept hands that very read to ``start_job``'s compare-and-set."""
    if doc is None or doc.get("state") not in ACTIVE_JOB_STATES:
        return False
    if doc["state"] != JobState.ACCEPTING:
        return True
    created = doc.get("createdAt")
    return created is not None and created >= datetime.now(timezone.utc) - ACCEPT_TIMEOUT


class UploadStatus(IntEnum):
    """An upload's ``status`` (and a dataset version's: the same values and texts)."""
    IN_PROGRESS = 0  # queued, or a run is working on it
    COMPLETED = 1  # the last run ended: every task (and file) is in place
    ERROR = 2  # the last run failed: ``errorMessage`` (a version's ``error``) says why


class RequestType(IntEnum):
    """What a processContent request asks for (``request_type``)."""
    CUT = 0  # cut the content into tasks
    CUT_AND_ANNOTATE = 1  # cut, and auto-annotate the sampled frames while cutting
    ANNOTATE = 2  # auto-annotate the upload's existing tasks again


# The request types that run a detector (on the GPU queue of the Celery engine).
ANNOTATING_TYPES = (RequestType.CUT_AND_ANNOTATE, RequestType.ANNOTATE)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def accepted_upload() -> dict[str, Any]:
    """The state of an upload whose request was just accepted: queued, not started."""
    return {"status": UploadStatus.IN_PROGRESS, "progress": 0, "stage": "queued",
            "startedAt": None, "finishedAt": None, "errorMessage": None}


def started_upload(stage: str) -> dict[str, Any]:
    """The state of an upload whose run begins its work (``stage``: "cutting", "annotating")."""
    return {"status": UploadStatus.IN_PROGRESS, "stage": stage, "startedAt": _now(),
            "errorMessage": None}


def completed_upload(timings: dict, **more: Any) -> dict[str, Any]:
    """The state of an upload whose run completed; ``more``: the run's other
    results (``timelineRepairs``, ``tracks``...), set with it."""
    return {"status": UploadStatus.COMPLETED, "progress": 100, "stage": "done",
            "finishedAt": _now(), "errorMessage": None, "timings": timings, **more}


def failed_upload(error: dict) -> dict[str, Any]:
    """The state of an upload whose run failed with ``error`` (code, message)."""
    return {"status": UploadStatus.ERROR, "stage": "error", "errorMessage": error,
            "finishedAt": _now()}


def queued_version() -> dict[str, Any]:
    """The state of a dataset version whose build was just queued."""
    return {"status": UploadStatus.IN_PROGRESS, "progress": 0, "stage": "queued", "error": None}


def completed_version(counts: dict, upload_stats: dict | None) -> dict[str, Any]:
    """The state of a dataset version whose build completed (``counts``: the manifest's)."""
    return {"status": UploadStatus.COMPLETED, "progress": 100, "stage": "done", "error": None,
            "finishedAt": _now(), "counts": counts, "uploadStats": upload_stats,
            "taskStatus.state": "complete"}


def failed_version(error: dict) -> dict[str, Any]:
    """The state of a dataset version whose build failed with ``error``."""
    return {"status": UploadStatus.ERROR, "stage": "error", "error": error,
            "finishedAt": _now(), "taskStatus.state": "error"}


class JobKind(StrEnum):
    CONTENT = "processContent"  # one upload's run (jobs/content.py)
    SEGMENT = "contentSegment"  # one time segment of a long video's run (jobs/segments.py)
    DATASET = "datasetBuild"  # one dataset version's build (jobs/dataset.py)


def canonical_id(value: str) -> str:
    """An id in its one form: a 24-hex id is stored as an ObjectId, which any
    letter case names, so it is lower case here (as ObjectId prints it). Else
    "64B7..." and "64b7..." would be one upload with two jobs, two runs at once."""
    hex_id = len(value) == 24 and all(ch in string.hexdigits for ch in value)
    return value.lower() if hex_id else value


def upload_job_id(upload_id: str) -> str:
    """The one job of an upload: each request for it starts a new run of it."""
    return f"{JobKind.CONTENT}:{canonical_id(str(upload_id))}"


def dataset_job_id(version_id: str) -> str:
    """The one job of a dataset version."""
    return f"{JobKind.DATASET}:{canonical_id(str(version_id))}"
