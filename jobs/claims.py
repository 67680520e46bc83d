"""A process's claims of jobs, typed: the next job (or one by id), one job by id
for a Celery message, the release of jobs held by this host's dead processes,
and a job read as it is now."""
from __future__ import annotations

from config import Config
from job_states import LEASED_JOB_STATES
from job_types import Job
from mongo_manager import MongoManager, now
from processes import owner_dead_here


def claim(mongo: MongoManager, owner: str, lease_seconds: float,
          job_id: str | None = None) -> Job | None:
    """Claim the oldest queued job (or ``job_id``), or one whose holder's lease ran
    out (``mongo.jobs.claim_job``), as the ``Job`` it is; None if there is none."""
    doc = mongo.jobs.claim_job(owner, lease_seconds, job_id=job_id)
    return Job.from_doc(doc) if doc is not None else None


def read_job(mongo: MongoManager, job_id: str) -> Job | None:
    """The job as it is now (another process may hold it); None if there is none."""
    doc = mongo.jobs.get_job(job_id)
    return Job.from_doc(doc) if doc is not None else None


def claim_by_id(mongo: MongoManager, config: Config, job_id: str,
                owner: str) -> tuple[Job | None, str]:
    """The claimed job, or None and why it is not to be run here.

    A job held by a live lease is left to its holder: if the holder dies, its
    lease runs out and the sweeper sends the job again. A holder that was a
    process of this host and is gone (a killed pool process) is released at
    once, so the redelivered message resumes the job without waiting.
    """
    lease = config.processing.lease_seconds
    job = claim(mongo, owner, lease, job_id)
    if job is not None:
        return job, "claimed"
    doc = mongo.jobs.get_job(job_id)
    if doc is None:
        return None, "no such job"
    current = Job.from_doc(doc)
    if current.state in LEASED_JOB_STATES and owner_dead_here(current.owner):
        mongo.jobs.release_jobs([current.owner])
        job = claim(mongo, owner, lease, job_id)
        if job is not None:
            return job, "claimed"
    if current.state in LEASED_JOB_STATES and current.lease_until is not None:
        left = (current.lease_until - now()).total_seconds()
        return None, f"held by {current.owner} for {left:.1f} s more"
    return None, current.state


def release_orphans(mongo: MongoManager) -> int:
    """Release the jobs of dead processes of this host, so others take them now.

    Also queues the commit of a segmented run whose last segment died between
    ending and claiming the commit (nothing else would ever take it).
    """
    owners = set(mongo.jobs.job_owners()) | set(mongo.transaction_owners())
    dead = [owner for owner in owners if owner_dead_here(owner)]
    # Their transactions first: the documents they locked include the jobs.
    mongo.end_abandoned_transactions(dead)
    released = mongo.jobs.release_jobs(dead) if dead else 0
    return released + mongo.segments.requeue_committable()
