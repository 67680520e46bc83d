"""No job hangs silently: a job that makes no progress for ``processing.stall_seconds``
fails with a clear error ("stalled") and its process is freed.

``jobs.runner.run_claimed`` (where both engines run every kind of job) runs each
job under a ``Watchdog``, a thread of its own. The job reports progress
(``Heartbeat.beat``, a pipeline ``Progress`` event, a finished S3 part); the
watchdog keeps the job's lease while the job keeps within ``stall_seconds`` of
its last progress, also before any progress (opening the source), so a slow
open is not handed to a second process that would hang on it too. When the
job overruns, the watchdog fails it (fenced: only a run this process still
holds) and ends the process with ``os._exit``: the hung call (a decoder blocked
on a FIFO, a read from a dead NFS server, a model that never returns) cannot
be interrupted any other way. Such calls run in C with the GIL released, so
this thread still runs. The embedded supervisor starts a fresh job process;
a Celery pool process that exits gives its message back
(``task_reject_on_worker_lost``) and the redelivered message finds the job
failed. A stall is final: the job is not retried.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterator

from exceptions import JobCancelled
from job_states import JobState
from job_types import Job
from jobs.claims import read_job
from mongo_manager import DatabaseError

if TYPE_CHECKING:
    from jobs.context import JobContext

log = logging.getLogger(__name__)

STALL_EXIT_CODE = 75  # the exit status of a process freed from a stalled job
_current: contextvars.ContextVar["Watchdog | None"] = contextvars.ContextVar(
    "job_watchdog", default=None)


def current() -> "Watchdog | None":
    """The watchdog of the job this thread works for (None outside a job)."""
    return _current.get()


def progressed(doing: str | None = None) -> None:
    """The running job moved on; ``doing`` names what it does now (the stall
    message says it). A no-op outside a job."""
    watchdog = _current.get()
    if watchdog is not None:
        watchdog.progressed(doing)


@contextlib.contextmanager
def fenced() -> Iterator[None]:
    """A block of the running job that a stall's clean-up never interleaves
    with: a stall waits for it to end, and once the job has stalled the block
    does not run (the process is ending). For short local steps that must not
    undo the clean-up, such as making the run's staging folders: made just
    after the clean-up removed them, they would outlive the failed run."""
    watchdog = _current.get()
    if watchdog is None:
        yield
        return
    with watchdog._lock:
        if watchdog.stalled:  # reached only where os._exit did not end the process
            raise JobCancelled("the job stalled")
        yield


class Watchdog:
    """Watches one job run by this process, from ``with Watchdog(...):`` to its end."""

    def __init__(self, job: Job, ctx: "JobContext",
                 fail: Callable[[Job, "JobContext", dict], None]) -> None:
        self.job, self.ctx, self.fail = job, ctx, fail
        self.seconds = ctx.config.processing.stall_seconds
        self.doing = "starting"
        self.last = time.monotonic()
        self.ended = threading.Event()
        self.stalled = False
        self._lock = threading.Lock()  # the job's end and a stall never overlap
        self._token: contextvars.Token | None = None
        # In a copy of the job's context: what it logs carries the upload id.
        self._thread = threading.Thread(target=contextvars.copy_context().run,
                                        args=(self._watch,), name="job-watchdog", daemon=True)

    def progressed(self, doing: str | None = None) -> None:
        self.last = time.monotonic()
        if doing:
            self.doing = doing

    def __enter__(self) -> "Watchdog":
        self._token = _current.set(self)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:  # a stall already under way ends this process first
            self.ended.set()
        self._thread.join()
        _current.reset(self._token)

    def _watch(self) -> None:
        lease = self.ctx.config.processing.lease_seconds
        check = min(1.0, self.seconds / 4)
        renewed = time.monotonic()
        holding = True
        while not self.ended.wait(check):
            if time.monotonic() - self.last >= self.seconds:
                self._stall()
                return
            if holding and time.monotonic() - renewed >= lease / 3:
                holding = self._renew()
                renewed = time.monotonic()

    def _renew(self) -> bool:
        """Keep the lease of a job that is opening or working; False once it is
        no longer this run's (replaced or taken over: its new holder renews it)."""
        job, ctx = self.job, self.ctx
        try:
            return ctx.mongo.jobs.renew_lease(job.id, job.run_id, ctx.owner,
                                              ctx.config.processing.lease_seconds)
        except DatabaseError as exc:
            log.warning("job %s: lease not renewed: %s", job.id, exc)
            return True

    def _stall(self) -> None:
        with self._lock:
            if self.ended.is_set():
                return  # the job ended just now
            self.stalled = True
            error = {"code": "stalled",
                     "message": f"no progress for {self.seconds:g} s while {self.doing}"}
            log.error("job %s: %s; failing it and ending this process (pid %d)",
                      self.job.id, error["message"], os.getpid())
            try:
                if self._still_held():
                    self.fail(self.job, self.ctx, error)
            except Exception:  # the process ends anyway; its lease then runs out
                log.exception("job %s: could not record the stall", self.job.id)
            finally:
                logging.shutdown()  # flush the lines above: os._exit skips it
                os._exit(STALL_EXIT_CODE)

    def _still_held(self) -> bool:
        """This run, held by this process and not yet committed (a committed
        run's tasks are in place: the stalled clean-up is redone by the next
        holder, the upload must not turn to an error)."""
        current = read_job(self.ctx.mongo, self.job.id)
        return (current is not None and current.run_id == self.job.run_id
                and current.owner == self.ctx.owner and current.state == JobState.RUNNING)
