"""POST /api/processContent and GET /api/processContent/<upload_id>."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

import uploads
from api.auth import check_key, request_body
from schemas import parse_process_request

bp = Blueprint("process_content", __name__, url_prefix="/api/processContent")


@bp.post("")
def process_content():
    body = request_body()
    check_key(body)
    service = current_app.config["SERVICE"]
    req = parse_process_request(body, service.config.contents_dir, service.registry.versions)
    code, payload = uploads.accept(req, service.mongo(), service.config, service.executor)
    return jsonify(payload), code


@bp.get("/<upload_id>")
def upload_status(upload_id: str):
    check_key({})
    service = current_app.config["SERVICE"]
    return jsonify(uploads.status(service.mongo(), upload_id))
