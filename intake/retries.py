"""The warm start's retry of work the contents store had no room for (code
``disk_full``): once the store is above ``processing.min_free_mb`` again, each
such upload or dataset build is run again, once per failure."""
from __future__ import annotations

from config import Config
from exceptions import DiskFull
from intake import dataset_builds, uploads
from job_states import JobKind
from job_types import Job
from mongo_manager import MongoManager, new_id
from storage.space import below_floor


def retry_disk_full(mongo: MongoManager, config: Config) -> tuple[int, str | None]:
    """Queue a new run of every upload and dataset build whose last run ran out
    of space: (how many, None); or, while the store is still below the floor,
    (0, what is left and why), for a later warm start or the caller's
    ``force_write=1``.

    Once per failure: the new run replaces the failed one by a compare-and-set
    on it, so two warm starts at once retry it once, and a later one finds
    nothing to retry unless the new run fails for want of space again.
    """
    failed = mongo.jobs.failed_jobs((JobKind.CONTENT, JobKind.DATASET), DiskFull.code)
    why = below_floor(config) if failed else None
    if why:
        return 0, f"{why}: {len(failed)} upload(s) or dataset build(s) that ran out of " \
                  "space (disk_full) left for later"
    retried = 0
    for doc in failed:
        job, run_id = Job.from_doc(doc), new_id()
        if job.kind == JobKind.CONTENT and \
                mongo.uploads.get_upload(job.params.upload_id) is None:
            continue  # the backend deleted the upload since: nothing to redo
        if not mongo.jobs.start_job(job.id, job.kind, job.params.to_doc(), run_id,
                                    replace_active=False, seen=doc):
            continue  # retried by another warm start, or started again by a request
        if job.kind == JobKind.DATASET:
            dataset_builds.queue_run(mongo, job.id, run_id, job.params.version_id)
        else:  # the upload keeps its request's fields and its project's list
            uploads.queue_run(mongo, job.id, run_id, job.params, {}, listed=True)
        retried += 1
    return retried, None
