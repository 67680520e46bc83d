"""Hostile input at the HTTP edge: no input gives a 5xx, every answer is a documented
status with a JSON body and a message, and bodies over server.max_body_bytes are
refused (413) without being held in a web worker's memory.

Generated input (hypothesis) goes through schemas.parse_process_request and the
Flask routes; the size limits are tried on gunicorn started as README.md says.
Schemathesis against the live server is in test_schemathesis.py.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
import requests
from conftest import AUTH_KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import LiveServer, memory_kib

from api.openapi import build_document
from config import load_config
from exceptions import BadRequest, ConfigError, NotFound
from intake.schemas import (
    ID_PATTERN,
    MAX_FRAME_RATE,
    PROCESS_FIELDS,
    ProcessRequest,
    parse_process_request,
)

KEY = {"X-Auth-Key": AUTH_KEY}
MiB = 1 << 20
FIELDS = [spec.name for spec in PROCESS_FIELDS] + ["auth_key"]
# Function-scoped fixtures (the app, its database) are shared by a test's examples
# on purpose: every example is a new request to the same service.
HOSTILE = settings(max_examples=80, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=12)
# Values near what the service accepts, so that examples also get past validation.
plausible = st.one_of(
    st.from_regex(ID_PATTERN, fullmatch=True),
    st.integers(-2, MAX_FRAME_RATE + 2), st.integers(-2, 2).map(str),
    st.sampled_from(["uploads/cam1.mp4", "contents/uploads/cam1.mp4", "uploads", "../x",
                     "uploads/\udc80.mp4", "uploads/link.mp4", "a" * 300, " ", "\x00",
                     "fixed", "shots", "Shots"]))
field_values = st.one_of(json_values, plausible)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), field_values,
                         max_size=len(FIELDS) + 2)
# A form holds text only (a client cannot send "\udc80"; its bytes are %80).
form_bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8),
                              st.text(max_size=40) | plausible.map(str).filter(str.isprintable),
                              max_size=10)
# Bytes as a body: nonsense, or JSON text cut short, nested deeply, or not UTF-8.
raw_bodies = st.one_of(
    st.binary(max_size=200),
    bodies.map(lambda body: json.dumps(body).encode("utf-8", "surrogatepass")),
    st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 200_000).map(lambda depth: b'{"upload_id":' + b"{\"a\":" * depth),
    st.binary(max_size=50).map(lambda junk: b'{"content_path":"' + junk + b'"}'))
content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-16", "application/x-www-form-"
    "urlencoded", "application/x-www-form-urlencoded; charset=bogus", "multipart/form-data",
    "multipart/form-data; boundary=", "multipart/form-data; boundary=x", "text/plain",
    "application/merge-patch+json", "", "\x7f/\x7f"])


# -- fixtures -----------------------------------------------------------------------

@pytest.fixture
def hostile_contents(contents: Path) -> Path:
    """A video, a link to it, and names that are not UTF-8 (and links to them)."""
    uploads = contents / "uploads"
    (uploads / "cam1.mp4").write_bytes(b"not checked before the job runs")
    (uploads / "link.mp4").symlink_to(uploads / "cam1.mp4")
    for name in (b"\x80.mp4", b"\xff.mp4"):  # Latin-1 names, as an old client writes them
        Path(os.fsdecode(os.fsencode(uploads) + b"/" + name)).write_bytes(b"x")
    os.symlink(b"\x80.mp4", os.fsencode(uploads) + b"/to-latin1.mp4")
    return contents


@pytest.fixture
def statuses(app) -> dict[tuple[str, str], set[int]]:
    """The statuses the OpenAPI document gives each (path, method)."""
    document = build_document(app)
    return {(path, method): {int(code) for code in operation["responses"]}
            for path, item in document["paths"].items()
            for method, operation in item.items()}


def assert_documented(response, documented: set[int]) -> dict:
    assert response.status_code < 500, response.data[:300]
    assert response.status_code in documented, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json", response.data[:300]
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("message"), str), body
    assert "Traceback" not in response.get_data(as_text=True)
    return body


# -- generated input: the parser and the routes -------------------------------------

@HOSTILE
@given(body=bodies)
def test_parser_accepts_only_valid_requests(hostile_contents, body):
    """Any JSON value in any field: a checked request, or a 400/404 naming the field."""
    try:
        req = parse_process_request(body, hostile_contents, versions=[1])
    except BadRequest as exc:
        assert exc.errors and set(exc.errors) <= set(FIELDS) | {"body"}, exc.errors
        assert all(isinstance(reason, str) and reason for reason in exc.errors.values())
        return
    except NotFound as exc:
        assert exc.code == "content_not_found"
        return
    assert isinstance(req, ProcessRequest)
    assert ID_PATTERN.match(req.upload_id) and ID_PATTERN.match(req.project_id)
    assert 1 <= req.frame_rate <= MAX_FRAME_RATE or req.request_type == 2
    assert req.task_split in (None, "fixed", "shots") and req.skip_still in (None, 0, 1)
    root = hostile_contents.resolve()
    if req.content_path:  # what the job document will hold: inside, existing, UTF-8
        path = Path(req.content_path)
        assert path.exists() and (path == root or root in path.parents)
        req.content_path.encode("utf-8")


@HOSTILE
@given(body=bodies)
def test_json_bodies_get_documented_answers(client, mongo, hostile_contents, statuses,
                                            body):
    response = client.post("/api/processContent", headers=KEY, data=json.dumps(
        body).encode("utf-8", "surrogatepass"), content_type="application/json")
    assert_documented(response, statuses[("/api/processContent", "post")])


@HOSTILE
@given(body=form_bodies, multipart=st.booleans())
def test_form_bodies_get_documented_answers(client, mongo, hostile_contents, statuses,
                                            body, multipart):
    response = client.post("/api/processContent", headers=KEY, data=body,
                           content_type="multipart/form-data" if multipart else None)
    assert_documented(response, statuses[("/api/processContent", "post")])


@HOSTILE
@given(raw=raw_bodies, content_type=content_types, path=st.sampled_from(
    ["/api/processContent", "/api/datasets/v1/build"]))
def test_raw_bodies_get_documented_answers(client, mongo, hostile_contents, statuses, raw,
                                           content_type, path):
    response = client.post(path, headers={**KEY, "Content-Type": content_type}, data=raw)
    documented = statuses[(path.replace("v1", "{version_id}"), "post")]
    body = assert_documented(response, documented)
    if response.status_code == 400 and "body" in body.get("errors", {}):
        assert body["errors"]["body"].startswith(("invalid JSON body", "must be a JSON"))


@HOSTILE
@given(ident=st.text(min_size=1, max_size=300), route=st.sampled_from(
    ["/api/processContent/{upload_id}", "/api/datasets/{version_id}"]))
def test_odd_ids_in_the_path(client, mongo, statuses, ident, route):
    url = route.split("{")[0] + quote(ident.encode("utf-8", "surrogatepass"), safe="")
    response = client.get(url, headers=KEY)
    if response.status_code == 404 and response.get_json()["code"] == "not_found":
        return  # an id with "/" in it names no route: the JSON 404 of an unknown URL
    assert_documented(response, statuses[(route, "get")])


@HOSTILE
@given(state=st.none() | st.sampled_from(["dead", "pending", "delivered"]) | st.text(max_size=20),
       limit=st.none() | st.sampled_from(["1", "1000", "1001", "0", "²", "١٠", "9" * 5000, "-1"])
       | st.text(max_size=20))
def test_event_listing_queries_get_documented_answers(client, mongo, statuses, state, limit):
    query = {key: value.encode("utf-8", "surrogatepass") for key, value in
             (("state", state), ("limit", limit)) if value is not None}
    response = client.get("/api/events", headers=KEY, query_string=query)
    if response.status_code == 200:  # a listing, not a message
        assert response.get_json()["state"] in ("dead", "pending", "delivered")
        assert state in (None, "dead", "pending", "delivered")
        assert limit is None or (limit.isascii() and 1 <= int(limit) <= 1000)
    else:
        assert_documented(response, statuses[("/api/events", "get")])


@HOSTILE
@given(ident=st.text(min_size=1, max_size=300))
def test_odd_event_ids_are_404(client, mongo, statuses, ident):
    url = f"/api/events/{quote(ident.encode('utf-8', 'surrogatepass'), safe='')}/redeliver"
    response = client.post(url, headers=KEY)
    body = assert_documented(response, statuses[("/api/events/{event_id}/redeliver", "post")])
    assert response.status_code == 404, body


# -- the known cases, one by one ----------------------------------------------------

@pytest.mark.parametrize("body,content_type", [
    # %FF decodes to U+FFFD (Werkzeug replaces bad UTF-8), which names no file here.
    (b"upload_id=u1&project_id=p1&frame_rate=5&content_path=uploads/%FF.mp4",
     "application/x-www-form-urlencoded"),
    (b"upload_id=u1&project_id=p1&frame_rate=5&content_path=uploads/%80.mp4",
     "application/x-www-form-urlencoded"),
    (b'--b\r\nContent-Disposition: form-data; name="upload_id"\r\n\r\nu1\r\n--b\r\n'
     b'Content-Disposition: form-data; name="project_id"\r\n\r\np1\r\n--b\r\n'
     b'Content-Disposition: form-data; name="frame_rate"\r\n\r\n5\r\n--b\r\n'
     b'Content-Disposition: form-data; name="content_path"\r\n\r\nuploads/\xff.mp4\r\n'
     b'--b--\r\n', "multipart/form-data; boundary=b"),
])
def test_non_utf8_bytes_name_no_file(client, mongo, hostile_contents, body, content_type):
    response = client.post("/api/processContent", headers={**KEY, "Content-Type":
                                                           content_type}, data=body)
    assert response.status_code == 404, response.json
    assert response.json["code"] == "content_not_found"
    assert mongo.uploads.get_upload("u1") is None


@pytest.mark.parametrize("content_path,reason", [
    ("uploads/\\udc80.mp4", "must be valid UTF-8 text"),  # the file b"\x80.mp4" exists
    ("uploads/to-latin1.mp4", "must resolve to a path that is valid UTF-8"),
])
def test_non_utf8_content_path_is_400(client, mongo, hostile_contents, content_path, reason):
    raw = ('{"upload_id": "u1", "project_id": "p1", "frame_rate": 5, "content_path": "%s"}'
           % content_path).encode()
    response = client.post("/api/processContent", headers=KEY, data=raw,
                           content_type="application/json")
    assert response.status_code == 400, response.json
    assert response.json["errors"] == {"content_path": reason}
    assert mongo.uploads.get_upload("u1") is None


@pytest.mark.parametrize("path", ["/api/processContent", "/api/datasets/v1/build"])
@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000])
def test_deeply_nested_json_is_400(client, mongo, path, raw):
    response = client.post(path, headers=KEY, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json["errors"] == {"body": "invalid JSON body: nested too deeply"}


@pytest.mark.parametrize("raw, deep", [
    (b"[" * 65, True), (b"[" * 64 + b"]" * 64, False),
    (b'{"a": "' + b"[" * 500 + b'"}', False),  # brackets in a string do not nest
    (b'{"a": "\\"' + b"[" * 500 + b'"}', False),  # nor after an escaped quote
    (b'{"a": "\\\\", "b":' + b"[" * 65 + b"}", True),  # an escaped backslash ends no string
    (b'{"upload_id": "u1", "frame_rate": 5}', False)])
def test_nesting_is_measured_before_parsing(raw, deep):
    """Deep nesting is refused before the json module recurses into it: its
    RecursionError comes near the interpreter's limit, where a finalizer run
    by the garbage collector meanwhile fails as well."""
    from api.auth import MAX_JSON_DEPTH, _nested_deeper_than
    assert _nested_deeper_than(raw, MAX_JSON_DEPTH) is deep


@pytest.mark.parametrize("raw", [b"{", b"", b'{"a":' + b"9" * 5000 + b"}",
                                 b'{"a": "\xff"}', b"\xef\xbb\xbf{}\x00"])
def test_invalid_json_is_400(client, mongo, raw):
    response = client.post("/api/processContent", headers=KEY, data=raw,
                           content_type="application/json")
    assert response.status_code == 400, response.json
    assert response.json["errors"]["body"] in ("invalid JSON body", "must be a JSON object")


def test_name_too_long_is_404(post, mongo, hostile_contents):
    response = post(content_path="uploads/" + "a" * 300 + ".mp4")
    assert response.status_code == 404 and response.json["code"] == "content_not_found"


@pytest.mark.parametrize("key", ["\udc80", "é" * 10_000, "", " "])
def test_odd_auth_keys_are_401(client, mongo, key):
    raw = json.dumps({"auth_key": key}).encode("utf-8", "surrogatepass")
    response = client.post("/api/processContent", data=raw, content_type="application/json")
    assert response.status_code == 401 and response.json["code"] == "unauthorized"


@pytest.mark.parametrize("headers", [{}, KEY])
@pytest.mark.parametrize("key", [5, ["x"], {"a": 1}, None, True])
def test_auth_keys_that_are_not_strings_are_400(client, mongo, key, headers):
    response = client.post("/api/processContent", headers=headers, json={"auth_key": key})
    assert response.status_code == 400
    assert response.json["errors"] == {"auth_key": "must be a string"}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "X"])
@pytest.mark.parametrize("url", ["/api/processContent", "/api/processContent/u1",
                                 "/api/datasets/v1/build", "/api/datasets/v1", "/api/health",
                                 "/metrics", "/api/openapi.json", "/api/docs"])
def test_odd_methods_are_405_with_allow(client, mongo, method, url):
    response = client.open(url, method=method, headers=KEY)
    assert response.status_code == 405 and response.json["code"] == "method_not_allowed"
    assert response.headers["Allow"]


@pytest.mark.parametrize("headers", [
    {"X-Auth-Key": "k" * 60_000}, {"X-Auth-Key": "\xff\xfe"}, {"Content-Length": "-1"},
    {"Content-Length": "99999999999999999999"}, {"Content-Type": "application/json; x=" +
                                                 "y" * 50_000},
    {"Transfer-Encoding": "gzip"}, {"Accept": "\x00" * 100}])
def test_odd_headers_are_never_5xx(client, mongo, headers):
    response = client.post("/api/processContent", headers=headers, data=b"{}")
    assert 400 <= response.status_code < 500, response.data[:300]
    assert response.mimetype == "application/json"


# -- the body size limit, in the app ------------------------------------------------

@pytest.mark.parametrize("kind", ["json", "urlencoded", "multipart"])
def test_body_over_the_limit_is_413(make_config, mongo, kind):
    from app import create_app
    client = create_app(make_config(SERVER_MAX_BODY_BYTES="4096")).test_client()
    fields = {"auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "pad": "x" * 5000}
    if kind == "json":
        response = client.post("/api/processContent", json=fields)
    else:
        response = client.post("/api/processContent", data=fields, content_type=(
            "multipart/form-data" if kind == "multipart" else None))
    assert response.status_code == 413
    assert response.json == {"code": "body_too_large", "message": "the request body is "
                             "larger than 4096 bytes (server.max_body_bytes)"}
    fields["pad"] = "x" * 3000  # under the limit: read and checked as usual
    assert client.post("/api/processContent", json=fields).status_code == 400


@pytest.mark.parametrize("value", ["0", "1023", str((1 << 30) + 1), "1MB"])
def test_max_body_bytes_is_validated(env, value):
    with pytest.raises(ConfigError, match="server.max_body_bytes"):
        load_config(env={**env, "SERVER_MAX_BODY_BYTES": value})


# -- the body size limit, on gunicorn as the README starts it -----------------------

def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes sent chunked (requests sends a generator without Content-Length)."""
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


class PeakRss:
    """The highest VmRSS of ``pid`` while the block runs, sampled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_kib = max(self.peak_kib, memory_kib(self.pid, "VmRSS"))

    def __enter__(self) -> "PeakRss":
        self.peak_kib = memory_kib(self.pid, "VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def live(env, contents, mongo):
    server = LiveServer(env).wait_ready()
    yield server
    server.stop()


BIG, TEN = 50 * 1000 * 1000, 10 * 1000 * 1000
# The finding's two kinds at 50 MB; the others at 10 MB, which is enough to show
# the limit (1 MiB) holds and keeps the test short: gunicorn reads and discards
# the rest of a refused body (so that the client sees the 413) at ~5-10 MB/s.
BIG_BODIES = {
    "json": lambda: (b'{"pad": "' + b"x" * BIG + b'"}', "application/json"),
    "urlencoded": lambda: (b"pad=" + b"x" * BIG, "application/x-www-form-urlencoded"),
    "json chunked": lambda: (chunks(BIG), "application/json"),
    "urlencoded chunked": lambda: (chunks(TEN), "application/x-www-form-urlencoded"),
    "multipart": lambda: (b'--b\r\nContent-Disposition: form-data; name="pad"\r\n\r\n'
                          + b"x" * TEN + b"\r\n--b--\r\n", "multipart/form-data; boundary=b"),
    "multipart chunked": lambda: (chunks(TEN), "multipart/form-data; boundary=b"),
}


def test_big_bodies_refused_in_bounded_memory(live, mongo, record_property):
    """Each big body is answered 413 while the web worker's memory stays flat."""
    (worker,) = live.worker_pids()
    url = f"{live.base}/api/processContent"
    # Warm up the worker (imports, the database client) before measuring.
    assert requests.post(url, headers=KEY, json={}, timeout=10).status_code == 400
    for name, make in BIG_BODIES.items():
        body, content_type = make()
        hwm_before = memory_kib(worker, "VmHWM")
        with PeakRss(worker) as rss:
            response = requests.post(url, data=body, timeout=120, headers={
                **KEY, "Content-Type": content_type})
        del body
        assert response.status_code == 413, (name, response.text[:200])
        assert response.json()["code"] == "body_too_large"
        grown_mib = (memory_kib(worker, "VmHWM") - hwm_before) / 1024
        peak_mib = rss.peak_kib / 1024
        record_property(f"{name} peak RSS MiB", round(peak_mib, 1))
        print(f"{name}: 413, worker peak RSS {peak_mib:.1f} MiB, VmHWM +{grown_mib:.1f} MiB")
        assert grown_mib < 8, (name, grown_mib)  # the body is 10 or 50 MB
    # The same worker goes on answering.
    assert live.worker_pids() == [worker]
    response = requests.post(url, headers=KEY, json={"upload_id": "u1"}, timeout=10)
    assert response.status_code == 400 and "project_id" in response.json()["errors"]
