"""The OpenAPI 3.0 document of the HTTP API (served at ``/api/openapi.json``).

Built, not written by hand: request bodies come from the tables that validate
them (``schemas.py``), error responses from the error hierarchy
(``exceptions.py``: each class's HTTP status and code), and only routes the
app really has are described. OpenAPI 3.0 rather than 3.1: the Swagger UI
that ships offline in the swagger-ui-bundle package (4.x) renders 3.0 only.
"""
from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any, Iterable, Union

from flask import Flask

from api.openapi_schemas import components, ref
from exceptions import (
    BadRequest,
    BodyTooLarge,
    Conflict,
    DatabaseUnavailable,
    InsufficientStorage,
    NotFound,
    ServiceError,
    Unauthorized,
)

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1.0"
KEY = [{"authKey": []}]
# An error a route may answer: the class, or the class and the codes it uses there.
ErrorSpec = Union[type[ServiceError], tuple[type[ServiceError], Iterable[str]]]


def build_document(app: Flask) -> dict[str, Any]:
    """The document for ``app``: every described route that ``app`` serves."""
    served = {(_openapi_path(rule.rule), method.lower())
              for rule in app.url_map.iter_rules() for method in rule.methods or ()}
    paths: dict[str, dict[str, Any]] = {}
    for path, method, operation in OPERATIONS:
        if (path, method) in served:
            paths.setdefault(path, {})[method] = operation()
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Content processor", "version": API_VERSION,
                 "description": "Cuts uploaded videos and image sets into browser-playable "
                                "task clips, auto-annotates them and builds datasets. Every "
                                "endpoint but /api/health, /metrics and these docs needs the "
                                "key."},
        "tags": [{"name": "uploads"}, {"name": "datasets"}, {"name": "events"},
                 {"name": "operations"}],
        "paths": paths,
        "components": components(app.config["SERVICE"].registry.versions),
    }


def _openapi_path(rule: str) -> str:
    """Flask's ``/x/<name>`` or ``/x/<conv:name>`` as OpenAPI's ``/x/{name}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def error_responses(*errors: ErrorSpec) -> dict[str, Any]:
    """Responses for ``errors``, grouped by HTTP status, each naming its codes."""
    by_status: dict[int, tuple[type[ServiceError], list[str]]] = {}
    for spec in errors:
        cls, codes = spec if isinstance(spec, tuple) else (spec, [spec.code])
        entry = by_status.setdefault(cls.http_status, (cls, []))
        entry[1].extend(code for code in codes if code not in entry[1])
    responses = {}
    for status, (cls, codes) in sorted(by_status.items()):
        base = ref("ValidationError" if issubclass(cls, BadRequest) else "Error")
        schema = {"allOf": [base, {"type": "object", "properties": {
            "code": {"type": "string", "enum": codes}}}]}
        responses[str(status)] = _json(_summary(cls), schema)
    return responses


def _summary(cls: type[ServiceError]) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    phrase = HTTPStatus(cls.http_status).phrase
    return f"{phrase}: {doc[0]}" if doc else phrase


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _linked(response: dict[str, Any], operation_id: str, name: str) -> dict[str, Any]:
    """``response`` with a link: its body's ``name`` is where to follow it."""
    link = {"operationId": operation_id, "parameters": {name: f"$response.body#/{name}"}}
    return {**response, "links": {operation_id: link}}


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def _post_process_content() -> dict[str, Any]:
    body = {"application/json": {"schema": ref("ProcessContentRequest")},
            **{media: {"schema": ref("ProcessContentForm")} for media in (
                "application/x-www-form-urlencoded", "multipart/form-data")}}
    return {
        "tags": ["uploads"], "operationId": "processContent", "security": KEY,
        "summary": "Cut an upload into task clips and/or auto-annotate it",
        "description": "Returns in milliseconds: the job is recorded, then runs in the "
                       "background. Follow it at status_url.",
        "requestBody": {"required": True, "content": body},
        "responses": {
            "202": _linked(_json("Accepted; processing in the background.", ref("Accepted")),
                           "uploadStatus", "upload_id"),
            "200": _linked(_json("force_write=0 and the same request already completed: "
                                 "nothing is redone.", ref("UploadStatus")),
                           "uploadStatus", "upload_id"),
            **error_responses(BadRequest, Unauthorized, (NotFound, ["content_not_found"]),
                              (Conflict, ["in_progress", "already_processed", "no_tasks",
                                          "cut_incomplete"]),
                              BodyTooLarge, DatabaseUnavailable, InsufficientStorage)},
    }


def _get_upload() -> dict[str, Any]:
    return {
        "tags": ["uploads"], "operationId": "uploadStatus", "security": KEY,
        "summary": "An upload's status, progress and timings",
        "parameters": [_path_id("upload_id", "The upload's id.")],
        "responses": {"200": _json("The upload.", ref("UploadStatus")),
                      **error_responses(Unauthorized, (NotFound, ["upload_not_found"]),
                                        DatabaseUnavailable)},
    }


def _get_review() -> dict[str, Any]:
    signed = [{"name": name, "in": "query", "required": False, "description": text,
               "schema": {"type": "string"}}
              for name, text in (("expires", "The signed link's expiry (unix seconds)."),
                                 ("sig", "The signed link's signature (the status's "
                                         "reviewUrl has both); without them the key is "
                                         "needed."))]
    return {
        "tags": ["uploads"], "operationId": "uploadReview", "security": KEY,
        "summary": "An HTML page of the upload's frames, auto boxes, tracks and timings",
        "parameters": [_path_id("upload_id", "The upload's id."), *signed],
        "responses": {"200": {"description": "The page (self-contained HTML).",
                              "content": {"text/html": {"schema": {"type": "string"}}}},
                      "403": _json("Forbidden: the signed link is expired or altered.",
                                   ref("Error")),
                      **error_responses(Unauthorized, (NotFound, ["upload_not_found"]),
                                        DatabaseUnavailable)},
    }


def _post_dataset_build() -> dict[str, Any]:
    return {
        "tags": ["datasets"], "operationId": "buildDataset", "security": KEY,
        "summary": "Build a dataset version (YOLO and COCO, uploaded to S3)",
        "parameters": [_path_id("version_id", "The AnnotationDatasetVersion's id.")],
        "responses": {"202": _linked(_json("Accepted; building in the background.",
                                           ref("DatasetAccepted")),
                                     "datasetStatus", "version_id"),
                      # 400: a body that is sent (for auth_key) must be a JSON object
                      **error_responses(BadRequest, Unauthorized,
                                        (NotFound, ["version_not_found"]),
                                        (Conflict, ["in_progress"]), BodyTooLarge,
                                        DatabaseUnavailable, InsufficientStorage)},
    }


def _get_dataset() -> dict[str, Any]:
    return {
        "tags": ["datasets"], "operationId": "datasetStatus", "security": KEY,
        "summary": "A dataset version's build status, per task",
        "parameters": [_path_id("version_id", "The AnnotationDatasetVersion's id.")],
        "responses": {"200": _json("The dataset version.", ref("DatasetStatus")),
                      **error_responses(Unauthorized, (NotFound, ["version_not_found"]),
                                        DatabaseUnavailable)},
    }


def _list_events() -> dict[str, Any]:
    query = [{"name": "state", "in": "query", "required": False,
              "description": "Which events (default dead: undeliverable).",
              "schema": {"type": "string", "enum": ["pending", "delivered", "dead"]}},
             {"name": "limit", "in": "query", "required": False,
              "description": "At most this many, oldest first (default 100).",
              "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]
    return {
        "tags": ["events"], "operationId": "listEvents", "security": KEY,
        "summary": "Events of the outbox by state: the dead ones above all",
        "parameters": query,
        "responses": {"200": _json("The events.", ref("EventList")),
                      **error_responses(BadRequest, Unauthorized, DatabaseUnavailable)},
    }


def _redeliver_event() -> dict[str, Any]:
    return {
        "tags": ["events"], "operationId": "redeliverEvent", "security": KEY,
        "summary": "Send an event again (attempts start over), in its upload's order",
        "parameters": [_path_id("event_id", "The event's id (its webhook-id).")],
        "responses": {"202": _json("Queued to be sent again.", ref("Event")),
                      **error_responses(BadRequest, Unauthorized,
                                        (NotFound, ["event_not_found"]), BodyTooLarge,
                                        DatabaseUnavailable)},
    }


def _get_health() -> dict[str, Any]:
    return {
        "tags": ["operations"], "operationId": "health", "security": [],
        "summary": "A check per dependency (database, storage, queue); no key needed",
        "responses": {"200": _json("Every dependency is up.", ref("Health")),
                      "503": _json("A dependency is down.", ref("Health"))},
    }


def _get_metrics() -> dict[str, Any]:
    return {
        "tags": ["operations"], "operationId": "metrics", "security": [],
        "summary": "Prometheus metrics: jobs by state, frames/s, stage durations",
        "responses": {"200": {"description": "Prometheus text format (OpenMetrics when "
                                             "asked for in Accept).",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }


def _get_openapi() -> dict[str, Any]:
    return {
        "tags": ["operations"], "operationId": "openapi", "security": [],
        "summary": "This document (interactive docs: /api/docs)",
        "responses": {"200": _json("The OpenAPI document.", {"type": "object"})},
    }


OPERATIONS = [
    ("/api/processContent", "post", _post_process_content),
    ("/api/processContent/{upload_id}", "get", _get_upload),
    ("/api/processContent/{upload_id}/review", "get", _get_review),
    ("/api/datasets/{version_id}/build", "post", _post_dataset_build),
    ("/api/datasets/{version_id}", "get", _get_dataset),
    ("/api/events", "get", _list_events),
    ("/api/events/{event_id}/redeliver", "post", _redeliver_event),
    ("/api/health", "get", _get_health),
    ("/metrics", "get", _get_metrics),
    ("/api/openapi.json", "get", _get_openapi),
]
