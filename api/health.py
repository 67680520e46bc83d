"""GET /api/health: a check per dependency, no key, no secrets.

It answers within ``server.health_timeout_seconds`` (1.5 s) whatever the
dependencies do, since a load balancer's probe gives up after 1-5 s: the checks
run at once, each in its own thread, and one that has not answered in time is
reported as down. A database that stops answering (frozen, partitioned) would
otherwise hold the probe for pymongo's heartbeat (about 15 s), and a statvfs on
a hung NFS mount can block forever.
"""
from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from typing import Any, Callable

from flask import Blueprint, jsonify

from api.service import Service, service
from engines.control import executor_running
from mongo_manager import deadline, is_timeout
from storage.space import floor_bytes, free_bytes

bp = Blueprint("health", __name__, url_prefix="/api")
log = logging.getLogger(__name__)

# Checks that may block in the kernel (a hung disk) and so need an OS thread,
# also under gevent, where a greenlet blocked in a system call blocks them all.
NATIVE_CHECKS = ("storage",)


@bp.get("/health")
def health():
    svc = service()
    seconds = svc.config.server.health_timeout_seconds
    checks = _run_bounded({"database": lambda: _database(svc, seconds),
                           "storage": lambda: _storage(svc), "queue": lambda: _queue(svc)},
                          seconds)
    ok = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if ok else "degraded", "checks": checks}
    return jsonify(body), 200 if ok else 503


def _run_bounded(checks: dict[str, Callable[[], dict]], seconds: float) -> dict[str, dict]:
    """Every check at once; one that has not answered within ``seconds`` is down
    (its thread is left to finish on its own)."""
    answers: dict[str, dict] = {}
    started = {name: _start(name, check, answers) for name, check in checks.items()}
    end = time.monotonic() + seconds
    for finished in started.values():
        finished.wait(max(0.0, end - time.monotonic()))
    late = {"ok": False, "error": f"no answer within {seconds:g} s"}
    return {name: answers.get(name, late) for name in checks}


def _start(name: str, check: Callable[[], dict], answers: dict[str, dict]) -> Any:
    """``check`` running in its own thread (a greenlet under gevent, but an OS
    thread for NATIVE_CHECKS); returns what to ``wait(timeout)`` on."""
    def run() -> bool:
        try:
            answers[name] = check()
        except Exception as exc:  # any failure is "down"; the reason is logged, not shown
            log.warning("health: %s check failed: %s", name, exc)
            answers[name] = {"ok": False, "error": "check failed"}
        return True

    if name in NATIVE_CHECKS and _under_gevent():
        return _native_pool().spawn(run)  # an AsyncResult, thread-safe to wait on
    finished = threading.Event()
    threading.Thread(target=lambda: run() and finished.set(), name=f"health-{name}",
                     daemon=True).start()
    return finished


@functools.cache
def _native_pool() -> Any:
    """OS threads of this (gevent) worker for NATIVE_CHECKS: a pool of their own,
    so that checks stuck for good never starve the hub's (its DNS lookups)."""
    from gevent.threadpool import ThreadPool  # only where gevent runs already
    return ThreadPool(4)


def _under_gevent() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))


def _database(svc: Service, seconds: float) -> dict:
    try:
        with deadline(seconds):  # its operations end with the check
            mongo = svc.mongo()
            mongo.ping()
            return {"ok": True, "jobs": mongo.jobs.job_counts()}
    except Exception as exc:  # any failure is "down"; the reason is logged, not shown
        log.warning("health: database down: %s", exc)
        if is_timeout(exc):
            return {"ok": False, "error": f"no answer within {seconds:g} s"}
        return {"ok": False, "error": "unreachable"}


def _storage(svc: Service) -> dict:
    contents = svc.config.contents_dir
    try:
        contents.mkdir(parents=True, exist_ok=True)
        free = free_bytes(contents)
    except OSError:
        return {"ok": False, "error": "contents folder not writable"}
    floor = floor_bytes(svc.config)  # processing.min_free_mb, as new work is refused
    return {"ok": free >= floor, "freeBytes": free, "minFreeBytes": floor}


def _queue(svc: Service) -> dict:
    if svc.config.broker_url:  # the Celery engine: is its broker there?
        return svc.notifier.health()
    if executor_running(svc.config):
        return {"ok": True, "engine": "embedded"}
    return {"ok": False, "engine": "embedded", "error": "no executor is running"}
