"""The OpenAPI component schemas: request bodies from ``schemas.py``, responses here.

The processContent request schema is generated from ``schemas.PROCESS_FIELDS``,
the table ``parse_process_request`` validates with. Responses are described by
small tables of ``name: (type, description)``; tests/test_openapi.py checks
them against real responses, key for key.
"""
from __future__ import annotations

from typing import Any, Collection

from intake.schemas import process_request_schema

STATUS = "0 = in progress or queued, 1 = completed, 2 = error"

# type names: JSON Schema types; "date-time" is an ISO 8601 string; a capitalised
# name is one of the nested tables (NESTED), "Name[]" an array of them; "?" =
# may be null.
UPLOAD_STATUS = {
    "upload_id": ("string", "The upload's id."),
    "project_id": ("string", "Its project's id."),
    "status": ("integer?", STATUS),
    "statusText": ("string?", "The status in words."),
    "progress": ("integer?", "0..100; 100 only once the tasks are in place."),
    "stage": ("string?", "queued, cutting, annotating, done or error."),
    "taskCount": ("integer", "Task clips of the completed result (of the run, once it "
                             "is known: a long video's as soon as its segments are planned)."),
    "readyTaskCount": ("integer", "Tasks visible now: a new upload's tasks are published "
                                  "one by one, in task-number order, as they are cut."),
    "errorMessage": ("ErrorMessage?", "What went wrong (status 2)."),
    "createdAt": ("date-time?", "When the upload was first accepted."),
    "startedAt": ("date-time?", "When its last run started working."),
    "finishedAt": ("date-time?", "When its last run ended."),
    "timings": ("Timings?", "How long the completed run took."),
    "tracks": ("object?", "Tracks per label of the auto boxes of a video run with "
                          "auto-annotation, e.g. {\"car\": 4}; null when not tracked."),
    "timelineRepairs": ("TimelineRepair[]?", "Where the completed video's timestamps "
                        "restarted or jumped (recordings joined end to end, a resumed "
                        "stream) and its frames were moved onto one continuous timeline; "
                        "[] when they did not; null for images or before the first cut "
                        "completes."),
    "shots": ("Shot[]?", "The completed video's shots, in order: a new shot starts at "
                         "each hard cut or fade found in the sampled frames; tracks end "
                         "at them. null for images or before the first cut completes."),
    "stillFramesLeftOut": ("integer", "Sampled frames left out as showing nothing new "
                                      "(0 unless skip_still)."),
    "message": ("string", "The status in words."),
    "reviewUrl": ("string?", "A link to the upload's review page (GET), signed and good "
                             "for server.review_link_seconds (24 h): it opens in a browser "
                             "without the key. In the GET's answer only."),
}
TIMELINE_REPAIR = {
    "sourceFrame": ("integer", "The first frame of the part that was moved (source frame "
                               "numbers count decoded frames from 0, in file order)."),
    "at": ("number", "Its timestamp on the repaired timeline, in seconds from the first "
                     "frame (the timestamp its frame document has)."),
    "shift": ("number", "Seconds the part was moved: its frames' timestamps are their own "
                        "time in the file, from the file's first frame, plus this."),
}
SHOT = {
    "start": ("integer", "Its first sampled source frame (source frame numbers count "
                         "decoded frames from 0, in file order)."),
    "end": ("integer", "Its last sampled source frame."),
    "startTime": ("number", "The start frame's timestamp, in seconds."),
}
TIMINGS = {
    "processingSeconds": ("number", "Working time of the run that completed."),
    "attempts": ("integer", "Runs it took (a crashed run is resumed)."),
    "frames": ("integer", "Frames the completing run handled (sampled or annotated)."),
    "framesPerSecond": ("number", "frames / processingSeconds."),
    "stages": ("object", "Seconds per stage: queued, then cutting or annotating, then "
                         "tracking when the run linked its auto boxes into tracks."),
}
ACCEPTED = {
    "upload_id": ("string", "The upload's id."),
    "status": ("integer", "0: queued."),
    "stage": ("string", "queued"),
    "status_url": ("string", "Where to follow it: GET this path."),
    "message": ("string", "What happened."),
}
DATASET_ACCEPTED = {
    "version_id": ("string", "The dataset version's id."),
    "status": ("integer", "0: queued."),
    "stage": ("string", "queued"),
    "status_url": ("string", "Where to follow it: GET this path."),
    "message": ("string", "What happened."),
}
DATASET_STATUS = {
    "version_id": ("string", "The dataset version's id."),
    "name": ("string?", "Its name."),
    "status": ("integer?", STATUS + "; null: never built"),
    "statusText": ("string", "The status in words."),
    "progress": ("integer?", "0..100."),
    "stage": ("string?", "What the build is doing."),
    "error": ("object?", "Why the build stopped ({code, message, retryable})."),
    "s3Prefix": ("string?", "Where the dataset is in the bucket."),
    "taskStatus": ("object", "{state: pending|complete|error, tasks: [{task, state, error, "
                             "imageCount}]}"),
    "counts": ("object?", "Images and boxes per split."),
    "uploadStats": ("object?", "Objects sent to and skipped in the store."),
    "timings": ("object?", "exportSeconds and uploadSeconds of the last build."),
    "report": ("object?", "The dataset health report of the last complete build: {path, s3Key, "
                          "flags, images, seconds} (report/index.html beside the version)."),
    "startedAt": ("date-time?", "When the last build started."),
    "finishedAt": ("date-time?", "When the last build ended."),
}
HEALTH = {
    "status": ("string", "ok, or degraded when a dependency is down (then 503)."),
    "checks": ("object", "One check per dependency (database, storage, queue), each with "
                         "ok: true|false; no secrets. storage: freeBytes on the contents "
                         "store and minFreeBytes (processing.min_free_mb), ok when free is "
                         "at least that."),
}
ERROR = {
    "code": ("string", "Stable, machine-readable."),
    "message": ("string", "Human-readable; never a stack trace."),
}


EVENT = {
    "id": ("string", "The event's id: the webhook-id header of every attempt."),
    "type": ("string", "upload.accepted, upload.task_ready, upload.completed, "
                       "upload.failed, annotation.completed, dataset.completed or "
                       "dataset.failed."),
    "stream": ("string", "The upload id (dataset:<version id> for a dataset build)."),
    "sequence": ("integer", "1, 2, ... per stream, in the order of the changes."),
    "state": ("string", "pending, delivered or dead."),
    "attempts": ("integer", "Attempts so far."),
    "lastError": ("string?", "Why the last attempt failed."),
    "createdAt": ("date-time?", "When the change happened."),
    "data": ("object", "The event's body data, as POSTed."),
}


NESTED = {"ErrorMessage": ERROR, "Timings": TIMINGS, "TimelineRepair": TIMELINE_REPAIR,
          "Shot": SHOT}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def components(versions: Collection[int] = ()) -> dict[str, Any]:
    """The component schemas; ``versions``: the registered auto-annotation versions."""
    schemas = {name: _object(table) for name, table in (
        ("UploadStatus", UPLOAD_STATUS), ("Accepted", ACCEPTED),
        ("DatasetAccepted", DATASET_ACCEPTED), ("DatasetStatus", DATASET_STATUS),
        ("Health", HEALTH), ("Error", ERROR), ("Event", EVENT))}
    schemas["EventList"] = {"type": "object", "required": ["state", "events"], "properties": {
        "state": {"type": "string"}, "events": {"type": "array", "items": ref("Event")}}}
    schemas["ValidationError"] = {"allOf": [ref("Error"), {
        "type": "object", "required": ["errors"],
        "properties": {"errors": {"type": "object", "additionalProperties": {"type": "string"},
                                  "description": "field: reason, for every bad field"}}}]}
    schemas["ProcessContentRequest"] = process_request_schema(versions)
    schemas["ProcessContentForm"] = process_request_schema(versions, form=True)
    return {
        "schemas": schemas,
        "securitySchemes": {"authKey": {
            "type": "apiKey", "in": "header", "name": "X-Auth-Key",
            "description": "The shared key (server.auth_key). POST bodies may carry it as "
                           "auth_key instead."}},
    }


def _object(table: dict[str, tuple[str, str]]) -> dict[str, Any]:
    properties = {name: _property(kind, text) for name, (kind, text) in table.items()}
    required = [name for name, (kind, _) in table.items() if not kind.endswith("?")]
    return {"type": "object", "properties": properties, "required": required}


def _property(kind: str, description: str) -> dict[str, Any]:
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if kind.endswith("[]"):  # an array of nested objects
        schema: dict[str, Any] = {"type": "array", "items": _object(NESTED[kind[:-2]])}
    elif kind[0].isupper():  # a nested object, inlined: a $ref cannot be made nullable
        schema = _object(NESTED[kind])
    elif kind == "date-time":
        schema = {"type": "string", "format": "date-time"}
    else:
        schema = {"type": kind}
    if nullable:
        schema["nullable"] = True
    return {**schema, "description": description}

