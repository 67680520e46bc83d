"""GET /api/events (the outbox by state) and POST /api/events/<event_id>/redeliver."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from api.auth import check_key, request_body
from api.service import service
from intake import event_log

bp = Blueprint("events", __name__, url_prefix="/api/events")


@bp.get("")
def list_events():
    check_key({})
    return jsonify(event_log.list_events(service().mongo(), request.args.get("state"),
                                         request.args.get("limit")))


@bp.post("/<event_id>/redeliver")
def redeliver(event_id: str):
    check_key(request_body())
    return jsonify(event_log.redeliver(service().mongo(), event_id)), 202
