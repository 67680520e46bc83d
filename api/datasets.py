"""POST /api/datasets/<version_id>/build and GET /api/datasets/<version_id>."""
from __future__ import annotations

from flask import Blueprint, jsonify

from api.auth import check_key, request_body
from api.service import service
from intake import dataset_builds

bp = Blueprint("datasets", __name__, url_prefix="/api/datasets")


@bp.post("/<version_id>/build")
def build(version_id: str):
    check_key(request_body())
    svc = service()
    return jsonify(dataset_builds.queue_build(svc.mongo(), svc.config, version_id,
                                              svc.notifier)), 202


@bp.get("/<version_id>")
def version_status(version_id: str):
    check_key({})
    svc = service()
    return jsonify(dataset_builds.status(svc.mongo(), version_id))
