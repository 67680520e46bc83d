"""A job and its parameters as the code reads them: frozen dataclasses, built
once from the ProcessingJob document that a claim (or a read) returned.

The stores keep speaking documents (MongoDB's boundary); the jobs, the engines
and the intake read typed attributes. ``to_doc`` writes parameters back in the
very form they are stored in (same fields, same order, plain integers), so a
run started from them, a segment's copy of them or a retry resumes identically.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Generic, Mapping, TypeVar

from job_states import JobKind, JobState, RequestType


@dataclass(frozen=True)
class ContentParams:
    """What a processContent run needs (its request, checked, and the task length)."""
    upload_id: str
    project_id: str
    frame_rate: int
    content_path: str  # absolute, inside contents_dir ("" for request_type 2)
    force_write: int
    auto_anno_version: int
    request_type: RequestType
    content_type: int
    frames_per_task: int
    # How a video is split into tasks and whether still frames are left out
    # (processors/task_split.py); a job stored before they existed ran without.
    task_split: str = field(default="fixed", kw_only=True)
    skip_still: int = field(default=0, kw_only=True)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ContentParams:
        values = {f.name: doc[f.name] for f in fields(cls) if f.name in doc or not f.kw_only}
        return cls(**{**values, "request_type": RequestType(values["request_type"])})

    def to_doc(self) -> dict[str, Any]:
        return {**asdict(self), "request_type": int(self.request_type)}


@dataclass(frozen=True)
class SegmentParams(ContentParams):
    """A segment job's: its upload's run's parameters, and its place in the run."""
    parent: str  # the upload's job id
    segments: int  # how many segments the run was cut in
    total_tasks: int  # the run's task count
    segment: dict[str, Any]  # processors.segment_plan.Segment.to_dict()


@dataclass(frozen=True)
class DatasetParams:
    """A dataset build's: the version it builds."""
    version_id: str

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> DatasetParams:
        return cls(version_id=doc["version_id"])

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


PARAMS_OF: dict[str, type] = {JobKind.CONTENT: ContentParams, JobKind.SEGMENT: SegmentParams,
                              JobKind.DATASET: DatasetParams}

P = TypeVar("P", ContentParams, SegmentParams, DatasetParams)


@dataclass(frozen=True)
class Job(Generic[P]):
    """One run of a job, as read when it was claimed (or looked up).

    A snapshot: the document changes under it (its state, its lease); what
    must be current is read again from MongoDB, as before.
    """
    id: str
    kind: JobKind
    state: JobState
    run_id: str
    params: P
    attempts: int = 1  # claims of this run so far, this one included
    owner: str | None = None  # the lease holder's host:pid
    lease_until: datetime | None = None
    created_at: datetime | None = None  # when the run was accepted
    segments: int | None = None  # a parent's: how many segment jobs cut its run
    single_pass: bool = False  # sent back from segments to one pass
    progressive: bool | None = None  # publishes its tasks as they are cut (None: not decided)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Job[Any]:
        kind = JobKind(doc["kind"])
        return cls(id=doc["_id"], kind=kind, state=JobState(doc["state"]), run_id=doc["runId"],
                   params=PARAMS_OF[kind].from_doc(doc["params"]),
                   attempts=doc.get("attempts", 1), owner=doc.get("owner"),
                   lease_until=doc.get("leaseUntil"), created_at=doc.get("createdAt"),
                   segments=doc.get("segments"), single_pass=bool(doc.get("singlePass")),
                   progressive=doc.get("progressive"))


ContentJob = Job[ContentParams]
SegmentJob = Job[SegmentParams]
DatasetJob = Job[DatasetParams]


@dataclass(frozen=True)
class JobSend:
    """A job as a broker send routes it (the fields ``note_sent`` and
    ``take_resends`` read): its kind and request type pick the queue."""
    id: str
    kind: JobKind
    request_type: RequestType | None  # None: a dataset build
    sends: int  # sends so far

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> JobSend:
        request_type = (doc.get("params") or {}).get("request_type")
        return cls(id=doc["_id"], kind=JobKind(doc["kind"]),
                   request_type=None if request_type is None else RequestType(request_type),
                   sends=doc.get("sends") or 0)
