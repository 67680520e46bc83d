"""The one place where errors become HTTP responses. Never a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from api.service import service
from exceptions import BodyTooLarge, DatabaseTimeout, DatabaseUnavailable, ServiceError
from mongo_manager import DatabaseError, is_timeout

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        if exc.http_status >= 500:  # ours to look into, not the caller's
            log.warning("%s: %s", exc.code, exc.message)
        return jsonify({**exc.to_dict(), "message": exc.message}), exc.http_status

    @app.errorhandler(DatabaseError)
    def database_error(exc: DatabaseError):
        log.warning("database unreachable: %s", exc)  # pymongo's words name the server
        error = DatabaseUnavailable("the database is unreachable; nothing was accepted")
        if is_timeout(exc):
            seconds = service().config.mongodb.request_timeout_ms / 1000
            error = DatabaseTimeout(f"the database did not answer within {seconds:g} s; "
                                    "nothing was accepted")
        return jsonify(error.to_dict()), error.http_status

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(_exc: RequestEntityTooLarge):
        limit = app.config["MAX_CONTENT_LENGTH"]
        return service_error(BodyTooLarge(f"the request body is larger than {limit} bytes "
                                          "(server.max_body_bytes)"))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # Its headers but the HTML content type: a 405's Allow (RFC 9110).
        headers = [(name, value) for name, value in exc.get_headers()
                   if name.lower() != "content-type"]
        return jsonify({"code": exc.name.lower().replace(" ", "_"),
                        "message": exc.description}), exc.code, headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify({"code": "internal_error", "message": "internal error"}), 500
