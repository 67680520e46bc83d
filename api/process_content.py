"""POST /api/processContent and GET /api/processContent/<upload_id>."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from api.auth import check_key, request_body
from api.review import review_url
from api.service import service
from intake import uploads
from intake.schemas import parse_process_request
from logging_setup import set_upload_id

log = logging.getLogger(__name__)
bp = Blueprint("process_content", __name__, url_prefix="/api/processContent")


@bp.post("")
def process_content():
    body = request_body()
    check_key(body)
    set_upload_id(body.get("upload_id"))  # every line logged from here names the upload
    svc = service()
    req = parse_process_request(body, svc.config.contents_dir, svc.registry.versions)
    code, payload = uploads.accept(req, svc.mongo(), svc.config, svc.notifier)
    log.info("processContent request_type %d: %d %s", req.request_type, code,
             payload["message"])
    return jsonify(payload), code


@bp.get("/<upload_id>")
def upload_status(upload_id: str):
    check_key({})
    set_upload_id(upload_id)
    svc = service()
    return jsonify({**uploads.status(svc.mongo(), upload_id), "reviewUrl": review_url(upload_id)})
