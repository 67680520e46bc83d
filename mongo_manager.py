"""Every MongoDB query of the service, and the indexes those queries need.

Collections (database ``AIData``): the Node.js backend's AnnotationProject,
AnnotationContentUpload, AnnotationTask, AnnotationFrame and
AnnotationDatasetVersion, plus five of ours: ProcessingJob (the durable job
queue: uploads, their segments, dataset builds), AnnotationTaskStaging (tasks
of a run that is not committed yet), ProcessingCommit (the session of each
commit transaction in progress, so that a dead process's can be ended),
EventOutbox (events to send, recorded with the change they report) and
EventSequence (the last event number of each upload or dataset version).
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, TypeVar

import pymongo
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from config import Config
from embedded_db import embedded_uri
from events import Event, EventState
from exceptions import DatabaseUnavailable
from job_states import ACTIVE_JOB_STATES, LEASED_JOB_STATES, JobState, upload_job_id
from processes import owner_id

# A request that died between recording its job and answering never got a
# 202; after this long its "accepting" job no longer blocks a new request.
ACCEPT_TIMEOUT = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A commit transaction open this long belongs to a process that died.
COMMIT_TIMEOUT = timedelta(seconds=60)
# What every other module catches for "the database failed" (so that only this
# module imports pymongo), and the type of the backend's document ids.
DatabaseError = PyMongoError
DocumentId = ObjectId
Method = TypeVar("Method", bound=Callable[..., Any])


def job_busy(job: dict | None) -> bool:
    """A run of this job is active: a new one may start only by replacing it
    (force_write). A request that died while accepting blocks only ACCEPT_TIMEOUT."""
    if job is None or job.get("state") not in ACTIVE_JOB_STATES:
        return False
    return not (job["state"] == JobState.ACCEPTING
                and job.get("createdAt", _EPOCH) < now() - ACCEPT_TIMEOUT)


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A fresh id as the backend writes them (24 hex digits): runs, uploads, boxes."""
    return str(ObjectId())


def object_id_from(text: str) -> ObjectId:
    """The same ObjectId for the same ``text`` (the first 12 bytes of its SHA-1)."""
    return ObjectId(hashlib.sha1(text.encode()).digest()[:12])


def to_id(value: Any) -> Any:
    """A 24-hex string becomes an ObjectId; anything else is kept as is."""
    if isinstance(value, str) and ObjectId.is_valid(value) and len(value) == 24:
        return ObjectId(value)
    return value


def deadline(seconds: float) -> Any:
    """A context manager: every database operation inside it (in this thread or
    greenlet) ends within ``seconds`` altogether, waits for a server included;
    past it a DatabaseError whose ``timeout`` is true (``is_timeout``).
    pymongo's client-side operation timeout (CSOT)."""
    return pymongo.timeout(seconds)


def is_timeout(exc: BaseException) -> bool:
    """The database did not answer in time (a deadline, a socket or selection timeout)."""
    return bool(getattr(exc, "timeout", False))


def _idempotent(method: Method) -> Method:
    """A method safe to run again whole. A job's manager (``retry_seconds``)
    runs it again when the connection was lost (an outage that interrupted
    it): pymongo retries a single-document write once, after waiting for a
    server, but never a multi-document one (delete_many, update_many)."""
    @functools.wraps(method)
    def again(self: "MongoManager", *args: Any, **kwargs: Any) -> Any:
        end = time.monotonic() + self.retry_seconds
        while True:
            try:
                return method(self, *args, **kwargs)
            except ConnectionFailure:
                if time.monotonic() >= end:
                    raise
                time.sleep(0.5)  # the next try's server selection waits for the server
    return again  # type: ignore[return-value]


class MongoManager:
    def __init__(self, uri: str, database: str, timeout_ms: int = 5000,
                 record_events: bool = False, *, connect_timeout_ms: int | None = None,
                 socket_timeout_ms: int = 0, retry_seconds: float = 0.0) -> None:
        self.retry_seconds = retry_seconds  # see _idempotent
        # No socket timeout by default: a job's write waits out a short freeze;
        # the heartbeat (connectTimeoutMS) notices a dead server and interrupts
        # it, and retryable writes retry it once a server is selected again.
        # journal: a write is acknowledged once it is in the server's journal,
        # so a database that dies (kill -9, power) keeps every write we were
        # told of. Without it SecantusDB lost the writes of the last moments
        # before a kill -9 (a staged task: the run could not finish); a replica
        # set's default (w: majority) journals anyway. About 0.4 ms a write.
        self.client = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=connect_timeout_ms or timeout_ms,
            socketTimeoutMS=socket_timeout_ms or None, journal=True, tz_aware=True)
        self.db = self.client[database]
        self.uploads = self.db["AnnotationContentUpload"]
        self.projects = self.db["AnnotationProject"]
        self.tasks = self.db["AnnotationTask"]
        self.frames = self.db["AnnotationFrame"]
        self.jobs = self.db["ProcessingJob"]
        self.staging = self.db["AnnotationTaskStaging"]
        self.versions = self.db["AnnotationDatasetVersion"]
        self.commits = self.db["ProcessingCommit"]  # open commit transactions
        self.outbox = self.db["EventOutbox"]
        self.sequences = self.db["EventSequence"]
        # events.url set: state changes record their events (else nothing would send them)
        self.events_on = record_events

    def ensure_indexes(self) -> None:
        self.tasks.create_index([("uploadId", 1), ("taskName", 1)], unique=True)
        self.tasks.create_index([("projectId", 1)])
        self.frames.create_index([("taskId", 1), ("frameId", 1)], unique=True)
        self.uploads.create_index([("projectId", 1)])
        self.uploads.create_index([("finishedAt", -1)])  # metrics: recent finished uploads
        self.jobs.create_index([("state", 1), ("createdAt", 1)])
        self.jobs.create_index([("owner", 1)])
        self.jobs.create_index([("parent", 1), ("state", 1)])
        self.staging.create_index([("uploadId", 1), ("runId", 1), ("number", 1)], unique=True)
        self.versions.create_index([("taskStatus.state", 1)])
        self.outbox.create_index([("stream", 1), ("sequence", 1)], unique=True)
        self.outbox.create_index([("state", 1), ("createdAt", 1)])

    def ping(self) -> None:
        self.client.admin.command("ping")

    def close(self) -> None:
        self.client.close()

    # -- uploads -----------------------------------------------------------

    def get_upload(self, upload_id: Any) -> dict | None:
        return self.uploads.find_one({"_id": to_id(upload_id)})

    def _record_upload(self, session: Any, upload_id: Any, project_id: Any,
                       fields: dict) -> Any:
        """The upload document of a newly accepted request (status 0, queued);
        returns the project it was under before (None: a new upload)."""
        state = {"projectId": to_id(project_id), "status": 0, "progress": 0, "stage": "queued",
                 "startedAt": None, "finishedAt": None, "errorMessage": None,
                 **fields}
        before = self.uploads.find_one_and_update(
            {"_id": to_id(upload_id)}, {"$set": state, "$setOnInsert": {"createdAt": now(),
                                                                       "readyTaskCount": 0}},
            projection={"projectId": 1}, upsert=True, session=session)
        return (before or {}).get("projectId")

    def _list_upload(self, upload_id: Any, project_id: Any, moved_from: Any) -> None:
        """The project lists the upload; one it moved from (force_write) no longer.
        Outside the accept's transaction: every new upload of a project writes
        its list, and concurrent accepts would conflict on it."""
        upload, project = to_id(upload_id), to_id(project_id)
        if moved_from is not None and moved_from != project:
            self.projects.update_one({"_id": moved_from}, {"$pull": {"contentUploads": upload}})
        self.projects.update_one({"_id": project}, {"$addToSet": {"contentUploads": upload}},
                                 upsert=True)

    def update_upload(self, upload_id: Any, **fields: Any) -> None:
        self.uploads.update_one({"_id": to_id(upload_id)}, {"$set": fields})

    def ready_task_count(self, upload_id: Any) -> int:
        """Tasks of the upload's run published so far (jobs/publish.py)."""
        upload = self.uploads.find_one({"_id": to_id(upload_id)}, {"readyTaskCount": 1})
        return (upload or {}).get("readyTaskCount") or 0

    def count_tasks(self, upload_id: Any) -> int:
        return self.tasks.count_documents({"uploadId": to_id(upload_id)})

    # -- jobs --------------------------------------------------------------

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
                  "attempts": 0, "owner": None, "leaseUntil": _EPOCH, "error": None,
                  "createdAt": now()}
        # A new run starts whole: no segments or single-pass mark of an old run.
        update = {"$set": fields, "$unset": {"segments": "", "singlePass": "",
                                                      "progressive": ""}}
        if replace_active:
            self.jobs.update_one({"_id": job_id}, update, upsert=True)
            return True
        if seen is None:  # none was there: insert, unless another request just did
            try:
                self.jobs.update_one({"_id": job_id, "runId": {"$exists": False}}, update,
                                     upsert=True)
                return True
            except DuplicateKeyError:
                return False
        if job_busy(seen):
            return False
        result = self.jobs.update_one({"_id": job_id, "runId": seen.get("runId"),
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
            result = self.jobs.update_one(
                {"_id": job_id, "runId": run_id, "state": JobState.ACCEPTING},
                {"$set": {"state": JobState.QUEUED}}, session=session)
            if result.matched_count:
                if upload is not None:
                    recorded.append(self._record_upload(
                        session, upload["upload_id"], upload["project_id"], upload["fields"]))
                self.add_events(stream, list(events), session)
        self.atomically(queue)
        if recorded and not upload.get("listed"):
            self._list_upload(upload["upload_id"], upload["project_id"], recorded[0])

    def set_job_fields(self, job_id: str, run_id: str, **fields: Any) -> None:
        self.jobs.update_one({"_id": job_id, "runId": run_id}, {"$set": fields})

    def get_job(self, job_id: str) -> dict | None:
        return self.jobs.find_one({"_id": job_id})

    def claim_job(self, owner: str, lease_seconds: float,
                  job_id: str | None = None) -> dict | None:
        """Take the oldest queued job (or ``job_id``), or one whose holder's lease ran out."""
        # resendAt: if this holder dies, the Celery engine's sweeper re-sends the
        # job as soon as the lease runs out, not only after the last send's delay.
        lease = {"owner": owner, "leaseUntil": now() + timedelta(seconds=lease_seconds),
                 "resendAt": _EPOCH}
        only = {"_id": job_id} if job_id else {}
        job = self.jobs.find_one_and_update(
            {**only, "state": JobState.QUEUED},
            {"$set": {**lease, "state": JobState.RUNNING}, "$inc": {"attempts": 1}},
            sort=[("createdAt", 1)], return_document=ReturnDocument.AFTER)
        if job is None:
            job = self.jobs.find_one_and_update(
                {**only, "state": {"$in": LEASED_JOB_STATES}, "leaseUntil": {"$lt": now()}},
                {"$set": lease, "$inc": {"attempts": 1}},
                sort=[("createdAt", 1)], return_document=ReturnDocument.AFTER)
        return job

    def take_job(self, job_id: str, run_id: str, owner: str, lease_seconds: float) -> dict | None:
        """Run a just-started job in this process instead of queueing it (the CLIs)."""
        return self.jobs.find_one_and_update(
            {"_id": job_id, "runId": run_id, "state": JobState.ACCEPTING},
            {"$set": {"state": JobState.RUNNING, "owner": owner,
                      "leaseUntil": now() + timedelta(seconds=lease_seconds)},
             "$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER)

    def renew_lease(self, job_id: str, run_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False when the run was replaced or taken over."""
        result = self.jobs.update_one(
            {"_id": job_id, "runId": run_id, "owner": owner},
            {"$set": {"leaseUntil": now() + timedelta(seconds=lease_seconds)}})
        return result.matched_count == 1

    def release_jobs(self, owners: Iterable[str]) -> int:
        """Make the jobs of dead holders claimable at once (their lease expires now)."""
        result = self.jobs.update_many(
            {"owner": {"$in": list(owners)}, "state": {"$in": LEASED_JOB_STATES}},
            {"$set": {"leaseUntil": _EPOCH}})
        return result.modified_count

    def job_owners(self) -> list[str]:
        return self.jobs.distinct("owner", {"state": {"$in": LEASED_JOB_STATES}})

    def commit_owners(self) -> list[str]:
        return self.commits.distinct("owner")

    def end_job(self, job_id: str, run_id: str, state: JobState,
                error: dict | None = None, session: Any = None) -> bool:
        result = self.jobs.update_one({"_id": job_id, "runId": run_id},
                                      {"$set": {"state": state, "error": error, "owner": None,
                                                "finishedAt": now()}}, session=session)
        return result.matched_count == 1

    def end_run(self, job_id: str, run_id: str, state: JobState, error: dict | None,
                target: tuple[str, Any, dict], stream: str, events: list[Event]) -> bool:
        """End the job's run and, if it was still this run, set ``fields`` on its
        target (``("upload" | "version", id, fields)``) and record ``events``,
        in one transaction. False when the run had been replaced."""
        collection = self.uploads if target[0] == "upload" else self.versions

        def end(session: Any) -> bool:
            if not self.end_job(job_id, run_id, state, error, session):
                return False
            collection.update_one({"_id": to_id(target[1])}, {"$set": target[2]},
                                  session=session)
            self.add_events(stream, events, session)
            return True
        return self.atomically(end)

    # -- segments of a run (jobs/segments.py) ---------------------------------

    def fan_out(self, job_id: str, run_id: str, owner: str, kind: str,
                children: list[tuple[str, dict]]) -> bool:
        """Queue a run's segment jobs and park the run as "waiting", in one
        transaction: a job process never claims a segment whose parent is not
        waiting yet (it would take the run for ended and cancel the segment).

        Idempotent: a retried fan-out finds its children (same ids) in place.
        """
        def fan(session: Any) -> bool:
            for child_id, params in children:
                existing = self.jobs.find_one({"_id": child_id}, {"runId": 1}, session=session)
                if existing is not None and existing.get("runId") == run_id:
                    continue  # already queued for this run
                fields = {"kind": kind, "params": params, "runId": run_id, "parent": job_id,
                          "state": JobState.QUEUED, "attempts": 0, "owner": None,
                          "leaseUntil": _EPOCH, "error": None, "createdAt": now()}
                self.jobs.update_one({"_id": child_id}, {"$set": fields}, upsert=True,
                                     session=session)
            result = self.jobs.update_one(
                {"_id": job_id, "runId": run_id, "owner": owner},
                {"$set": {"state": JobState.WAITING, "segments": len(children), "owner": None}},
                session=session)
            return result.matched_count == 1
        return self.atomically(fan)

    def parent_waiting(self, job_id: str, run_id: str) -> bool:
        return self.jobs.count_documents({"_id": job_id, "runId": run_id,
                                          "state": JobState.WAITING}) == 1

    def segment_owners(self, job_id: str, run_id: str) -> list[str]:
        """The holders of the run's segments being cut now."""
        return [doc["owner"] for doc in self.jobs.find(
            {"parent": job_id, "runId": run_id, "state": JobState.RUNNING}, {"owner": 1})
            if doc.get("owner")]

    def count_done_segments(self, job_id: str, run_id: str) -> int:
        return self.jobs.count_documents({"parent": job_id, "state": JobState.DONE,
                                          "runId": run_id})

    def claim_for_commit(self, job_id: str, run_id: str, owner: str,
                         lease_seconds: float) -> dict | None:
        return self.jobs.find_one_and_update(
            {"_id": job_id, "runId": run_id, "state": JobState.WAITING},
            {"$set": {"state": JobState.RUNNING, "owner": owner,
                      "leaseUntil": now() + timedelta(seconds=lease_seconds)}},
            return_document=ReturnDocument.AFTER)

    def wait_for_segments(self, job_id: str, run_id: str, owner: str) -> None:
        self.jobs.update_one({"_id": job_id, "runId": run_id, "owner": owner},
                             {"$set": {"state": JobState.WAITING, "owner": None}})

    def requeue_committable(self) -> int:
        """Queue the waiting runs whose segments are all done: the last segment
        died before it could claim the commit. Returns how many."""
        requeued = 0
        for job in self.jobs.find({"state": JobState.WAITING}, {"runId": 1, "segments": 1}):
            if self.count_done_segments(job["_id"], job["runId"]) >= job.get("segments", 0):
                requeued += self.jobs.update_one(
                    {"_id": job["_id"], "runId": job["runId"], "state": JobState.WAITING},
                    {"$set": {"state": JobState.QUEUED}}).modified_count
        return requeued

    def requeue_single_pass(self, job_id: str, run_id: str) -> bool:
        """Cut the run in one pass after all: its segments stop, its staged tasks stay."""
        result = self.jobs.update_one(
            {"_id": job_id, "runId": run_id, "state": JobState.WAITING},
            {"$set": {"state": JobState.QUEUED, "singlePass": True}, "$unset": {"segments": ""}})
        return result.matched_count == 1

    def failed_jobs(self, kinds: Iterable[str], code: str) -> list[dict]:
        """Jobs of ``kinds`` whose last run failed with error ``code``."""
        return list(self.jobs.find({"state": JobState.FAILED, "kind": {"$in": list(kinds)},
                                    "error.code": code}))

    def count_staged(self, upload_id: Any, run_id: str) -> int:
        return self.staging.count_documents({"uploadId": to_id(upload_id), "runId": run_id})

    def job_counts(self) -> dict[str, int]:
        counts = {state: 0 for state in ACTIVE_JOB_STATES + [JobState.DONE, JobState.FAILED]}
        for row in self.jobs.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}]):
            counts[row["_id"]] = row["n"]
        return counts

    # -- broker sends (Celery engine) ----------------------------------------

    def note_sent(self, job_id: str, resend_after: float) -> dict | None:
        """Record that ``job_id`` was just sent to the broker; returns its kind and
        request type (for routing). A worker's sweeper re-sends it if it is still
        waiting ``resend_after`` seconds from now."""
        return self.jobs.find_one_and_update(
            {"_id": job_id},
            {"$set": {"resendAt": now() + timedelta(seconds=resend_after), "sends": 1}},
            projection={"kind": 1, "params.request_type": 1},
            return_document=ReturnDocument.AFTER)

    def resend_soon(self, job_id: str) -> None:
        """The send failed (broker away): the next sweep sends the job."""
        self.jobs.update_one({"_id": job_id}, {"$set": {"resendAt": _EPOCH}})

    def take_resends(self, resend_after: float, limit: int = 100) -> list[dict]:
        """Jobs whose broker message may be lost, each taken by one caller only.

        Due: queued, or held by a lease that ran out, and not sent recently.
        Each taken job's next re-send is twice as far away as its last one, so
        a long backlog gains few duplicate messages.
        """
        t = now()
        not_recent = {"resendAt": {"$not": {"$gt": t}}}  # also never sent
        fields = {"kind": 1, "params.request_type": 1, "sends": 1}
        due = list(self.jobs.find({"state": JobState.QUEUED, **not_recent}, fields, limit=limit))
        due += self.jobs.find({"state": {"$in": LEASED_JOB_STATES},
                               "leaseUntil": {"$lt": t}, **not_recent}, fields, limit=limit)
        taken = []
        for job in due:
            sends = job.get("sends") or 0
            delay = resend_after * 2 ** min(sends, 6)
            # Compare-and-set on the send count: of many sweepers, one wins.
            won = self.jobs.update_one({"_id": job["_id"], "sends": job.get("sends")},
                                       {"$set": {"resendAt": t + timedelta(seconds=delay),
                                                 "sends": sends + 1}})
            if won.modified_count:
                taken.append(job)
        return taken

    # -- staged tasks of a run ---------------------------------------------

    def staged_tasks(self, upload_id: Any, run_id: str, session: Any = None) -> list[dict]:
        return list(self.staging.find({"uploadId": to_id(upload_id), "runId": run_id},
                                      sort=[("number", 1)], session=session))

    @_idempotent
    def stage_task(self, upload_id: Any, run_id: str, number: int, task: dict,
                   frames: list[dict]) -> None:
        """Record a finished task of a run: its frames first, then the task.

        Idempotent: a resumed run that redoes task ``number`` (same
        deterministic task id) first drops the frames its crashed attempt left.
        """
        self.frames.delete_many({"taskId": task["_id"]})
        if frames:
            self.frames.insert_many(frames, ordered=False)
        self.staging.replace_one({"_id": task["_id"]},
                                 {"uploadId": to_id(upload_id), "runId": run_id,
                                  "number": number, "task": task}, upsert=True)

    def run_is_current(self, upload_id: Any, run_id: str) -> bool:
        """The upload's job is still on ``run_id`` and active (not replaced, not ended)."""
        return bool(self.jobs.count_documents(
            {"_id": upload_job_id(str(upload_id)), "runId": run_id,
             "state": {"$in": ACTIVE_JOB_STATES}}, limit=1))

    @_idempotent
    def unstage_if_ended(self, upload_id: Any, run_id: str, task_id: Any) -> bool:
        """After ``stage_task``: when the run has ended meanwhile (replaced or
        failed), remove what was just staged, unless published, and say so. A
        segment still cutting can stage a task after its run's ``discard_run``,
        which would then never be undone (frames matching no task)."""
        if self.run_is_current(upload_id, run_id):
            return False
        if not self.tasks.count_documents({"_id": task_id}, limit=1):  # published: final
            self.frames.delete_many({"taskId": task_id})
        self.staging.delete_one({"_id": task_id, "runId": run_id})
        return True

    @_idempotent
    def discard_run(self, upload_id: Any, run_id: str) -> None:
        """Forget everything a run staged (it failed or was replaced), except the
        frames of the tasks it published (jobs/publish.py): those are final."""
        staged = [doc["_id"] for doc in self.staged_tasks(upload_id, run_id)]
        published = set(self.tasks.distinct("_id", {"_id": {"$in": staged}}))
        self.frames.delete_many({"taskId": {"$in": [i for i in staged if i not in published]}})
        self.staging.delete_many({"uploadId": to_id(upload_id), "runId": run_id})

    def commit_run(self, job_id: str, upload_id: Any, run_id: str, upload_fields: dict,
                   events: list[Event] = ()) -> bool:
        """Swap the upload's tasks for the run's staged tasks, atomically.

        Fenced on the job's ``runId``: a run that was replaced commits nothing.
        Returns False in that case.
        """
        # Standalone mongod: delete-then-insert never shows old and new tasks
        # together, only (for a moment) fewer tasks.
        return self.atomically(
            lambda s: self._commit(s, job_id, upload_id, run_id, upload_fields, events))

    def end_abandoned_commits(self, dead_owners: Iterable[str]) -> int:
        """Abort the commit transactions of dead processes, and of any commit
        older than COMMIT_TIMEOUT (a holder on another host that died)."""
        query = [{"owner": {"$in": list(dead_owners)}}, {"at": {"$lt": now() - COMMIT_TIMEOUT}}]
        ended = 0
        for entry in [doc for q in query for doc in self.commits.find(q)]:
            try:
                self.client.admin.command("killSessions", [entry["lsid"]])
            except OperationFailure:
                pass  # the session is gone already
            ended += self.commits.delete_one({"_id": entry["_id"]}).deleted_count
        return ended

    def _commit(self, session: Any, job_id: str, upload_id: Any, run_id: str,
                upload_fields: dict, events: list[Event]) -> bool:
        job = self.jobs.find_one({"_id": job_id, "runId": run_id}, session=session)
        if job is None:
            return False
        upload = to_id(upload_id)
        old = [doc["_id"] for doc in self.tasks.find({"uploadId": upload}, {"_id": 1},
                                                     session=session)]
        staged = self.staged_tasks(upload, run_id, session)
        self.tasks.delete_many({"uploadId": upload}, session=session)
        if staged:
            self.tasks.insert_many([doc["task"] for doc in staged], session=session)
        self.uploads.update_one({"_id": upload}, {"$set": upload_fields}, session=session)
        self.jobs.update_one({"_id": job_id},
                             {"$set": {"state": JobState.COMMITTED, "oldTasks": old}},
                             session=session)
        self.add_events(str(upload_id), list(events), session)
        return True

    def publish_tasks(self, job_id: str, run_id: str, upload_id: Any, after: int,
                      staged: list[dict], upload_fields: dict, events: list[Event],
                      final: bool = False) -> bool:
        """Make the run's staged tasks numbered ``after + 1 ...`` visible, in one
        transaction with their events; ``final``: the run is committed with them.

        Fenced twice: on the job's run (a replaced or failed run publishes
        nothing) and on the upload's ``readyTaskCount`` being ``after`` (two
        processes publishing the same tasks: one of them does). False if not.
        """
        return self.atomically(lambda session: self._publish(
            session, job_id, run_id, to_id(upload_id), after, staged, upload_fields, events,
            final))

    def _publish(self, session: Any, job_id: str, run_id: str, upload: Any, after: int,
                 staged: list[dict], upload_fields: dict, events: list[Event],
                 final: bool) -> bool:
        job = self.jobs.find_one({"_id": job_id, "runId": run_id,
                                  "state": {"$in": [JobState.RUNNING, JobState.WAITING]}},
                                 {"_id": 1}, session=session)
        shown = self.uploads.find_one({"_id": upload}, {"readyTaskCount": 1},
                                      session=session)
        if job is None or shown is None or (shown.get("readyTaskCount") or 0) != after:
            return False
        if staged:
            self.tasks.insert_many([doc["task"] for doc in staged], session=session)
        self.uploads.update_one({"_id": upload}, {"$set": {
            "readyTaskCount": after + len(staged), **upload_fields}}, session=session)
        if final:
            self.jobs.update_one({"_id": job_id}, {"$set": {
                "state": JobState.COMMITTED, "oldTasks": []}}, session=session)
        self.add_events(str(upload), events, session)
        return True

    @_idempotent
    def cleanup_after_commit(self, job_id: str, upload_id: Any, run_id: str) -> None:
        """Remove what the committed run replaced: old frames, staging documents."""
        job = self.jobs.find_one({"_id": job_id}) or {}
        old = job.get("oldTasks") or []
        if old:
            self.frames.delete_many({"taskId": {"$in": old}})
        self.staging.delete_many({"uploadId": to_id(upload_id), "runId": run_id})
        self.jobs.update_one({"_id": job_id}, {"$unset": {"oldTasks": ""}})

    # -- auto-annotations (request_type 2) ------------------------------------

    @_idempotent
    def write_auto_boxes(self, updates: list[tuple[dict, list[dict]]], source: str) -> None:
        """Replace ``source``'s boxes on each frame; user boxes stay, and frames a
        person marked ``isUserAnnotated`` are not touched at all."""
        ops = []
        for frame, new in updates:
            if frame.get("isUserAnnotated"):
                continue
            kept = [b for b in frame.get("boxes") or [] if b.get("source") != source]
            ops.append(pymongo.UpdateOne(
                {"_id": frame["_id"], "isUserAnnotated": {"$ne": True}},
                {"$set": {"boxes": kept + new, "isEmpty": not (kept or new)}}))
        if ops:
            self.frames.bulk_write(ops, ordered=False)

    @_idempotent
    def set_boxes(self, updates: list[tuple[ObjectId, list[dict]]]) -> None:
        """Set the boxes of each frame (track ids added to its auto boxes, gaps
        filled); a frame a person marked ``isUserAnnotated`` is not touched."""
        ops = [pymongo.UpdateOne({"_id": frame_id, "isUserAnnotated": {"$ne": True}},
                                 {"$set": {"boxes": boxes, "isEmpty": not boxes}})
               for frame_id, boxes in updates]
        for start in range(0, len(ops), 1000):
            self.frames.bulk_write(ops[start:start + 1000], ordered=False)

    def set_annotation_version(self, task_id: ObjectId, version: int) -> None:
        self.tasks.update_one({"_id": task_id}, {"$set": {"AutoAnnotationVersion": version}})

    def complete_run(self, job_id: str, run_id: str, upload_id: Any, upload_fields: dict,
                     events: list[Event] = ()) -> bool:
        """End a run that changed no tasks (request_type 2), fenced on its runId."""
        def complete(session: Any) -> bool:
            result = self.jobs.update_one({"_id": job_id, "runId": run_id},
                                          {"$set": {"state": JobState.COMMITTED}},
                                          session=session)
            if result.matched_count:
                self.uploads.update_one({"_id": to_id(upload_id)}, {"$set": upload_fields},
                                        session=session)
                self.add_events(str(upload_id), list(events), session)
            return bool(result.matched_count)
        return self.atomically(complete)

    # -- reads for the API -------------------------------------------------

    def tasks_of(self, upload_id: Any) -> list[dict]:
        return list(self.tasks.find({"uploadId": to_id(upload_id)}).sort("frameStart", 1))

    def frames_of(self, task_id: ObjectId) -> list[dict]:
        return list(self.frames.find({"taskId": task_id}).sort("frameId", 1))

    def boxes_of(self, task_ids: list) -> list[dict]:
        """The frames of ``task_ids`` (their boxes only), tasks in that order, in
        one query."""
        order = {task_id: i for i, task_id in enumerate(task_ids)}
        frames = self.frames.find({"taskId": {"$in": list(task_ids)}},
                                  {"taskId": 1, "frameId": 1, "boxes": 1, "isUserAnnotated": 1})
        return sorted(frames, key=lambda f: (order[f["taskId"]], f["frameId"]))

    # -- metrics -----------------------------------------------------------

    def recent_timings(self, since: datetime, limit: int) -> list[dict]:
        """``timings`` of the uploads completed since ``since``, newest first."""
        cursor = self.uploads.find({"finishedAt": {"$gte": since}, "status": 1},
                                   {"timings": 1, "_id": 0}).sort("finishedAt", -1)
        return [doc["timings"] for doc in cursor.limit(limit) if doc.get("timings")]


    # -- dataset versions ----------------------------------------------------

    def get_version(self, version_id: Any) -> dict | None:
        return self.versions.find_one({"_id": to_id(version_id)})

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
                found.update((t["_id"], t) for t in self.tasks.find({key: {"$in": ids}, **audit}))
        return sorted(found.values(), key=lambda t: (str(t["uploadId"]), t.get("frameStart", 0),
                                                     t["taskName"]))

    def update_version(self, version_id: Any, **fields: Any) -> None:
        self.versions.update_one({"_id": to_id(version_id)}, {"$set": fields})

    def finish_version(self, version_id: Any, fields: dict, stream: str,
                       events: list[Event]) -> None:
        """The version's final fields and its event (dataset.completed), together."""
        def finish(session: Any) -> None:
            self.versions.update_one({"_id": to_id(version_id)}, {"$set": fields},
                                     session=session)
            self.add_events(stream, events, session)
        self.atomically(finish)

    def set_version_task(self, version_id: Any, index: int, **fields: Any) -> None:
        """Set fields of entry ``index`` of ``taskStatus.tasks`` (an index path:
        the embedded server has no positional ``$`` for nested arrays)."""
        self.versions.update_one({"_id": to_id(version_id)}, {"$set": {
            f"taskStatus.tasks.{index}.{name}": value for name, value in fields.items()}})

    def versions_to_finish(self) -> list[str]:
        """Builds a crash left pending, and builds the store failed (retryable)."""
        pending = self.versions.find({"taskStatus.state": "pending"}, {"_id": 1})
        failed = self.versions.find({"taskStatus.state": "error", "error.retryable": True},
                                    {"_id": 1})
        return [str(doc["_id"]) for doc in list(pending) + list(failed)]

    @_idempotent
    def set_dataset_version(self, task_ids: list, version_id: Any) -> None:
        """Exactly ``task_ids`` list the version in ``datasetVersions``: a task a
        rebuild left out (rejected meanwhile) no longer does."""
        version = to_id(version_id)
        self.tasks.update_many({"_id": {"$in": task_ids}},
                               {"$addToSet": {"datasetVersions": version}})
        self.tasks.update_many({"datasetVersions": version, "_id": {"$nin": task_ids}},
                               {"$pull": {"datasetVersions": version}})

    # -- transactions ----------------------------------------------------------

    def atomically(self, action: Any) -> Any:
        """``action(session)`` in one transaction (retried on a write conflict);
        on a standalone mongod, which has none, without one."""
        key = new_id()
        with self.client.start_session() as session:
            # Recorded first, outside the transaction and away from the documents
            # it locks: should this process die inside it, ``end_abandoned_commits``
            # ends the session, so its locks do not outlive it (SecantusDB kept
            # them for minutes; mongod until the transaction times out).
            self.commits.insert_one({"_id": key, "lsid": session.session_id,
                                     "owner": owner_id(), "at": now()})
            try:
                return session.with_transaction(action)
            except OperationFailure as exc:
                if exc.code != 20:  # 20: transactions need a replica set
                    raise
            finally:
                self.commits.delete_one({"_id": key})
        return action(None)

    # -- the event outbox (events.py; sent by engines/deliverer.py) ------------

    def add_events(self, stream: str, events: list[Event], session: Any = None) -> None:
        """Record ``events`` of ``stream`` with the next sequence numbers. Called
        inside the transaction of the change they report, so both or neither
        happen and the numbers have no gap."""
        if not self.events_on or not events:
            return
        counter = self.sequences.find_one_and_update(
            {"_id": stream}, {"$inc": {"sequence": len(events)}}, upsert=True,
            return_document=ReturnDocument.AFTER, session=session)
        first = counter["sequence"] - len(events) + 1
        at = now()
        self.outbox.insert_many([{
            "_id": f"msg_{new_id()}", "stream": stream, "sequence": first + i, "type": str(kind),
            "data": data, "state": EventState.PENDING, "attempts": 0, "createdAt": at,
            "nextAttemptAt": at, "leaseUntil": _EPOCH, "owner": None, "lastError": None}
            for i, (kind, data) in enumerate(events)], session=session)

    def record_events(self, stream: str, events: list[Event]) -> None:
        """``add_events`` on its own (the change it reports is already durable)."""
        if self.events_on and events:
            self.atomically(lambda s: self.add_events(stream, events, s))

    def event_heads(self, limit: int = 500) -> list[dict]:
        """The first pending event of each stream (of the oldest ``limit`` pending):
        an event is sent only once every earlier one of its stream is delivered
        or dead, so each stream arrives in order."""
        heads: dict[str, dict] = {}
        for event in self.outbox.find({"state": EventState.PENDING}).sort("createdAt", 1) \
                .limit(limit):
            head = heads.get(event["stream"])
            if head is None or event["sequence"] < head["sequence"]:
                heads[event["stream"]] = event
        return sorted(heads.values(), key=lambda e: e["nextAttemptAt"])

    def stream_head(self, stream: str) -> dict | None:
        return self.outbox.find_one({"stream": stream, "state": EventState.PENDING},
                                    sort=[("sequence", 1)])

    def claim_event(self, event_id: str, owner: str, lease_seconds: float) -> dict | None:
        """Take a due event for one attempt (one sender per event)."""
        at = now()
        return self.outbox.find_one_and_update(
            {"_id": event_id, "state": EventState.PENDING, "nextAttemptAt": {"$lte": at},
             "leaseUntil": {"$lte": at}},
            {"$set": {"owner": owner, "leaseUntil": at + timedelta(seconds=lease_seconds)},
             "$inc": {"attempts": 1}}, return_document=ReturnDocument.AFTER)

    def event_sent(self, event_id: str, owner: str) -> None:
        self.outbox.update_one({"_id": event_id, "owner": owner},
                               {"$set": {"state": EventState.DELIVERED, "deliveredAt": now(),
                                         "leaseUntil": _EPOCH, "lastError": None}})

    def event_not_sent(self, event_id: str, owner: str, error: str,
                       retry_in: float | None) -> None:
        """An attempt failed: try again in ``retry_in`` seconds, or (None) it is dead."""
        fields: dict[str, Any] = {"lastError": error, "leaseUntil": _EPOCH}
        if retry_in is None:
            fields["state"] = EventState.DEAD
        else:
            fields["nextAttemptAt"] = now() + timedelta(seconds=retry_in)
        self.outbox.update_one({"_id": event_id, "owner": owner}, {"$set": fields})

    def list_events(self, state: str, limit: int) -> list[dict]:
        return list(self.outbox.find({"state": state}).sort("createdAt", 1).limit(limit))

    def redeliver_event(self, event_id: str) -> dict | None:
        """Send an event again (dead or not), as soon as its stream's turn comes."""
        return self.outbox.find_one_and_update(
            {"_id": event_id},
            {"$set": {"state": EventState.PENDING, "attempts": 0, "nextAttemptAt": now(),
                      "leaseUntil": _EPOCH, "owner": None}},
            return_document=ReturnDocument.AFTER)


_managers: dict[tuple[int, str, str, bool], MongoManager] = {}
_lock = threading.Lock()


def get_mongo(config: Config, jobs: bool = False) -> MongoManager:
    """This process's manager, created lazily (pymongo is not fork-safe).

    ``jobs``: the manager a job process runs its jobs with: its operations wait
    up to ``mongodb.job_wait_seconds`` for a server that is away (a frozen or
    restarting database) instead of ``mongodb.timeout_ms``, so a running job
    carries on after a short outage instead of failing or being run again.
    """
    settings = config.mongodb
    key = (os.getpid(), settings.uri, settings.database, jobs)
    manager = _managers.get(key)
    if manager is not None:
        return manager
    with _lock:
        manager = _managers.get(key)
        if manager is None:
            selection_ms = int(settings.job_wait_seconds * 1000) if jobs else settings.timeout_ms
            manager = MongoManager(resolve_uri(config), settings.database, selection_ms,
                                   config.events.enabled,
                                   connect_timeout_ms=settings.connect_timeout_ms,
                                   socket_timeout_ms=settings.socket_timeout_ms,
                                   retry_seconds=selection_ms / 1000 if jobs else 0.0)
            try:
                manager.ensure_indexes()
            except PyMongoError as exc:
                manager.close()
                raise DatabaseUnavailable(f"the database is unreachable: {exc}") from exc
            _managers[key] = manager
    return manager


def close_mongo(config: Config) -> None:
    """Close and forget this process's manager for ``config`` (tests: one
    database each, and a server that caps its connections)."""
    with _lock:
        managers = [_managers.pop((os.getpid(), config.mongodb.uri, config.mongodb.database,
                                   jobs), None) for jobs in (False, True)]
    for manager in managers:
        if manager is not None:
            manager.close()


def resolve_uri(config: Config) -> str:
    if config.mongodb.uri == "embedded":
        return embedded_uri(config.contents_dir / "db")
    return config.mongodb.uri
