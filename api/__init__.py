"""The HTTP edge, the only package that imports Flask: the application factory,
one blueprint per resource, errors mapped in ``api.errors``."""
from __future__ import annotations

from typing import Callable, Iterable

from flask import Flask

from api import datasets, docs, errors, events, health, metrics, process_content, review
from api.service import Service
from config import Config, load_config, with_auth_key
from logging_setup import set_upload_id
from mongo_manager import deadline


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
    _bound_database_work(app, config.mongodb.request_timeout_ms / 1000)
    return app


def _bound_database_work(app: Flask, seconds: float) -> None:
    """All the database work of one request ends within ``seconds``: a database
    that stops answering (frozen, partitioned) gets a 503 in seconds, instead
    of holding the request, and every request queued behind it, until pymongo's
    heartbeat gives up on the server (about 15 s). A review page reads a whole
    upload: it gets ``review.DEADLINE_FACTOR`` times as long (set here, as a
    nested deadline can only shorten this one)."""
    inner = app.wsgi_app

    def bounded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        factor = review.DEADLINE_FACTOR if review.is_review(environ.get("PATH_INFO", "")) else 1
        with deadline(seconds * factor):
            return inner(environ, start_response)
    app.wsgi_app = bounded  # type: ignore[method-assign]


def _register(app: Flask) -> None:
    app.register_blueprint(process_content.bp)
    app.register_blueprint(review.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(datasets.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(metrics.bp)
    errors.register(app)
    # A handler tags its upload's log lines (logging_setup); the tag ends with the request.
    app.teardown_request(lambda _exc: set_upload_id(None))
