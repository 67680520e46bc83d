"""A run's tasks: staged (AnnotationTaskStaging), then committed or published
into AnnotationTask, or discarded."""
from __future__ import annotations

from typing import Any

from events import Event
from job_states import ACTIVE_JOB_STATES, JobState, upload_job_id
from stores.common import Store, idempotent, to_id


class RunStore(Store):
    """A run's staged tasks, its commit and its publications."""

    def staged_tasks(self, upload_id: Any, run_id: str, session: Any = None) -> list[dict]:
        return list(self.c.staging.find({"uploadId": to_id(upload_id), "runId": run_id},
                                        sort=[("number", 1)], session=session))

    def count_staged(self, upload_id: Any, run_id: str) -> int:
        return self.c.staging.count_documents({"uploadId": to_id(upload_id), "runId": run_id})

    @idempotent
    def stage_task(self, upload_id: Any, run_id: str, number: int, task: dict,
                   frames: list[dict], cuts: list[dict] = (), order: dict | None = None) -> None:
        """Record a finished task of a run: its frames first, then the task (with
        the shot ``cuts`` found in it: jobs/shots.py, and ``order``: its
        ``label``, the ``next`` task's number and its ``leftOut`` still
        frames, jobs/task_order.py).

        Idempotent: a resumed run that redoes task ``number`` (same
        deterministic task id) first drops the frames its crashed attempt left.
        """
        self.c.frames.delete_many({"taskId": task["_id"]})
        if frames:
            self.c.frames.insert_many(frames, ordered=False)
        self.c.staging.replace_one({"_id": task["_id"]},
                                   {"uploadId": to_id(upload_id), "runId": run_id,
                                    "number": number, "task": task, "cuts": list(cuts),
                                    **(order or {})},
                                   upsert=True)

    def run_is_current(self, upload_id: Any, run_id: str) -> bool:
        """The upload's job is still on ``run_id`` and active (not replaced, not ended)."""
        return bool(self.c.jobs.count_documents(
            {"_id": upload_job_id(str(upload_id)), "runId": run_id,
             "state": {"$in": ACTIVE_JOB_STATES}}, limit=1))

    @idempotent
    def unstage_if_ended(self, upload_id: Any, run_id: str, task_id: Any) -> bool:
        """After ``stage_task``: when the run has ended meanwhile (replaced or
        failed), remove what was just staged, unless published, and say so. A
        segment still cutting can stage a task after its run's ``discard_run``,
        which would then never be undone (frames matching no task)."""
        if self.run_is_current(upload_id, run_id):
            return False
        if not self.c.tasks.count_documents({"_id": task_id}, limit=1):  # published: final
            self.c.frames.delete_many({"taskId": task_id})
        self.c.staging.delete_one({"_id": task_id, "runId": run_id})
        return True

    @idempotent
    def discard_run(self, upload_id: Any, run_id: str) -> None:
        """Forget everything a run staged (it failed or was replaced), except the
        frames of the tasks it published (jobs/publish.py): those are final."""
        staged = [doc["_id"] for doc in self.staged_tasks(upload_id, run_id)]
        published = set(self.c.tasks.distinct("_id", {"_id": {"$in": staged}}))
        self.c.frames.delete_many({"taskId": {"$in": [i for i in staged if i not in published]}})
        self.c.staging.delete_many({"uploadId": to_id(upload_id), "runId": run_id})

    def commit_run(self, job_id: str, upload_id: Any, run_id: str, upload_fields: dict,
                   events: list[Event] = (), task_fields: dict[int, dict] | None = None) -> bool:
        """Swap the upload's tasks for the run's staged tasks, atomically
        (``task_fields``: more fields of task number n, e.g. its ``shots``).

        Fenced on the job's ``runId``: a run that was replaced commits nothing.
        Returns False in that case.
        """
        # Standalone mongod: delete-then-insert never shows old and new tasks
        # together, only (for a moment) fewer tasks.
        return self.atomically(
            lambda s: self._commit(s, job_id, upload_id, run_id, upload_fields, events,
                                   task_fields or {}))

    def _commit(self, session: Any, job_id: str, upload_id: Any, run_id: str,
                upload_fields: dict, events: list[Event], task_fields: dict[int, dict]) -> bool:
        job = self.c.jobs.find_one({"_id": job_id, "runId": run_id}, session=session)
        if job is None:
            return False
        upload = to_id(upload_id)
        old = [doc["_id"] for doc in self.c.tasks.find({"uploadId": upload}, {"_id": 1},
                                                       session=session)]
        staged = self.staged_tasks(upload, run_id, session)
        self.c.tasks.delete_many({"uploadId": upload}, session=session)
        if staged:
            self.c.tasks.insert_many([{**doc["task"], **task_fields.get(doc["number"], {})}
                                      for doc in staged], session=session)
        self.c.uploads.update_one({"_id": upload}, {"$set": upload_fields}, session=session)
        self.c.jobs.update_one({"_id": job_id},
                               {"$set": {"state": JobState.COMMITTED, "oldTasks": old}},
                               session=session)
        self.outbox.add_events(str(upload_id), list(events), session)
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
        job = self.c.jobs.find_one({"_id": job_id, "runId": run_id,
                                    "state": {"$in": [JobState.RUNNING, JobState.WAITING]}},
                                   {"_id": 1}, session=session)
        shown = self.c.uploads.find_one({"_id": upload}, {"readyTaskCount": 1},
                                        session=session)
        if job is None or shown is None or (shown.get("readyTaskCount") or 0) != after:
            return False
        if staged:
            self.c.tasks.insert_many([doc["task"] for doc in staged], session=session)
        self.c.uploads.update_one({"_id": upload}, {"$set": {
            "readyTaskCount": after + len(staged), **upload_fields}}, session=session)
        if final:
            self.c.jobs.update_one({"_id": job_id}, {"$set": {
                "state": JobState.COMMITTED, "oldTasks": []}}, session=session)
        self.outbox.add_events(str(upload), events, session)
        return True

    @idempotent
    def cleanup_after_commit(self, job_id: str, upload_id: Any, run_id: str) -> None:
        """Remove what the committed run replaced: old frames, staging documents."""
        job = self.c.jobs.find_one({"_id": job_id}) or {}
        old = job.get("oldTasks") or []
        if old:
            self.c.frames.delete_many({"taskId": {"$in": old}})
        self.c.staging.delete_many({"uploadId": to_id(upload_id), "runId": run_id})
        self.c.jobs.update_one({"_id": job_id}, {"$unset": {"oldTasks": ""}})

    def complete_run(self, job_id: str, run_id: str, upload_id: Any, upload_fields: dict,
                     events: list[Event] = ()) -> bool:
        """End a run that changed no tasks (request_type 2), fenced on its runId."""
        def complete(session: Any) -> bool:
            result = self.c.jobs.update_one({"_id": job_id, "runId": run_id},
                                            {"$set": {"state": JobState.COMMITTED}},
                                            session=session)
            if result.matched_count:
                self.c.uploads.update_one({"_id": to_id(upload_id)}, {"$set": upload_fields},
                                          session=session)
                self.outbox.add_events(str(upload_id), list(events), session)
            return bool(result.matched_count)
        return self.atomically(complete)
