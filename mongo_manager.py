"""The one entry point to MongoDB: the connection, the indexes, transactions,
ids, and one store per concept (``stores/``, which only this module imports),
which together hold every query of the service.

Collections (database ``AIData``): the Node.js backend's AnnotationProject,
AnnotationContentUpload, AnnotationTask, AnnotationFrame and
AnnotationDatasetVersion, plus five of ours: ProcessingJob (the durable job
queue: uploads, their segments, dataset builds), AnnotationTaskStaging (tasks
of a run that is not committed yet), ProcessingCommit (the session of each
transaction in progress, so that a dead process's can be ended),
EventOutbox (events to send, recorded with the change they report) and
EventSequence (the last event number of each upload or dataset version).

The stores: ``uploads`` (uploads, their projects' lists), ``jobs`` (the job
queue, leases, broker sends), ``segments`` (a run's segment jobs), ``runs``
(a run's staging, commit and publications), ``frames`` (published tasks, their
frames' boxes), ``datasets`` (dataset versions) and ``outbox`` (events). A
write that shares a transaction with another takes its ``session``.
"""
from __future__ import annotations

import os
import threading
from datetime import timedelta
from typing import Any, Iterable

import pymongo
from bson import ObjectId
from pymongo.errors import OperationFailure, PyMongoError

from config import Config
from embedded_db import embedded_uri
from exceptions import DatabaseUnavailable
from processes import owner_id
from stores.common import Collections, new_id, now, object_id_from, to_id
from stores.datasets import DatasetStore
from stores.frames import FrameStore
from stores.jobs import JobStore
from stores.outbox import OutboxStore
from stores.runs import RunStore
from stores.segments import SegmentStore
from stores.uploads import UploadStore

__all__ = ["DatabaseError", "DocumentId", "MongoManager", "close_mongo", "deadline",
           "get_mongo", "is_timeout", "new_id", "now", "object_id_from", "owner_id",
           "resolve_uri", "to_id"]

# A transaction open this long belongs to a process that died.
TRANSACTION_TIMEOUT = timedelta(seconds=60)
# What every other module catches for "the database failed" (so that only this
# module imports pymongo), and the type of the backend's document ids.
DatabaseError = PyMongoError
DocumentId = ObjectId


def deadline(seconds: float) -> Any:
    """A context manager: every database operation inside it (in this thread or
    greenlet) ends within ``seconds`` altogether, waits for a server included;
    past it a DatabaseError whose ``timeout`` is true (``is_timeout``).
    pymongo's client-side operation timeout (CSOT)."""
    return pymongo.timeout(seconds)


def is_timeout(exc: BaseException) -> bool:
    """The database did not answer in time (a deadline, a socket or selection timeout)."""
    return bool(getattr(exc, "timeout", False))


class MongoManager:
    def __init__(self, uri: str, database: str, timeout_ms: int = 5000,
                 record_events: bool = False, *, connect_timeout_ms: int | None = None,
                 socket_timeout_ms: int = 0, retry_seconds: float = 0.0) -> None:
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
        self.collections = c = Collections(self.db)
        self.outbox = OutboxStore(c, self.atomically, record_events)
        self.uploads = UploadStore(c, self.atomically)
        self.jobs = JobStore(c, self.atomically, self.outbox, self.uploads)
        self.segments = SegmentStore(c, self.atomically)
        # retry_seconds: these stores' idempotent writes are run again after an outage
        self.runs = RunStore(c, self.atomically, self.outbox, retry_seconds)
        self.frames = FrameStore(c, self.atomically, retry_seconds=retry_seconds)
        self.datasets = DatasetStore(c, self.atomically, self.outbox, retry_seconds)

    def ensure_indexes(self) -> None:
        c = self.collections
        c.tasks.create_index([("uploadId", 1), ("taskName", 1)], unique=True)
        c.tasks.create_index([("projectId", 1)])
        c.frames.create_index([("taskId", 1), ("frameId", 1)], unique=True)
        c.uploads.create_index([("projectId", 1)])
        c.uploads.create_index([("finishedAt", -1)])  # metrics: recent finished uploads
        c.jobs.create_index([("state", 1), ("createdAt", 1)])
        c.jobs.create_index([("owner", 1)])
        c.jobs.create_index([("parent", 1), ("state", 1)])
        c.staging.create_index([("uploadId", 1), ("runId", 1), ("number", 1)], unique=True)
        c.versions.create_index([("taskStatus.state", 1)])
        c.outbox.create_index([("stream", 1), ("sequence", 1)], unique=True)
        c.outbox.create_index([("state", 1), ("createdAt", 1)])

    def ping(self) -> None:
        self.client.admin.command("ping")

    def close(self) -> None:
        self.client.close()

    # -- transactions ----------------------------------------------------------

    def atomically(self, action: Any) -> Any:
        """``action(session)`` in one transaction (retried on a write conflict);
        on a standalone mongod, which has none, without one."""
        key = new_id()
        with self.client.start_session() as session:
            # Recorded first, outside the transaction and away from the documents
            # it locks: should this process die inside it,
            # ``end_abandoned_transactions`` ends the session, so its locks do
            # not outlive it (SecantusDB kept them for minutes; mongod until
            # the transaction times out).
            self.collections.transactions.insert_one({"_id": key, "lsid": session.session_id,
                                                      "owner": owner_id(), "at": now()})
            try:
                return session.with_transaction(action)
            except OperationFailure as exc:
                if exc.code != 20:  # 20: transactions need a replica set
                    raise
            finally:
                self.collections.transactions.delete_one({"_id": key})
        return action(None)

    def transaction_owners(self) -> list[str]:
        return self.collections.transactions.distinct("owner")

    def end_abandoned_transactions(self, dead_owners: Iterable[str]) -> int:
        """Abort the transactions of dead processes, and any transaction
        older than TRANSACTION_TIMEOUT (a holder on another host that died)."""
        query = [{"owner": {"$in": list(dead_owners)}},
                 {"at": {"$lt": now() - TRANSACTION_TIMEOUT}}]
        ended = 0
        for entry in [doc for q in query for doc in self.collections.transactions.find(q)]:
            try:
                self.client.admin.command("killSessions", [entry["lsid"]])
            except OperationFailure:
                pass  # the session is gone already
            ended += self.collections.transactions.delete_one({"_id": entry["_id"]}).deleted_count
        return ended


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
