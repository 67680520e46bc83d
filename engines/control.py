"""Starting the embedded engine's supervisor, asking whether one runs, and waking
it, without importing pymongo.

The gunicorn master uses this before forking its gevent workers: pymongo (and
its ssl import) must not be loaded there before gevent patches the workers.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

from config import Config

EXECUTOR_SCRIPT = Path(__file__).resolve().parent.parent / "executor.py"


def executor_lock_path(config: Config) -> Path:
    return config.contents_dir / "executor.lock"


def wake_address(config: Config) -> str:
    """The supervisor's wake-up socket: in Linux's abstract namespace (no file to
    leave behind, no path length limit), one per contents folder like the lock."""
    folder = os.path.realpath(config.contents_dir)
    return "\0content-processor-wake-" + hashlib.sha1(folder.encode()).hexdigest()[:20]


def wake_executor(config: Config) -> None:
    """Tell the supervisor a job was just queued, so an idle job process claims
    it now instead of at its next poll. Best effort: with no supervisor, or a
    full socket buffer, the job is found by polling (processing.poll_seconds)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"j", wake_address(config))
    except OSError:
        pass


def executor_running(config: Config) -> bool:
    """True when some process holds the supervisor lock of this contents folder."""
    path = executor_lock_path(config)
    if not path.exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def start_executor(parent_pid: int | None = None) -> subprocess.Popen:
    """Start the supervisor as its own process (not forked from a gevent worker)."""
    args = [sys.executable, str(EXECUTOR_SCRIPT)]
    if parent_pid:
        args += ["--parent", str(parent_pid)]
    # Own process group: a test (or an operator) can kill it with its workers.
    return subprocess.Popen(args, start_new_session=True)
