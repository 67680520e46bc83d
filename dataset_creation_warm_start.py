"""Finish whatever a crash interrupted. Safe to run at every boot, and twice at once.

1. Releases the jobs of processes of this host that are gone.
2. Queues a build of every dataset version left unfinished: tasks still
   ``pending`` (a crash, a killed process) or ended ``error`` by an object
   store that was away (a retryable error).
3. Queues a new run of every upload and dataset build that ran out of space
   (code ``disk_full``), once per failure, when the contents store is above
   ``processing.min_free_mb`` again; below it, they are left for later.
4. Claims and runs every job left queued or abandoned, content uploads and
   dataset builds alike, until none is left.

Jobs held by live processes are left to them; a job is claimed atomically,
so two warm starts at once never run the same job twice.
"""
from __future__ import annotations

import logging
import sys
import threading

from config import load_config
from engines.embedded import worker_loop
from exceptions import ServiceError
from intake import dataset_builds
from intake.retries import retry_disk_full
from jobs.claims import release_orphans
from logging_setup import configure_logging
from mongo_manager import get_mongo


def main() -> int:
    configure_logging(logging.INFO)
    try:
        config = load_config(require_auth_key=False)  # no HTTP here: no server key
        mongo = get_mongo(config)
        released = release_orphans(mongo)
        versions = dataset_builds.queue_unfinished(mongo)
        retried, no_room = retry_disk_full(mongo, config)
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if no_room:
        print(f"warm start: {no_room}")
    ran = worker_loop(config, threading.Event(), drain=True)
    print(f"warm start: released {released} abandoned job(s), queued {versions} unfinished "
          f"dataset version(s), retried {retried} that ran out of space, finished {ran} "
          f"job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
