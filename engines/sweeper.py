"""The sweeper of a Celery worker: no job is lost with its broker message.

MongoDB, not the broker, is the queue's record. Every ``queue.sweep_seconds``
this process (one per worker, started by ``engines/celery_worker.py``) re-sends the jobs
whose message may be gone: still queued ``queue.resubmit_seconds`` after they
were sent (Redis restarted without persistence, or the broker was away when
the request was accepted), or held by a lease that ran out (their worker died,
whole, with its message unacknowledged). Each re-send of a job waits twice as
long as the one before. Re-sends are harmless: the task claims the job
atomically, so a duplicate finds it taken or finished and does nothing.

It also releases at once the jobs of this host's processes that are gone (a
killed pool process), as the embedded executor's supervisor does, and runs
the worker's event deliverer (``events/deliverer.py``) in a thread.
"""
from __future__ import annotations

import logging
import sys
import threading

from backoff import doubling
from config import Config, QueueConfig, load_config
from engines.celery_send import CeleryNotifier
from events.deliverer import Deliverer
from exceptions import DatabaseUnavailable
from job_types import JobSend
from jobs.claims import release_orphans
from mongo_manager import DatabaseError, get_mongo
from processes import helper_process_start, owner_id

log = logging.getLogger(__name__)
# Each re-send of a job is twice as far away as its last one, up to this many
# doublings, so a long backlog gains few duplicate messages.
RESEND_DOUBLINGS = 6


def resend_delay(settings: QueueConfig, sends: int) -> float:
    """Seconds from a job's send number ``sends + 1`` to the next, if it is still waiting."""
    first = settings.resubmit_seconds
    return doubling(first, sends, first * 2 ** RESEND_DOUBLINGS)


def sweep_once(config: Config, notifier: CeleryNotifier) -> int:
    """Re-send the jobs that are due; returns how many were sent."""
    mongo = get_mongo(config)
    release_orphans(mongo)
    sent = 0
    for doc in mongo.jobs.take_resends(lambda sends: resend_delay(config.queue, sends)):
        job = JobSend.from_doc(doc)
        if notifier.send(job):
            sent += 1
            log.info("job %s sent again (send %d)", job.id, job.sends + 1)
        else:
            mongo.jobs.resend_soon(job.id)
            break  # the broker is away: the next sweep tries again
    return sent


def run(config: Config, stop: threading.Event) -> None:
    notifier = CeleryNotifier(config)
    if config.events.enabled:  # this worker's event deliverer
        threading.Thread(target=Deliverer(config.events, get_mongo(config), owner_id()).run,
                         args=(stop,), name="event-deliverer", daemon=True).start()
    while not stop.wait(config.queue.sweep_seconds):
        try:
            sweep_once(config, notifier)
        except (DatabaseError, DatabaseUnavailable) as exc:
            log.warning("database unreachable, sweeping later: %s", exc)


def main(argv: list[str] | None = None) -> int:
    stop = helper_process_start(__doc__.splitlines()[0], argv)
    run(load_config(require_auth_key=False), stop)  # serves no HTTP
    return 0


if __name__ == "__main__":
    sys.exit(main())
