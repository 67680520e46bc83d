"""/api/openapi.json is a valid OpenAPI document that agrees with the validator and
with real responses; /api/docs works offline."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from conftest import AUTH_KEY
from media import cfr_video
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from exceptions import BadRequest, NotFound
from intake.schemas import FIELDS_BY_NAME, PROCESS_FIELDS, parse_process_request

KEY = {"X-Auth-Key": AUTH_KEY}


@pytest.fixture
def document(client) -> dict:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.json


def resolve(document: dict, node: Any) -> Any:
    """``node`` with every local $ref replaced by what it points at."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(document, target)
        return {key: resolve(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(document, value) for value in node]
    return node


def response_schema(document: dict, path: str, method: str, status: int) -> dict:
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method} {path} does not document {status}"
    return resolve(document, responses[str(status)]["content"]["application/json"]["schema"])


def test_document_is_valid_openapi(document):
    validate(document)  # raises on any violation of the OpenAPI 3.0 schema
    assert document["openapi"].startswith("3.0")


def test_every_route_is_documented(app, document):
    undocumented = {"/api/docs", "/api/docs/{name}", "/static/{filename}"}
    routes = {re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
              for rule in app.url_map.iter_rules()}
    assert routes - undocumented == set(document["paths"])
    assert {"/api/processContent", "/api/processContent/{upload_id}", "/api/health",
            "/metrics", "/api/datasets/{version_id}/build",
            "/api/datasets/{version_id}"} <= set(document["paths"])


def test_keyed_operations_name_the_key(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            keyed = path.startswith(("/api/processContent", "/api/datasets", "/api/events"))
            assert (operation["security"] == [{"authKey": []}]) == keyed, (method, path)
            if keyed:
                assert "401" in operation["responses"]


# -- the request schema and parse_process_request agree ---------------------------

def field_cases() -> list[tuple[str, Any]]:
    """Values on and around each documented constraint, from the same table."""
    cases: list[tuple[str, Any]] = []
    for spec in PROCESS_FIELDS:
        if spec.kind == "integer":
            values = [spec.minimum, spec.maximum, spec.minimum - 1, spec.maximum + 1,
                      (spec.minimum + spec.maximum) // 2, "x", 2.5, True, None, [1]]
        elif spec.kind == "identifier":
            values = ["a", "A-b_9", "x" * 64, "x" * 65, "a/b", "a b", "", 12, "é", "a.b"]
        else:
            values = ["uploads/clip.mp4", "uploads/a..b.mp4", "../clip.mp4", "..",
                      "uploads/../uploads/clip.mp4", "uploads/..", 5, "", "a\x00b"]
        cases += [(spec.name, value) for value in values]
    return cases


def parser_accepts(contents: Path, name: str, value: Any) -> bool:
    form = {"upload_id": "u1", "project_id": "p1", "frame_rate": 5, "request_type": 0,
            "content_path": "uploads/clip.mp4", "auto_anno_version": 0, name: value}
    try:
        parse_process_request(form, contents, versions=range(1, 10**6 + 1))
    except BadRequest as exc:
        return name not in exc.errors
    except NotFound:  # the path passed every check; only the file is missing
        return True
    return True


@pytest.fixture
def request_schema(app) -> dict:
    from api.openapi import build_document
    document = build_document(app)
    return resolve(document, document["components"]["schemas"]["ProcessContentRequest"])


@pytest.mark.parametrize("name,value", field_cases(), ids=repr)
def test_field_constraints_agree(request_schema, contents, name, value):
    (contents / "uploads" / "clip.mp4").write_bytes(b"x")
    (contents / "uploads" / "a..b.mp4").write_bytes(b"x")
    documented = OAS30Validator(request_schema["properties"][name]).is_valid(value)
    if value in ("", None):  # absent: fine unless required (here: request_type 0)
        documented = not FIELDS_BY_NAME[name].is_required(0)
    assert parser_accepts(contents, name, value) == documented
    # Numbers may come as strings (urlencoded and multipart bodies only have strings).
    if FIELDS_BY_NAME[name].kind == "integer" and type(value) is int:
        assert parser_accepts(contents, name, str(value)) == documented


@pytest.mark.parametrize("spec", PROCESS_FIELDS, ids=lambda spec: spec.name)
def test_required_and_defaults_agree(request_schema, contents, spec):
    (contents / "uploads" / "clip.mp4").write_bytes(b"x")
    schema = request_schema["properties"][spec.name]
    assert (spec.name in request_schema["required"]) == spec.required
    for request_type in (0, 1, 2):
        form = {"upload_id": "u1", "project_id": "p1", "frame_rate": 5, "request_type":
                request_type, "content_path": "uploads/clip.mp4", "auto_anno_version": 1}
        form.pop(spec.name, None)
        try:
            req = parse_process_request(form, contents, versions=[1])
        except BadRequest as exc:
            missing = exc.errors.get(spec.name) == "required"
        else:
            missing = False
            if "default" in schema:
                assert getattr(req, spec.name) == schema["default"]
        needed = spec.required or request_type in schema.get("x-required-for-request-types", [])
        assert missing == needed, request_type


# -- real responses match the documented ones -------------------------------------

def check(document: dict, path: str, method: str, response) -> dict:
    schema = response_schema(document, path, method, response.status_code)
    OAS30Validator(schema).validate(response.json)
    return schema


def test_upload_responses_match_the_document(client, document, contents, mongo, run_jobs):
    cfr_video(contents / "uploads" / "clip.mp4", 30)
    body = {"auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": 5,
            "content_path": "uploads/clip.mp4"}
    post = "/api/processContent"
    accepted = client.post(post, json=body)
    schema = check(document, post, "post", accepted)
    assert set(accepted.json) == set(schema["properties"])
    check(document, post, "post", client.post(post, json=body))  # 409 in_progress
    run_jobs()
    done = client.get("/api/processContent/u1", headers=KEY)
    schema = check(document, "/api/processContent/{upload_id}", "get", done)
    assert set(done.json) == set(schema["properties"])
    assert set(done.json["timings"]) == set(schema["properties"]["timings"]["properties"])
    check(document, post, "post", client.post(post, json=body))  # 200, nothing redone
    check(document, post, "post", client.post(post, json={**body, "frame_rate": 0}))  # 400
    check(document, post, "post", client.post(post, json={**body, "auth_key": "x"}))  # 401
    check(document, post, "post", client.post(post, json={**body, "upload_id": "u2",
                                                            "content_path": "uploads/no"}))
    check(document, "/api/processContent/{upload_id}", "get",
          client.get("/api/processContent/nope", headers=KEY))  # 404


def test_error_codes_are_documented(client, document, contents, mongo):
    cfr_video(contents / "uploads" / "clip.mp4", 10)
    body = {"auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": 5,
            "content_path": "uploads/no.mp4"}
    response = client.post("/api/processContent", json=body)
    schema = response_schema(document, "/api/processContent", "post", 404)
    assert response.json["code"] in schema["allOf"][1]["properties"]["code"]["enum"]


def test_other_responses_match_the_document(client, document, mongo):
    check(document, "/api/health", "get", client.get("/api/health"))
    version, build = "/api/datasets/{version_id}", "/api/datasets/{version_id}/build"
    known, unknown = "5f0c6b2e9d3e4a1b2c3d4e5f", "5f0c6b2e9d3e4a1b2c3d4e60"
    check(document, version, "get", client.get(f"/api/datasets/{unknown}", headers=KEY))
    check(document, build, "post", client.post(f"/api/datasets/{unknown}/build", json={}))
    check(document, build, "post", client.post(f"/api/datasets/{unknown}/build", headers=KEY))
    mongo.collections.versions.insert_one({"_id": ObjectId(known), "name": "v1", "versionNo": 1})
    found = client.get(f"/api/datasets/{known}", headers=KEY)
    schema = check(document, version, "get", found)
    assert set(found.json) == set(schema["properties"])


# -- the interactive docs, offline ------------------------------------------------

def test_docs_page_loads_only_local_assets(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 4
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and len(response.data) > 100, asset
    assert "/api/openapi.json" in html


def test_docs_serve_only_their_assets(client):
    assert client.get("/api/docs/index.html").status_code == 404
    assert client.get("/api/docs/..%2Fconfig.py").status_code == 404
