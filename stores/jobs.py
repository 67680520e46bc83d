"""The durable job queue (ProcessingJob): a job's runs, their leases, their
ends, and the broker sends of the Celery engine."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterable

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from events import Event
from job_states import ACTIVE_JOB_STATES, LEASED_JOB_STATES, JobState, job_busy
from stores.common import EPOCH, Atomically, Collections, Store, now, to_id
from stores.outbox import OutboxStore
from stores.uploads import UploadStore


class JobStore(Store):
    """A job's runs: started, queued, claimed under a lease, ended."""

    def __init__(self, collections: Collections, atomically: Atomically, outbox: OutboxStore,
                 uploads: UploadStore) -> None:
        super().__init__(collections, atomically, outbox)
        self.uploads = uploads  # an upload's run records its upload when queued

    def start_job(self, job_id: str, kind: str, params: dict, run_id: str,
                  replace_active: bool, seen: dict | None = None) -> bool:
        """Record a new run of ``job_id`` as "accepting" (not yet claimable).

        ``seen``: the job document as the caller read it when it decided to
        start a run (None: there was none). Unless ``replace_active``, the run
        starts only if the job is still exactly that and not busy (a
        compare-and-set on its run and state), so a decision made on a stale
        read (a run that ended in between) is never acted on; False then, and
        the caller reads again and decides again. One document per job id, so
        concurrent duplicate requests race on a single atomic update: exactly
        one of them wins. ``queue_job`` then makes the run claimable, once the
        upload document is written. Plain filters on ``_id``, never an $or,
        which keeps the embedded server from using the _id index on a
        collection that grows with every upload (measured: 15 ms at 1000
        uploads instead of 1 ms).
        """
        fields = {"kind": kind, "params": params, "runId": run_id, "state": JobState.ACCEPTING,
                  "attempts": 0, "owner": None, "leaseUntil": EPOCH, "error": None,
                  "createdAt": now()}
        # A new run starts whole: no segments or single-pass mark of an old run.
        update = {"$set": fields, "$unset": {"segments": "", "singlePass": "",
                                             "progressive": ""}}
        if replace_active:
            self.c.jobs.update_one({"_id": job_id}, update, upsert=True)
            return True
        if seen is None:  # none was there: insert, unless another request just did
            try:
                self.c.jobs.update_one({"_id": job_id, "runId": {"$exists": False}}, update,
                                       upsert=True)
                return True
            except DuplicateKeyError:
                return False
        if job_busy(seen):
            return False
        result = self.c.jobs.update_one({"_id": job_id, "runId": seen.get("runId"),
                                         "state": seen.get("state")}, update)
        return result.matched_count == 1

    def queue_job(self, job_id: str, run_id: str, stream: str = "",
                  events: list[Event] = (), upload: dict | None = None) -> None:
        """Make an accepted run claimable, recording ``events`` (upload.accepted)
        and, for an upload's run, its upload document with it (``upload``:
        upload_id, project_id, fields; listed: the project lists it already).
        Only while the run is still the job's: of two force_write requests
        racing, the upload records the one whose run won."""
        recorded: list[Any] = []  # the upload's project before, once recorded

        def queue(session: Any) -> None:
            recorded.clear()  # a retried transaction starts over
            result = self.c.jobs.update_one(
                {"_id": job_id, "runId": run_id, "state": JobState.ACCEPTING},
                {"$set": {"state": JobState.QUEUED}}, session=session)
            if result.matched_count:
                if upload is not None:
                    recorded.append(self.uploads.record_upload(
                        session, upload["upload_id"], upload["project_id"], upload["fields"]))
                self.outbox.add_events(stream, list(events), session)
        self.atomically(queue)
        if recorded and not upload.get("listed"):
            self.uploads.list_upload(upload["upload_id"], upload["project_id"], recorded[0])

    def set_job_fields(self, job_id: str, run_id: str, **fields: Any) -> None:
        self.c.jobs.update_one({"_id": job_id, "runId": run_id}, {"$set": fields})

    def get_job(self, job_id: str) -> dict | None:
        return self.c.jobs.find_one({"_id": job_id})

    def claim_job(self, owner: str, lease_seconds: float,
                  job_id: str | None = None) -> dict | None:
        """Take the oldest queued job (or ``job_id``), or one whose holder's lease ran out."""
        # resendAt: if this holder dies, the Celery engine's sweeper re-sends the
        # job as soon as the lease runs out, not only after the last send's delay.
        lease = {"owner": owner, "leaseUntil": now() + timedelta(seconds=lease_seconds),
                 "resendAt": EPOCH}
        only = {"_id": job_id} if job_id else {}
        job = self.c.jobs.find_one_and_update(
            {**only, "state": JobState.QUEUED},
            {"$set": {**lease, "state": JobState.RUNNING}, "$inc": {"attempts": 1}},
            sort=[("createdAt", 1)], return_document=ReturnDocument.AFTER)
        if job is None:
            job = self.c.jobs.find_one_and_update(
                {**only, "state": {"$in": LEASED_JOB_STATES}, "leaseUntil": {"$lt": now()}},
                {"$set": lease, "$inc": {"attempts": 1}},
                sort=[("createdAt", 1)], return_document=ReturnDocument.AFTER)
        return job

    def take_job(self, job_id: str, run_id: str, owner: str, lease_seconds: float) -> dict | None:
        """Run a just-started job in this process instead of queueing it (the CLIs)."""
        return self.c.jobs.find_one_and_update(
            {"_id": job_id, "runId": run_id, "state": JobState.ACCEPTING},
            {"$set": {"state": JobState.RUNNING, "owner": owner,
                      "leaseUntil": now() + timedelta(seconds=lease_seconds)},
             "$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER)

    def renew_lease(self, job_id: str, run_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False when the run was replaced or taken over."""
        result = self.c.jobs.update_one(
            {"_id": job_id, "runId": run_id, "owner": owner},
            {"$set": {"leaseUntil": now() + timedelta(seconds=lease_seconds)}})
        return result.matched_count == 1

    def release_jobs(self, owners: Iterable[str]) -> int:
        """Make the jobs of dead holders claimable at once (their lease expires now)."""
        result = self.c.jobs.update_many(
            {"owner": {"$in": list(owners)}, "state": {"$in": LEASED_JOB_STATES}},
            {"$set": {"leaseUntil": EPOCH}})
        return result.modified_count

    def job_owners(self) -> list[str]:
        return self.c.jobs.distinct("owner", {"state": {"$in": LEASED_JOB_STATES}})

    def end_job(self, job_id: str, run_id: str, state: JobState,
                error: dict | None = None, session: Any = None) -> bool:
        result = self.c.jobs.update_one({"_id": job_id, "runId": run_id},
                                        {"$set": {"state": state, "error": error, "owner": None,
                                                  "finishedAt": now()}}, session=session)
        return result.matched_count == 1

    def end_run(self, job_id: str, run_id: str, state: JobState, error: dict | None,
                target: tuple[str, Any, dict], stream: str, events: list[Event]) -> bool:
        """End the job's run and, if it was still this run, set ``fields`` on its
        target (``("upload" | "version", id, fields)``) and record ``events``,
        in one transaction. False when the run had been replaced."""
        collection = self.c.uploads if target[0] == "upload" else self.c.versions

        def end(session: Any) -> bool:
            if not self.end_job(job_id, run_id, state, error, session):
                return False
            collection.update_one({"_id": to_id(target[1])}, {"$set": target[2]},
                                  session=session)
            self.outbox.add_events(stream, events, session)
            return True
        return self.atomically(end)

    def failed_jobs(self, kinds: Iterable[str], code: str) -> list[dict]:
        """Jobs of ``kinds`` whose last run failed with error ``code``."""
        return list(self.c.jobs.find({"state": JobState.FAILED, "kind": {"$in": list(kinds)},
                                      "error.code": code}))

    def job_counts(self) -> dict[str, int]:
        counts = {state: 0 for state in ACTIVE_JOB_STATES + [JobState.DONE, JobState.FAILED]}
        for row in self.c.jobs.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}]):
            counts[row["_id"]] = row["n"]
        return counts

    def note_sent(self, job_id: str, resend_after: float) -> dict | None:
        """Record that ``job_id`` was just sent to the broker; returns its kind and
        request type (for routing). A worker's sweeper re-sends it if it is still
        waiting ``resend_after`` seconds from now."""
        return self.c.jobs.find_one_and_update(
            {"_id": job_id},
            {"$set": {"resendAt": now() + timedelta(seconds=resend_after), "sends": 1}},
            projection={"kind": 1, "params.request_type": 1},
            return_document=ReturnDocument.AFTER)

    def resend_soon(self, job_id: str) -> None:
        """The send failed (broker away): the next sweep sends the job."""
        self.c.jobs.update_one({"_id": job_id}, {"$set": {"resendAt": EPOCH}})

    def take_resends(self, delay: Callable[[int], float], limit: int = 100) -> list[dict]:
        """Jobs whose broker message may be lost, each taken by one caller only.

        Due: queued, or held by a lease that ran out, and not sent recently.
        Each taken job's next re-send is ``delay(sends)`` seconds away (sends:
        how many times it was sent so far).
        """
        t = now()
        not_recent = {"resendAt": {"$not": {"$gt": t}}}  # also never sent
        fields = {"kind": 1, "params.request_type": 1, "sends": 1}
        due = list(self.c.jobs.find({"state": JobState.QUEUED, **not_recent}, fields, limit=limit))
        due += self.c.jobs.find({"state": {"$in": LEASED_JOB_STATES},
                                 "leaseUntil": {"$lt": t}, **not_recent}, fields, limit=limit)
        taken = []
        for job in due:
            sends = job.get("sends") or 0
            # Compare-and-set on the send count: of many sweepers, one wins.
            won = self.c.jobs.update_one({"_id": job["_id"], "sends": job.get("sends")},
                                         {"$set": {"resendAt": t + timedelta(seconds=delay(sends)),
                                                   "sends": sends + 1}})
            if won.modified_count:
                taken.append(job)
        return taken
