"""The shared key: ``auth_key`` in the body or an ``X-Auth-Key`` header."""
from __future__ import annotations

import hmac
from typing import Any, Mapping

from flask import request
from werkzeug.exceptions import BadRequest as HTTPBadRequest
from werkzeug.exceptions import RequestEntityTooLarge

from api.service import service
from exceptions import BadRequest, Unauthorized


def check_key(body: Mapping[str, Any]) -> None:
    if "auth_key" in body and not isinstance(body["auth_key"], str):
        raise BadRequest({"auth_key": "must be a string"})  # as documented, header or not
    given = request.headers.get("X-Auth-Key") or body.get("auth_key") or ""
    expected = service().config.server.auth_key
    # compare_digest takes the same time wherever the strings differ;
    # surrogatepass: a JSON "\udc80" is a wrong key, not an encoding error.
    if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode()):
        raise Unauthorized("missing or wrong auth key" if given else "missing auth key")


def request_body() -> dict[str, Any]:
    """JSON, urlencoded or multipart bodies as one flat dict."""
    _read_within_limit()
    if request.is_json:
        if _nested_deeper_than(request.get_data(cache=True), MAX_JSON_DEPTH):
            raise BadRequest({"body": "invalid JSON body: nested too deeply"})
        try:
            data = request.get_json()
        except HTTPBadRequest:  # not JSON: bad syntax or encoding, a number too long
            raise BadRequest({"body": "invalid JSON body"}) from None
        except RecursionError:  # the json module gives up on deep nesting this way
            raise BadRequest({"body": "invalid JSON body: nested too deeply"}) from None
        if not isinstance(data, dict):
            raise BadRequest({"body": "must be a JSON object"})
        return data
    return {**request.args.to_dict(), **request.form.to_dict()}


# No request of this API nests deeper than a few levels. Refused before parsing:
# the json module gives up on deep nesting only with a RecursionError, near
# the interpreter's limit, where a finalizer that the garbage collector runs
# meanwhile fails too (an "unraisable exception", seen in a test run).
MAX_JSON_DEPTH = 64


def _nested_deeper_than(data: bytes, limit: int) -> bool:
    """Brackets outside strings open more than ``limit`` levels somewhere."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the usual body: too few brackets to nest that deep
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if escaped:  # the character after a backslash, in a string
            escaped = False
        elif in_string:
            escaped = byte == 0x5C  # backslash
            in_string = byte != 0x22  # a quote ends it
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _read_within_limit() -> None:
    """Read the body (kept for the parsers), or 413 when it is over the limit.

    A body with a Content-Length over the limit is refused before it is read.
    One without (chunked) is read up to the limit, where Werkzeug stops without
    an error: a body that reaches the limit is refused here, rather than parsed
    cut short.
    """
    limit = request.max_content_length
    data = request.get_data(cache=True)
    if limit is not None and request.content_length is None and len(data) >= limit:
        raise RequestEntityTooLarge()
