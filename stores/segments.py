"""The segment jobs of a run (jobs/segments.py): fanned out, waited for, committed."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo import ReturnDocument

from job_states import JobState
from stores.common import EPOCH, Store, now


class SegmentStore(Store):
    """A run's segment jobs and its parent's wait for them."""

    def fan_out(self, job_id: str, run_id: str, owner: str, kind: str,
                children: list[tuple[str, dict]]) -> bool:
        """Queue a run's segment jobs and park the run as "waiting", in one
        transaction: a job process never claims a segment whose parent is not
        waiting yet (it would take the run for ended and cancel the segment).

        Idempotent: a retried fan-out finds its children (same ids) in place.
        """
        def fan(session: Any) -> bool:
            for child_id, params in children:
                existing = self.c.jobs.find_one({"_id": child_id}, {"runId": 1}, session=session)
                if existing is not None and existing.get("runId") == run_id:
                    continue  # already queued for this run
                fields = {"kind": kind, "params": params, "runId": run_id, "parent": job_id,
                          "state": JobState.QUEUED, "attempts": 0, "owner": None,
                          "leaseUntil": EPOCH, "error": None, "createdAt": now()}
                self.c.jobs.update_one({"_id": child_id}, {"$set": fields}, upsert=True,
                                       session=session)
            result = self.c.jobs.update_one(
                {"_id": job_id, "runId": run_id, "owner": owner},
                {"$set": {"state": JobState.WAITING, "segments": len(children), "owner": None}},
                session=session)
            return result.matched_count == 1
        return self.atomically(fan)

    def parent_waiting(self, job_id: str, run_id: str) -> bool:
        return self.c.jobs.count_documents({"_id": job_id, "runId": run_id,
                                            "state": JobState.WAITING}) == 1

    def segment_owners(self, job_id: str, run_id: str) -> list[str]:
        """The holders of the run's segments being cut now."""
        return [doc["owner"] for doc in self.c.jobs.find(
            {"parent": job_id, "runId": run_id, "state": JobState.RUNNING}, {"owner": 1})
                if doc.get("owner")]

    def count_done_segments(self, job_id: str, run_id: str) -> int:
        return self.c.jobs.count_documents({"parent": job_id, "state": JobState.DONE,
                                            "runId": run_id})

    def claim_for_commit(self, job_id: str, run_id: str, owner: str,
                         lease_seconds: float) -> dict | None:
        return self.c.jobs.find_one_and_update(
            {"_id": job_id, "runId": run_id, "state": JobState.WAITING},
            {"$set": {"state": JobState.RUNNING, "owner": owner,
                      "leaseUntil": now() + timedelta(seconds=lease_seconds)}},
            return_document=ReturnDocument.AFTER)

    def wait_for_segments(self, job_id: str, run_id: str, owner: str) -> None:
        self.c.jobs.update_one({"_id": job_id, "runId": run_id, "owner": owner},
                               {"$set": {"state": JobState.WAITING, "owner": None}})

    def requeue_committable(self) -> int:
        """Queue the waiting runs whose segments are all done: the last segment
        died before it could claim the commit. Returns how many."""
        requeued = 0
        for job in self.c.jobs.find({"state": JobState.WAITING}, {"runId": 1, "segments": 1}):
            if self.count_done_segments(job["_id"], job["runId"]) >= job.get("segments", 0):
                requeued += self.c.jobs.update_one(
                    {"_id": job["_id"], "runId": job["runId"], "state": JobState.WAITING},
                    {"$set": {"state": JobState.QUEUED}}).modified_count
        return requeued

    def requeue_single_pass(self, job_id: str, run_id: str) -> bool:
        """Cut the run in one pass after all: its segments stop, its staged tasks stay."""
        result = self.c.jobs.update_one(
            {"_id": job_id, "runId": run_id, "state": JobState.WAITING},
            {"$set": {"state": JobState.QUEUED, "singlePass": True}, "$unset": {"segments": ""}})
        return result.matched_count == 1
