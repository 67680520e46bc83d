"""The kinds of job and the states of a job run (a ProcessingJob document's
``kind`` and ``state``), named once.

A ``StrEnum``: each member is the very string stored in MongoDB and compares
equal to it, so documents read back as plain strings still match.
"""
from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any


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


def job_busy(job: dict | None) -> bool:
    """A run of this job is active: a new one may start only by replacing it
    (force_write). A request that died while accepting blocks only ACCEPT_TIMEOUT."""
    if job is None or job.get("state") not in ACTIVE_JOB_STATES:
        return False
    if job["state"] != JobState.ACCEPTING:
        return True
    created = job.get("createdAt")
    return created is not None and created >= datetime.now(timezone.utc) - ACCEPT_TIMEOUT


def accepted_upload() -> dict[str, Any]:
    """The state of an upload whose request was just accepted: queued, not started."""
    return {"status": 0, "progress": 0, "stage": "queued", "startedAt": None,
            "finishedAt": None, "errorMessage": None}


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
