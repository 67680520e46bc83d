"""HTTP API: one blueprint per resource, errors mapped in ``api.errors``."""
from __future__ import annotations

from flask import Flask

from api import errors, health, process_content


def register(app: Flask) -> None:
    app.register_blueprint(process_content.bp)
    app.register_blueprint(health.bp)
    errors.register(app)
