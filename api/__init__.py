"""The HTTP edge, the only package that imports Flask: the application factory,
one blueprint per resource, errors mapped in ``api.errors``."""
from __future__ import annotations

from flask import Flask

from api import datasets, docs, errors, events, health, metrics, process_content
from api.service import Service
from config import Config, load_config, with_auth_key
from logging_setup import set_upload_id


def create_app(config: Config | None = None) -> Flask:
    """The Flask app for ``config`` (read from config.cfg and the environment if None)."""
    # The one place the key is used: never serve without one, however the
    # config was loaded.
    config = with_auth_key(config or load_config())
    app = Flask("app")  # named as before the move: the root path stays the repo folder
    app.config["SERVICE"] = Service(config)
    # Bodies over the limit are refused (413) before they are read: by
    # Content-Length, or while reading a chunked body (gunicorn marks its input
    # as terminated, so Werkzeug stops reading at the limit).
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = config.server.max_body_bytes
    app.json.sort_keys = False
    # No routing redirects (an HTML 308 for ".../id/" or "...//"): such a URL is
    # served as written or gets the JSON 404. Set before the routes are added.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    _register(app)
    return app


def _register(app: Flask) -> None:
    app.register_blueprint(process_content.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(datasets.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(metrics.bp)
    errors.register(app)
    # A handler tags its upload's log lines (logging_setup); the tag ends with the request.
    app.teardown_request(lambda _exc: set_upload_id(None))
