"""The embedded MongoDB-compatible server (SecantusDB) behind ``mongodb.uri = embedded``.

One server process per data folder (WiredTiger locks it), shared by every
process of the service: the first process to need it starts it detached,
records its port in ``<db_dir>/server.json``; later processes (gunicorn
workers, job workers, the CLIs) find it there. A file lock makes concurrent
first starts safe.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from exceptions import DatabaseUnavailable
from processes import pid_alive

START_TIMEOUT = 60.0


def embedded_uri(db_dir: Path, start: bool = True) -> str:
    """The URI of the server for ``db_dir``, starting one if none runs."""
    db_dir.mkdir(parents=True, exist_ok=True)
    uri = _running_uri(db_dir)
    if uri or not start:
        return uri or ""
    with _file_lock(db_dir / "start.lock"):
        uri = _running_uri(db_dir)
        if uri:
            return uri
        return _start(db_dir)


def stop_embedded(db_dir: Path, timeout: float = 20.0) -> None:
    """Stop the server of ``db_dir`` (tests and operators; the service never does)."""
    state = _read_state(db_dir)
    if not state or not pid_alive(state["pid"]):
        return
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(state["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(state["pid"]):
        os.kill(state["pid"], signal.SIGKILL)
    (db_dir / "server.json").unlink(missing_ok=True)


def _start(db_dir: Path) -> str:
    port = free_port()
    log = open(db_dir / "server.log", "ab")
    # Detached (own session) so that it outlives the process that started it:
    # every later process of the service connects to it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
         "--storage-path", str(db_dir / "data"), "--log-level", "WARNING"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (db_dir / "server.log").read_text(errors="replace")[-800:]
            raise DatabaseUnavailable(f"the embedded database did not start: {tail}")
        if _port_open(port):
            (db_dir / "server.json").write_text(json.dumps({"port": port, "pid": proc.pid}))
            return _uri(port)
        time.sleep(0.1)
    proc.kill()
    raise DatabaseUnavailable(f"the embedded database did not start within {START_TIMEOUT:.0f} s")


def _running_uri(db_dir: Path) -> str | None:
    state = _read_state(db_dir)
    if state and pid_alive(state["pid"]) and _port_open(state["port"]):
        return _uri(state["port"])
    return None


def _read_state(db_dir: Path) -> dict | None:
    try:
        return json.loads((db_dir / "server.json").read_text())
    except (OSError, ValueError):
        return None


def _uri(port: int) -> str:
    # directConnection: the server advertises a single-node replica set whose
    # member name may not resolve from here.
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
