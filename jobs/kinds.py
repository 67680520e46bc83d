"""The kind table: for each kind of job, how to run it and how to end it as failed.

``run`` returns a job this process claimed meanwhile and should run next (the
parent of a long video, claimed for its commit by its last segment), or None.
``fail`` ends a job that cannot be run on (a stall, too many crashes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from job_states import JobKind
from job_types import Job
from jobs import content, dataset, segments
from jobs.context import JobContext


@dataclass(frozen=True)
class KindRunner:
    run: Callable[[Job, JobContext], Job | None]
    fail: Callable[[Job, JobContext, dict], None]


JOB_KINDS: dict[str, KindRunner] = {
    JobKind.CONTENT: KindRunner(content.run_content_job, content.fail_job),
    JobKind.SEGMENT: KindRunner(segments.run_segment_job, segments.fail_segment_job),
    JobKind.DATASET: KindRunner(dataset.run_dataset_job, dataset.fail_dataset_job),
}
