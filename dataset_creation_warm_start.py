"""Finish whatever a crash interrupted. Safe to run at every boot, and twice at once.

Releases the jobs of processes of this host that are gone, then claims and
runs every job left queued or abandoned (content uploads) until none is left.
Jobs held by live processes are left to them.
"""
from __future__ import annotations

import logging
import sys
import threading

from config import load_config
from exceptions import ServiceError
from executor import release_orphans, worker_loop
from mongo_manager import get_mongo


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = load_config()
        released = release_orphans(get_mongo(config))
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    ran = worker_loop(config, threading.Event(), drain=True)
    print(f"warm start: released {released} abandoned job(s), finished {ran} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
