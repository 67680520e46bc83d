"""Starting dataset builds and describing them (API, CLI and warm start)."""
from __future__ import annotations

from typing import Any, Callable

from config import Config
from exceptions import Conflict, NotFound
from intake.status import STATUS_TEXT, iso
from job_states import JobKind, UploadStatus, dataset_job_id, queued_version
from job_types import DatasetParams, Job
from jobs.claims import claim, release_orphans
from jobs.context import JobContext
from jobs.runner import run_claimed
from mongo_manager import MongoManager, new_id
from processes import owner_id
from storage.space import check_room


def start_build(mongo: MongoManager, version_id: str) -> tuple[str, str] | None:
    """Record a new build run of the version; None when one is active already."""
    if mongo.datasets.get_version(version_id) is None:
        raise NotFound(f"no dataset version {version_id}", code="version_not_found")
    job_id, run_id = dataset_job_id(version_id), new_id()
    params = DatasetParams(version_id=str(version_id))
    if not mongo.jobs.start_job(job_id, JobKind.DATASET, params.to_doc(), run_id,
                                replace_active=False, seen=mongo.jobs.get_job(job_id)):
        return None
    return job_id, run_id


def build_here(mongo: MongoManager, config: Config, version_id: str,
               on_progress: Callable[[float], None] | None = None) -> bool:
    """Build the version in this process (the CLI); False when another process
    is building it now. The outcome is in the version document."""
    job = _take(mongo, config, version_id)
    if job is None:
        return False
    # As a job process runs it: a build that stalls fails and ends this process.
    run_claimed(job, JobContext(mongo, config, owner_id(), on_progress=on_progress))
    return True


def _take(mongo: MongoManager, config: Config, version_id: str) -> Job | None:
    """This process's build run: a new one, or one whose holder died."""
    lease = config.processing.lease_seconds
    started = start_build(mongo, version_id)
    if started:
        doc = mongo.jobs.take_job(*started, owner_id(), lease)
        return Job.from_doc(doc) if doc is not None else None
    # A build killed on this host holds its lease until it runs out: release it now.
    release_orphans(mongo)
    return claim(mongo, owner_id(), lease, dataset_job_id(version_id))


def queue_build(mongo: MongoManager, config: Config, version_id: str, notifier: Any) -> dict:
    """The API's build request: recorded and queued before the 202; refused
    (507) while the contents store is below the floor."""
    check_room(config)
    started = start_build(mongo, version_id)
    if started is None:
        raise Conflict(f"dataset version {version_id} is being built now", code="in_progress")
    job_id, run_id = started
    queue_run(mongo, job_id, run_id, version_id)
    notifier.notify(job_id)
    return {"version_id": str(version_id), "status": UploadStatus.IN_PROGRESS, "stage": "queued",
            "status_url": f"/api/datasets/{version_id}",
            "message": "accepted; building in the background"}


def queue_run(mongo: MongoManager, job_id: str, run_id: str, version_id: str) -> None:
    """Make a started build run claimable, the version showing it queued."""
    mongo.datasets.update_version(version_id, **queued_version())
    mongo.jobs.queue_job(job_id, run_id)


def queue_unfinished(mongo: MongoManager) -> int:
    """Queue every version a crash or a store outage left unfinished (warm start).

    A version already queued or being built is left to its job.
    """
    queued = 0
    for version_id in mongo.datasets.versions_to_finish():
        started = start_build(mongo, version_id)
        if started:
            mongo.jobs.queue_job(*started)
            queued += 1
    return queued


def status(mongo: MongoManager, version_id: str) -> dict:
    doc = mongo.datasets.get_version(version_id)
    if doc is None:
        raise NotFound(f"no dataset version {version_id}", code="version_not_found")
    state = doc.get("taskStatus") or {}
    return {
        "version_id": str(doc["_id"]), "name": doc.get("name"), "status": doc.get("status"),
        "statusText": STATUS_TEXT.get(doc.get("status"), "not built"),
        "progress": doc.get("progress"), "stage": doc.get("stage"),
        "error": doc.get("error"), "s3Prefix": doc.get("s3Prefix"),
        "taskStatus": {"state": state.get("state"), "tasks": [
            {**task, "task": str(task.get("task"))} for task in state.get("tasks", [])]},
        "counts": doc.get("counts"), "uploadStats": doc.get("uploadStats"),
        "timings": doc.get("timings"), "report": doc.get("report"),
        "startedAt": iso(doc.get("startedAt")), "finishedAt": iso(doc.get("finishedAt")),
    }
