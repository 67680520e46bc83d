"""Is a process still there? Used to find the work of processes that died.

Also the one place that knows a job lease holder's name, ``host:pid``.
"""
from __future__ import annotations

import os
import socket


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
