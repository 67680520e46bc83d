"""Is a process still there? Used to find the work of processes that died.

Also the one place that knows a job lease holder's name, ``host:pid``.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading


def owner_id(pid: int | None = None) -> str:
    """Who holds a job lease: this host and process ``pid`` (default: this one)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def owner_pid_here(owner: str | None) -> int | None:
    """The pid of a lease holder that is a process of this host; None otherwise."""
    host, _, pid = (owner or "").rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def owner_dead_here(owner: str | None) -> bool:
    """The lease holder was a process of this host and is gone."""
    pid = owner_pid_here(owner)
    return pid is not None and not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as dead: in a container whose init
    does not reap orphans, a killed process can stay a zombie for ever."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # The state follows the parenthesised command name, which may hold spaces.
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def helper_process_start(description: str, argv: list[str] | None) -> threading.Event:
    """The start of a helper process of a supervisor or a Celery worker (the
    sweeper, the event deliverer): ``--parent PID``, JSON logs, and the event
    that SIGTERM, SIGINT or the parent's death sets."""
    from logging_setup import configure_logging  # a basic, imported when used

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--parent", type=int, help="stop when this process is gone")
    args = parser.parse_args(argv)
    configure_logging()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.parent:
        threading.Thread(target=_stop_without_parent, args=(args.parent, stop),
                         daemon=True).start()
    return stop


def _stop_without_parent(parent: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        if os.getppid() != parent:
            logging.getLogger(__name__).info("parent %s is gone; stopping", parent)
            stop.set()
