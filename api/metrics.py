"""GET /metrics: Prometheus metrics (see metrics.py for what and why).

No key, like /api/health: it shows counts and timings, no ids and no secrets,
and a scraper sends no custom header.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from prometheus_client.exposition import choose_encoder

from metrics import make_registry

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions.get("metrics_registry")
    if registry is None:
        service = current_app.config["SERVICE"]
        registry = current_app.extensions["metrics_registry"] = make_registry(service.mongo)
    # OpenMetrics when the scraper asks for it (Prometheus does): it has a proper
    # type for the sliding-window histograms; the classic text format otherwise.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), content_type=content_type)
