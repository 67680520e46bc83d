"""POST /api/processContent and GET /api/processContent/<upload_id>."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify

import uploads
from api.auth import check_key, request_body
from logging_setup import set_upload_id
from schemas import parse_process_request

log = logging.getLogger(__name__)
bp = Blueprint("process_content", __name__, url_prefix="/api/processContent")


@bp.post("")
def process_content():
    body = request_body()
    check_key(body)
    set_upload_id(body.get("upload_id"))  # every line logged from here names the upload
    service = current_app.config["SERVICE"]
    req = parse_process_request(body, service.config.contents_dir, service.registry.versions)
    code, payload = uploads.accept(req, service.mongo(), service.config, service.executor)
    log.info("processContent request_type %d: %d %s", req.request_type, code,
             payload["message"])
    return jsonify(payload), code


@bp.get("/<upload_id>")
def upload_status(upload_id: str):
    check_key({})
    set_upload_id(upload_id)
    service = current_app.config["SERVICE"]
    return jsonify(uploads.status(service.mongo(), upload_id))
