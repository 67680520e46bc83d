"""The one failure policy of every kind of job: what an exception in a run means.

- ``JobCancelled``: the run was replaced (force_write) or taken over; the kind
  decides what of it to keep (``cancelled``).
- A database error: raised on, so the lease runs out and the job is retried.
- A ``ServiceError`` (bad content, an unusable model, a store that refuses):
  the job fails with its code and message.
- The contents store running out of space (ENOSPC, wherever it was raised:
  ``storage/space.py``): the job fails ``disk_full``, the message saying what
  the store has left; the warm start runs it again once there is room.
- Anything else: logged with its traceback, and the job fails ``internal_error``.
- Either of the last two, when the run had already ended (``ended``:
  force_write replaced it and removed its folders under it), is a ``JobCancelled``.

A failure is final: the job is not retried (the watchdog's stall and the
crash limit in ``jobs/runner.py`` end a job through the same ``fail``); only
a new run retries it: a request, or the warm start's for ``disk_full``.
"""
from __future__ import annotations

import logging
from typing import Callable, TypeVar

from config import Config
from exceptions import JobCancelled, ServiceError
from mongo_manager import DatabaseError
from processors.input_guard import redact
from storage.space import disk_full

log = logging.getLogger(__name__)

T = TypeVar("T")


def run_guarded(work: Callable[[], T], *, config: Config, fail: Callable[[dict], None],
                cancelled: Callable[[], None], doing: str,
                ended: Callable[[], bool] = lambda: False) -> T | None:
    """``work()``'s result, or None once the policy dealt with its exception.
    ``doing``: what the job does, for the message ("processing", "build");
    ``ended``: whether the run has ended meanwhile (asked only on an
    unexpected error)."""
    try:
        return work()
    except JobCancelled:
        cancelled()
    except DatabaseError:
        raise
    except ServiceError as exc:
        fail(error_of(exc))
    except Exception as exc:
        if ended():
            log.info("%s stopped: its run ended under it (%s)", doing, exc)
            cancelled()
        elif (full := disk_full(exc, config)) is not None:
            # Paths as messages show them: relative to contents_dir.
            fail({**full.to_dict(), "message": redact(full.message, config.contents_dir)})
        else:
            log.exception("%s failed", doing)
            fail({"code": "internal_error", "message": f"{doing} failed: {exc}"})
    return None


def error_of(exc: ServiceError) -> dict:
    """The stored error of a ServiceError; ``retryable`` where the error says
    (a store that was away: a later warm start may succeed)."""
    error = exc.to_dict()
    if hasattr(exc, "retryable"):
        error["retryable"] = exc.retryable
    return error
