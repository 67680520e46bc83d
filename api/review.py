"""GET /api/processContent/<upload_id>/review: the review page of an upload.

Opened with the key like the rest of the API (``X-Auth-Key``), or from a
browser's address bar through the signed link the status returns as
``reviewUrl``:

    /api/processContent/<id>/review?expires=<unix seconds>&sig=<signature>

``sig`` is HMAC-SHA256, keyed by a key derived from the shared key (so that a
signature made here is good for nothing else), over the upload id and the
expiry, urlsafe base64 without padding. The shared key is never in the link,
the page or a log line; the signature may be (it opens one upload's page
until it expires, and nothing else).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote

from flask import Blueprint, Response, request
from werkzeug.exceptions import Forbidden

from api.auth import check_key
from api.service import service
from intake.review import review_page
from logging_setup import set_upload_id

bp = Blueprint("review", __name__, url_prefix="/api/processContent")

# The database deadline of a review request, as a multiple of every other
# request's (mongodb.request_timeout_ms): reading a long upload's frames for its
# page takes ~1.5 s per 150 tasks on the embedded database (BENCHMARKS.md), so
# the usual 3 s would refuse the page of any upload over ~2 h at 5 fps. A
# person waits for this page; a frozen database still ends it in seconds.
DEADLINE_FACTOR = 10


def is_review(path: str) -> bool:
    """The request is for a review page (its database work may take longer)."""
    return path.startswith("/api/processContent/") and path.endswith("/review")

# The page inlines its images and styles; this makes the browser refuse to
# fetch anything else (and says so in its console), and keeps the signed link
# out of any Referer and any cache.
_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src data:; "
                                       "style-src 'unsafe-inline'",
            "Referrer-Policy": "no-referrer", "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff"}


@bp.get("/<upload_id>/review")
def review(upload_id: str):
    if "sig" in request.args or "expires" in request.args:
        _check_link(upload_id, request.args.get("expires", ""), request.args.get("sig", ""))
    else:
        check_key({})
    set_upload_id(upload_id)
    html = review_page(service().mongo(), upload_id)
    return Response(html, mimetype="text/html", headers=_HEADERS)


def review_url(upload_id: str, now: float | None = None) -> str:
    """The signed link to ``upload_id``'s review page, good for
    ``server.review_link_seconds`` from ``now``."""
    config = service().config
    expires = int((time.time() if now is None else now) + config.server.review_link_seconds)
    sig = signature(config.server.auth_key, upload_id, expires)
    return f"/api/processContent/{quote(upload_id, safe='')}/review?expires={expires}&sig={sig}"


def signature(auth_key: str, upload_id: str, expires: int) -> str:
    key = hmac.new(auth_key.encode(), b"review-link", hashlib.sha256).digest()
    # NUL between the fields: no id and expiry can be shifted into one another.
    message = f"{upload_id}\0{expires}".encode("utf-8", "surrogatepass")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_link(upload_id: str, expires: str, sig: str) -> None:
    """403 unless ``sig`` signs this upload and ``expires``, and that is not past."""
    if not (expires.isascii() and expires.isdigit() and len(expires) < 16):
        raise Forbidden("review link: expires must be a unix time")
    expected = signature(service().config.server.auth_key, upload_id, int(expires))
    if not hmac.compare_digest(sig.encode("utf-8", "surrogatepass"), expected.encode()):
        raise Forbidden("review link: the signature does not match (altered or for "
                        "another upload); ask the status for a new reviewUrl")
    if int(expires) < time.time():
        raise Forbidden("review link: expired; ask the status for a new reviewUrl")
