"""The service as README.md starts it: ``gunicorn -c gunicorn.conf.py wsgi:app``,
the console script from PATH, run from the repo folder, configured by the
environment only (no PYTHONPATH: gunicorn itself must find ``wsgi``).

Also what the hostile tests measure: a gunicorn worker's memory from /proc.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests
from conftest import AUTH_KEY, ROOT
from readme import person_env, readme_command

from embedded_db import free_port


def readme_gunicorn(env: dict[str, str], log: Path, workers: int) -> tuple[subprocess.Popen, str]:
    """The README's production command, as written (its key placeholder filled),
    run by bash as a person would; its output to ``log``. Returns the process
    and the server's base URL."""
    port = free_port()
    command = readme_command("SERVER_AUTH_KEY=... gunicorn").replace("...", AUTH_KEY, 1)
    run_env = {k: v for k, v in env.items() if k != "SERVER_AUTH_KEY"}
    with open(log, "wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", command], env=person_env(
                {**run_env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(workers)}),
            cwd=ROOT, start_new_session=True, stdout=out, stderr=out)
    return server, f"http://127.0.0.1:{port}"


class LiveServer:
    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        gunicorn = shutil.which("gunicorn")
        assert gunicorn, "the gunicorn console script is not on PATH"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        environ.update(env, GUNICORN_BIND=f"127.0.0.1:{self.port}",
                       GUNICORN_WORKERS=str(workers))
        self.process = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py", "wsgi:app"],
                                        env=environ, cwd=ROOT, start_new_session=True)
        self.workers = workers

    def wait_ready(self, timeout: float = 60.0) -> "LiveServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "gunicorn exited"
            try:
                if requests.get(f"{self.base}/api/health", timeout=2).status_code == 200 \
                        and len(self.worker_pids()) == self.workers:
                    return self
            except requests.RequestException:  # not listening yet
                pass
            time.sleep(0.2)
        raise AssertionError("gunicorn did not become healthy")

    def worker_pids(self) -> list[int]:
        """The web workers: the master's children that run gunicorn (the executor,
        also its child, runs another script)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(pid) for pid in children.read_text().split()]
        return [pid for pid in pids if b"gunicorn" in _cmdline(pid)]

    def stop(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone
        return b""


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak so far) of ``pid``, in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")
