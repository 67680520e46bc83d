"""A reader of an upload's tasks while they are published: the checks of
"published tasks are final" (README "Progressive results and events")."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable


def in_order(labels: list[str]) -> bool:
    """Task names' numbers 1, 2, ... without a gap; with task_split "shots" a
    cell's later tasks are "<cell>.2", "<cell>.3", ... (processors/task_split.py)."""
    last = (0, 1)  # before cell 1
    for label in labels:
        cell, _, part = label.partition(".")
        found = (int(cell), int(part or 1))
        if found not in ((last[0], last[1] + 1), (last[0] + 1, 1)) or found[0] == 0:
            return False
        last = found
    return True


class Reader(threading.Thread):
    """Polls the upload's tasks the way the Node.js backend reads them."""

    def __init__(self, mongo, tasks: int, upload_id: str = "u1") -> None:
        super().__init__(daemon=True)
        self.mongo, self.tasks, self.upload_id = mongo, tasks, upload_id
        self.stop = threading.Event()
        self.seen: dict = {}  # task id -> (task, its frames) when first seen
        self.problems: list[str] = []
        self.polls = 0
        self.first_ready_at: float | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            self.look()
            time.sleep(0.02)

    def look(self) -> None:
        tasks = self.mongo.frames.tasks_of(self.upload_id)
        ready = (self.mongo.uploads.get_upload(self.upload_id) or {}).get("readyTaskCount") or 0
        self.polls += 1
        if not in_order([task["taskName"].split("-")[1] for task in tasks]):
            self.problems.append(f"tasks out of order: {[t['taskName'] for t in tasks]}")
        if ready < len(tasks):
            self.problems.append(f"readyTaskCount {ready} < {len(tasks)} visible")
        if tasks and self.first_ready_at is None:
            self.first_ready_at = time.monotonic()
        gone = set(self.seen) - {task["_id"] for task in tasks}
        if gone:
            self.problems.append(f"{len(gone)} task(s) vanished")
        for task in tasks:
            self.check(task)

    def check(self, task: dict) -> None:
        if task["_id"] in self.seen:
            if self.seen[task["_id"]][0] != task:
                self.problems.append(f"{task['taskName']} changed after it appeared")
            return
        frames = self.mongo.frames.frames_of(task["_id"])
        self.seen[task["_id"]] = (task, frames)
        if not Path(task["videoPath"]).is_file():
            self.problems.append(f"{task['taskName']} visible before its clip")
        if len(frames) != task["frameCount"] or not all(Path(f["imagePath"]).is_file()
                                                        for f in frames):
            self.problems.append(f"{task['taskName']} visible before its frames")

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)
        self.look()  # the end state too
        for task_id, (task, frames) in self.seen.items():
            if self.mongo.frames.frames_of(task_id) != frames:
                self.problems.append(f"the frames of {task['taskName']} changed")
        assert not self.problems, self.problems[:5]
        assert len(self.seen) == self.tasks and self.polls > 20


def kill_job_mid_run(mongo, executor, reader: Reader, start: Callable[[], object],
                     staged: int, total: int, job_id: str = "processContent:u1") -> None:
    """Run an upload under ``executor`` (a supervisor with one job process) while
    ``reader`` watches what it publishes: ``start()`` posts it; once ``staged``
    of its ``total`` task clips are staged, kill -9 the job process, then wait
    for the resumed run to end. Stops the reader and the supervisor."""
    from conftest import wait_for

    from processes import owner_pid_here

    reader.start()
    try:
        start()
        job = wait_for(lambda: (j := mongo.jobs.get_job(job_id)) and j.get("owner") and j,
                       what="a job process to claim the job")
        wait_for(lambda: mongo.collections.staging.count_documents({}) >= staged,
                 what="tasks to be staged")
        os.kill(owner_pid_here(job["owner"]), signal.SIGKILL)
        assert mongo.collections.staging.count_documents({}) < total, \
            "the job ended before the kill"
        wait_for(lambda: mongo.jobs.get_job(job_id)["state"] in ("done", "failed"),
                 what="the job to end")
    finally:
        reader.stop.set()
        os.killpg(executor.pid, signal.SIGTERM)
        executor.wait(timeout=30)
    reader.finish()
