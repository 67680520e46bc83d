"""What every store shares: the raw collections, ids and times as the
backend writes them, and the retry of an idempotent write."""
from __future__ import annotations

import functools
import hashlib
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import ConnectionFailure

if TYPE_CHECKING:
    from stores.outbox import OutboxStore

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Method = TypeVar("Method", bound=Callable[..., Any])
# Runs ``action(session)`` in one transaction (MongoManager.atomically).
Atomically = Callable[[Callable[[Any], Any]], Any]


class Collections:
    """The raw collections: the backend's five and ours (mongo_manager's docstring)."""

    def __init__(self, db: Database) -> None:
        self.uploads = db["AnnotationContentUpload"]
        self.projects = db["AnnotationProject"]
        self.tasks = db["AnnotationTask"]
        self.frames = db["AnnotationFrame"]
        self.jobs = db["ProcessingJob"]
        self.staging = db["AnnotationTaskStaging"]
        self.versions = db["AnnotationDatasetVersion"]
        self.transactions = db["ProcessingCommit"]  # open transactions (their sessions)
        self.outbox = db["EventOutbox"]
        self.sequences = db["EventSequence"]


class Store:
    """A store's queries run on ``collections``; a change that reports events
    records them with ``outbox`` in the transaction ``atomically`` runs."""

    def __init__(self, collections: Collections, atomically: Atomically,
                 outbox: OutboxStore | None = None, retry_seconds: float = 0.0) -> None:
        self.c = collections
        self.atomically = atomically
        self._outbox = outbox
        self.retry_seconds = retry_seconds  # see idempotent

    @property
    def outbox(self) -> OutboxStore:
        assert self._outbox is not None, "this store records no events"
        return self._outbox


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


def idempotent(method: Method) -> Method:
    """A method safe to run again whole. A job's manager (``retry_seconds``)
    runs it again when the connection was lost (an outage that interrupted
    it): pymongo retries a single-document write once, after waiting for a
    server, but never a multi-document one (delete_many, update_many)."""
    @functools.wraps(method)
    def again(self: Store, *args: Any, **kwargs: Any) -> Any:
        end = time.monotonic() + self.retry_seconds
        while True:
            try:
                return method(self, *args, **kwargs)
            except ConnectionFailure:
                if time.monotonic() >= end:
                    raise
                time.sleep(0.5)  # the next try's server selection waits for the server
    return again  # type: ignore[return-value]
