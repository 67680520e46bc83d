"""GET /api/health: a check per dependency, no key, no secrets."""
from __future__ import annotations

import shutil

from flask import Blueprint, current_app, jsonify

from api.service import Service, service
from engines.control import executor_running
from storage.space import floor_bytes

bp = Blueprint("health", __name__, url_prefix="/api")


@bp.get("/health")
def health():
    svc = service()
    checks = {"database": _database(svc), "storage": _storage(svc),
              "queue": _queue(svc)}
    ok = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if ok else "degraded", "checks": checks}
    return jsonify(body), 200 if ok else 503


def _database(svc: Service) -> dict:
    try:
        mongo = svc.mongo()
        mongo.ping()
        return {"ok": True, "jobs": mongo.job_counts()}
    except Exception as exc:  # any failure is "down"; the reason is logged, not shown
        current_app.logger.warning("health: database down: %s", exc)
        return {"ok": False, "error": "unreachable"}


def _storage(svc: Service) -> dict:
    contents = svc.config.contents_dir
    try:
        contents.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(contents).free
    except OSError:
        return {"ok": False, "error": "contents folder not writable"}
    floor = floor_bytes(svc.config)  # processing.min_free_mb, as new work is refused
    return {"ok": free >= floor, "freeBytes": free, "minFreeBytes": floor}


def _queue(svc: Service) -> dict:
    if svc.config.broker_url:  # the Celery engine: is its broker there?
        return svc.executor.health()
    if executor_running(svc.config):
        return {"ok": True, "engine": "embedded"}
    return {"ok": False, "engine": "embedded", "error": "no executor is running"}
