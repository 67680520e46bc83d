"""The store split of mongo_manager (issue 18): the policies the stores used
to hold now come from their owners, and behave as before."""
from __future__ import annotations

from datetime import timedelta

import pytest

from engines.sweeper import resend_delay
from mongo_manager import now


def test_resends_double_up_to_64_times_the_first(config):
    first = config.queue.resubmit_seconds
    assert [resend_delay(config.queue, sends) / first for sends in (0, 1, 2, 5, 6, 7, 40)] == \
        [1, 2, 4, 32, 64, 64, 64]


def test_a_due_job_is_taken_for_a_resend_once_and_spaced_by_the_delay(mongo):
    mongo.jobs.start_job("j", "processContent", {"request_type": 0}, "r1", replace_active=True)
    mongo.jobs.queue_job("j", "r1")
    asked = []

    def delay(sends: int) -> float:
        asked.append(sends)
        return 300.0

    before = now()
    assert [job["_id"] for job in mongo.jobs.take_resends(delay)] == ["j"]
    assert mongo.jobs.take_resends(delay) == []  # not due again for 300 s
    job = mongo.jobs.get_job("j")
    assert asked == [0] and job["sends"] == 1
    assert before + timedelta(seconds=299) < job["resendAt"] < now() + timedelta(seconds=301)


def test_status_and_request_type_are_stored_and_shown_as_plain_integers():
    """The enums (job_states) write the very integers MongoDB and the API held before."""
    import json

    import bson

    from job_states import RequestType, UploadStatus, completed_upload, failed_upload

    fields = {**failed_upload({"code": "x"}), "request_type": RequestType.ANNOTATE}
    fields.pop("finishedAt")
    assert bson.encode(fields) == bson.encode({**fields, "status": 2, "request_type": 2})
    assert json.loads(json.dumps(fields)) == {"status": 2, "stage": "error",
                                              "errorMessage": {"code": "x"}, "request_type": 2}
    assert json.dumps(UploadStatus.COMPLETED) == "1" and f"{RequestType.CUT}" == "0"
    assert list(completed_upload({}, tracks=None)) == [
        "status", "progress", "stage", "finishedAt", "errorMessage", "timings", "tracks"]


def test_a_job_document_reads_as_a_job_whose_params_write_back_unchanged(mongo):
    """job_types: the typed job is built from the stored document, and its
    parameters (a segment's copy of them too) are written in the same form."""
    from job_states import JobKind, JobState, RequestType
    from job_types import ContentParams, Job, SegmentParams

    params = {"upload_id": "u1", "project_id": "p1", "frame_rate": 5, "content_path": "/c/v.mp4",
              "force_write": 0, "auto_anno_version": 3, "request_type": 1, "content_type": 1,
              "frames_per_task": 10, "task_split": "shots", "skip_still": 1}
    mongo.jobs.start_job("processContent:u1", "processContent", params, "r1", replace_active=True)
    job = Job.from_doc(mongo.jobs.get_job("processContent:u1"))
    assert (job.id, job.kind, job.state, job.run_id, job.attempts, job.progressive) == \
        ("processContent:u1", JobKind.CONTENT, JobState.ACCEPTING, "r1", 0, None)
    assert job.params.request_type is RequestType.CUT_AND_ANNOTATE
    assert list(job.params.to_doc().items()) == list(params.items())
    assert type(job.params.to_doc()["request_type"]) is int
    segment = SegmentParams(**vars(job.params), parent=job.id, segments=2, total_tasks=3,
                            segment={"number": 1})
    assert list(segment.to_doc()) == [*params, "parent", "segments", "total_tasks", "segment"]
    with pytest.raises(KeyError):  # a document missing a parameter is not run half-typed
        ContentParams.from_doc({"upload_id": "u1"})
    # ... but one stored before task_split and skip_still existed ran without them
    legacy = {k: v for k, v in params.items() if k not in ("task_split", "skip_still")}
    assert ContentParams.from_doc(legacy).to_doc() == {**legacy, "task_split": "fixed",
                                                       "skip_still": 0}
