"""The one failure policy of every kind of job: what an exception in a run means.

- ``JobCancelled``: the run was replaced (force_write) or taken over; the kind
  decides what of it to keep (``cancelled``).
- A database error: raised on, so the lease runs out and the job is retried.
- A ``ServiceError`` (bad content, an unusable model, a store that refuses):
  the job fails with its code and message.
- Anything else: logged with its traceback, and the job fails ``internal_error``;
  unless the run had already ended (``ended``: force_write replaced it and
  removed its folders under it), which is then a ``JobCancelled``.

A failure is final: the job is not retried (the watchdog's stall and the
crash limit in ``jobs/runner.py`` end a job through the same ``fail``).
"""
from __future__ import annotations

import logging
from typing import Callable, TypeVar

from exceptions import JobCancelled, ServiceError
from mongo_manager import DatabaseError

log = logging.getLogger(__name__)

T = TypeVar("T")


def run_guarded(work: Callable[[], T], *, fail: Callable[[dict], None],
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
