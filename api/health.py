"""GET /api/health: a check per dependency, no key, no secrets."""
from __future__ import annotations

import shutil

from flask import Blueprint, current_app, jsonify

from executor_control import executor_running

bp = Blueprint("health", __name__, url_prefix="/api")

MIN_FREE_BYTES = 1 << 30


@bp.get("/health")
def health():
    service = current_app.config["SERVICE"]
    checks = {"database": _database(service), "storage": _storage(service),
              "queue": _queue(service)}
    ok = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if ok else "degraded", "checks": checks}
    return jsonify(body), 200 if ok else 503


def _database(service) -> dict:
    try:
        mongo = service.mongo()
        mongo.ping()
        return {"ok": True, "jobs": mongo.job_counts()}
    except Exception as exc:  # any failure is "down"; the reason is logged, not shown
        current_app.logger.warning("health: database down: %s", exc)
        return {"ok": False, "error": "unreachable"}


def _storage(service) -> dict:
    contents = service.config.contents_dir
    try:
        contents.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(contents).free
    except OSError:
        return {"ok": False, "error": "contents folder not writable"}
    return {"ok": free >= MIN_FREE_BYTES, "freeBytes": free}


def _queue(service) -> dict:
    if service.config.broker_url:  # the Celery engine: is its broker there?
        return service.executor.health()
    if executor_running(service.config):
        return {"ok": True, "engine": "embedded"}
    return {"ok": False, "engine": "embedded", "error": "no executor is running"}
