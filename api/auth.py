"""The shared key: ``auth_key`` in the body or an ``X-Auth-Key`` header."""
from __future__ import annotations

import hmac
from typing import Any, Mapping

from flask import current_app, request

from exceptions import BadRequest, Unauthorized


def check_key(body: Mapping[str, Any]) -> None:
    given = request.headers.get("X-Auth-Key") or body.get("auth_key") or ""
    expected = current_app.config["SERVICE"].config.server.auth_key
    if not isinstance(given, str):
        given = str(given)
    # compare_digest takes the same time wherever the strings differ.
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong auth key" if given else "missing auth key")


def request_body() -> dict[str, Any]:
    """JSON, urlencoded or multipart bodies as one flat dict."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadRequest({"body": "must be a JSON object"})
        return data
    return {**request.args.to_dict(), **request.form.to_dict()}
