"""HTTP API: one blueprint per resource, errors mapped in ``api.errors``."""
from __future__ import annotations

from flask import Flask

from api import datasets, docs, errors, health, metrics, process_content
from logging_setup import set_upload_id


def register(app: Flask) -> None:
    app.register_blueprint(process_content.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(datasets.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(metrics.bp)
    errors.register(app)
    # A handler tags its upload's log lines (logging_setup); the tag ends with the request.
    app.teardown_request(lambda _exc: set_upload_id(None))
