"""POST /api/datasets/<version_id>/build and GET /api/datasets/<version_id>."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

import dataset_builds
from api.auth import check_key, request_body

bp = Blueprint("datasets", __name__, url_prefix="/api/datasets")


@bp.post("/<version_id>/build")
def build(version_id: str):
    check_key(request_body())
    service = current_app.config["SERVICE"]
    return jsonify(dataset_builds.queue_build(service.mongo(), version_id,
                                              service.executor)), 202


@bp.get("/<version_id>")
def version_status(version_id: str):
    check_key({})
    service = current_app.config["SERVICE"]
    return jsonify(dataset_builds.status(service.mongo(), version_id))
