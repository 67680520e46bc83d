"""Validation of POST /api/processContent at the edge: a typed, checked request.

The fields are declared once, in ``PROCESS_FIELDS``: each ``FieldSpec`` gives
a field's type, range, default and meaning. ``parse_process_request`` (used by
the API and the command line) checks a body against that table, and
``FieldSpec.openapi`` turns the same table into the OpenAPI request schema
(``api/openapi.py``), so the documentation cannot drift from the rules.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from exceptions import BadRequest, NotFound
from job_states import ANNOTATING_TYPES, RequestType, canonical_id
from job_types import ContentParams
from settings import ProcessingConfig

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # ids become folder names
REQUEST_TYPES = {RequestType.CUT: "tasks only", RequestType.CUT_AND_ANNOTATE: "tasks plus "
                 "auto-annotations", RequestType.ANNOTATE: "auto-annotations only"}
CONTENT_TYPES = {1: "video", 2: "images"}
TASK_SPLIT_MEANINGS = {"fixed": "every frames_per_task sampled frames",
                       "shots": "also at each shot cut: a clip never spans a cut (shots "
                                "shorter than processing.min_shot_frames are gathered)"}
MAX_FRAME_RATE = 120
MAX_VERSION = 10**6
# The request types that cut content, and so need frame_rate and content_path.
CUTTING_TYPES = (RequestType.CUT, RequestType.CUT_AND_ANNOTATE)
# The request types that annotate (ANNOTATING_TYPES) need auto_anno_version >= 1.


@dataclass(frozen=True)
class FieldSpec:
    """One request field: how it is checked and how it is documented."""

    name: str
    kind: str  # "identifier", "integer", "choice" (one of ``values``' keys) or "path"
    description: str
    minimum: int | None = None  # integers: the accepted range
    maximum: int | None = None
    default: int | None = None  # used when absent; None: no default
    # Absent: the server's processing.<name> (the request holds None until then).
    from_config: bool = False
    required: bool = False  # always required
    required_for: tuple[int, ...] = ()  # required for these request types
    values: Mapping[Any, str] | None = None  # integers, choices: what each value means
    example: Any = None  # shown in the docs; API tests send it as a first request

    def is_required(self, request_type: int | None) -> bool:
        return self.required or request_type in self.required_for

    def openapi(self, nullable: bool = True) -> dict[str, Any]:
        """This field as an OpenAPI 3.0 schema object (``nullable``: in a JSON body)."""
        schema: dict[str, Any] = {"description": self._describe()}
        schema.update(self.type_schema())
        if nullable and not self.required:  # null is taken as absent: the default applies
            schema["nullable"] = True
            if "enum" in schema:
                schema["enum"].append(None)
        if self.default is not None:
            schema["default"] = self.default
        if self.example is not None:
            schema["example"] = self.example
        if self.required_for:
            schema["x-required-for-request-types"] = list(self.required_for)
        return schema

    def type_schema(self) -> dict[str, Any]:
        """The type and its constraints (nullable or not)."""
        if self.kind == "identifier":
            return {"type": "string", "pattern": ID_PATTERN.pattern, "minLength": 1,
                    "maxLength": 64}
        if self.kind == "integer":
            schema = {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
            return {**schema, "enum": sorted(self.values)} if self.values else schema
        if self.kind == "choice":
            return {"type": "string", "enum": list(self.values or ())}
        # a path: its existence and confinement are checked at run time
        return {"type": "string", "minLength": 1, "pattern": NO_PARENT_PATTERN}

    def _describe(self) -> str:
        text = self.description
        if self.values:
            text += " " + "; ".join(f"{k} = {v}" for k, v in self.values.items()) + "."
        if self.required_for:
            text += (" Required for request_type "
                     + " and ".join(map(str, self.required_for)) + ".")
        if self.from_config:
            text += f" Absent: the server's processing.{self.name}."
        return text


# No ".." path segment (content_path may not climb out of contents_dir), not only
# white space (it is stripped), no NUL. [\s\S]: any character, new lines too.
NO_PARENT_PATTERN = r"^(?!([\s\S]*/)?\.\.(/|$))(?=[\s\S]*\S)[^\u0000]*$"

PROCESS_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("upload_id", "identifier", "The upload's id; a 24-hex id is stored as an "
              "ObjectId. It names the output folders.", required=True, example="cam1-0001"),
    FieldSpec("project_id", "identifier", "The project's id; a 24-hex id is stored as an "
              "ObjectId.", required=True, example="p1"),
    FieldSpec("request_type", "integer", "What to do.", 0, 2, default=0, values=REQUEST_TYPES),
    FieldSpec("content_type", "integer", "What content_path holds: a video, or one image, "
              "a folder or a .zip of images.", 1, 2, default=1, values=CONTENT_TYPES),
    FieldSpec("force_write", "integer", "1 replaces a previous or running result "
              "completely; 0 leaves a completed one alone.", 0, 1, default=0),
    FieldSpec("auto_anno_version", "integer", "The registered auto-annotation model "
              "version; 0 = none. Must be a registered version >= 1 for request_type 1 "
              "and 2.", 0, MAX_VERSION, default=0),
    FieldSpec("frame_rate", "integer", "Frames sampled per second of video (images: the "
              "task clip's playback rate).", 1, MAX_FRAME_RATE, required_for=CUTTING_TYPES,
              example=5),
    FieldSpec("task_split", "choice", "How a video is cut into task clips (images: "
              "ignored).", values=TASK_SPLIT_MEANINGS, from_config=True),
    FieldSpec("skip_still", "integer", "Leave out sampled frames of a video that show "
              "nothing new next to the last kept frame of their shot (images: ignored).",
              0, 1, values={0: "keep every sampled frame", 1: "leave still frames out"},
              from_config=True),
    FieldSpec("content_path", "path", "The video or images, relative to the contents "
              "folder (or absolute inside it); no '..', no symlink out of it; must exist "
              "(else 404).", required_for=CUTTING_TYPES, example="uploads/cam1.mp4"),
)
FIELDS_BY_NAME = {spec.name: spec for spec in PROCESS_FIELDS}


def process_request_schema(versions: Collection[int] = (), form: bool = False
                           ) -> dict[str, Any]:
    """The OpenAPI schema of a POST /api/processContent body, from ``PROCESS_FIELDS``.

    ``versions``: the registered auto-annotation versions (the annotating request
    types need one of them). ``form``: for urlencoded and multipart bodies, which
    cannot say null (their values are text).
    """
    properties = {spec.name: spec.openapi(nullable=not form) for spec in PROCESS_FIELDS}
    properties["auth_key"] = {"type": "string", "writeOnly": True,
                              "description": "The shared key, unless sent as the X-Auth-Key "
                                             "header."}
    # What depends on request_type, as JSON Schema: "this request_type, or this field".
    # A required field must be there and not null (null is taken as absent).
    conditions = [_unless_request_type(spec.required_for, {
        "required": [spec.name], "properties": {spec.name: spec.type_schema()}})
        for spec in PROCESS_FIELDS if spec.required_for]
    registered = {"required": ["auto_anno_version"],
                  "properties": {"auto_anno_version": {"enum": sorted(versions)}}}
    conditions.append(_unless_request_type(ANNOTATING_TYPES,
                                           registered if versions else {"not": {}}))
    return {"type": "object", "properties": properties,
            "required": [spec.name for spec in PROCESS_FIELDS if spec.required],
            "allOf": conditions,
            "description": "Numbers may also be sent as strings (\"5\"), as urlencoded and "
                           "multipart bodies always do. request_type 1 and 2 need a registered "
                           "auto_anno_version (here: "
                           + (", ".join(map(str, sorted(versions))) or "none") + ")."}


def _unless_request_type(types: Collection[int], otherwise: dict[str, Any]) -> dict[str, Any]:
    """Valid when request_type is not one of ``types`` (absent: its default), or when
    ``otherwise`` holds."""
    others: list[int | None] = [t for t in REQUEST_TYPES if t not in types]
    other_type: dict[str, Any] = {"properties": {"request_type": {"enum": others}}}
    if FIELDS_BY_NAME["request_type"].default in types:  # absent or null: one of ``types``
        other_type["required"] = ["request_type"]
    else:
        others.append(None)
    return {"anyOf": [other_type, otherwise]}


@dataclass(frozen=True)
class ProcessRequest:
    upload_id: str
    project_id: str
    frame_rate: int
    content_path: str  # absolute, resolved, inside contents_dir
    force_write: int
    auto_anno_version: int
    request_type: RequestType
    content_type: int
    task_split: str | None  # None: the server's default
    skip_still: int | None

    def as_params(self, processing: ProcessingConfig) -> ContentParams:
        """What a job needs to run (and to resume identically): the server's
        defaults filled in."""
        values = {**asdict(self), "task_split": self.task_split or processing.task_split,
                  "skip_still": int(processing.skip_still) if self.skip_still is None
                  else self.skip_still}
        return ContentParams(**values, frames_per_task=processing.frames_per_task)


def parse_process_request(form: Mapping[str, Any], contents_dir: Path,
                          versions: Collection[int] = ()) -> ProcessRequest:
    """A checked request, or BadRequest listing every bad field (404 for a missing path).

    ``versions``: the registered auto-annotation versions.
    """
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for spec in PROCESS_FIELDS:  # in table order: request_type comes before what it gates
        required = spec.is_required(values.get("request_type"))
        if spec.kind == "identifier":
            values[spec.name] = _identifier(form, spec.name, errors)
        elif spec.from_config and _present(form, spec.name) is None:
            values[spec.name] = None
        elif spec.kind == "choice":
            values[spec.name] = _choice(form, spec.name, errors, spec.values or {})
        elif spec.kind == "integer":
            # Absent and not needed: the default, or 0 ("not used") where there is none.
            default = None if required else (spec.default or 0)
            values[spec.name] = _integer(form, spec.name, errors, spec.minimum, spec.maximum,
                                         default=default)
    _check_version(values["request_type"], values["auto_anno_version"], versions, errors)
    # Last: the only check that touches the file system.
    required = FIELDS_BY_NAME["content_path"].is_required(values["request_type"])
    path = _content_path(form, contents_dir, errors, required=required)
    if errors:
        raise BadRequest(errors)
    if path is not None and not _exists(path):
        raise NotFound(f"content_path {form.get('content_path')!r} does not exist",
                       code="content_not_found")
    values["request_type"] = RequestType(values["request_type"])
    return ProcessRequest(**values, content_path=str(path) if path else "")


def _check_version(request_type: int, version: int, versions: Collection[int],
                   errors: dict[str, str]) -> None:
    """Annotating request types need a registered auto_anno_version >= 1."""
    if request_type not in ANNOTATING_TYPES or "auto_anno_version" in errors:
        return
    if version == 0:
        errors["auto_anno_version"] = "must be >= 1 for request_type 1 and 2"
    elif version not in versions:
        known = ", ".join(map(str, sorted(versions))) or "none"
        errors["auto_anno_version"] = f"version {version} is not registered (registered: {known})"


def _present(form: Mapping[str, Any], name: str) -> Any:
    value = form.get(name)
    if isinstance(value, str):
        value = value.strip()
    return None if value in (None, "") else value


def _identifier(form: Mapping[str, Any], name: str, errors: dict[str, str]) -> str:
    value = _present(form, name)
    if value is None:
        errors[name] = "required"
        return ""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        errors[name] = "must be a string of 1-64 letters, digits, '_' or '-'"
        return ""
    return canonical_id(value)  # it names folders and jobs: one name per upload


def _choice(form: Mapping[str, Any], name: str, errors: dict[str, str],
            choices: Mapping[str, str]) -> str | None:
    value = _present(form, name)
    if not isinstance(value, str) or value not in choices:
        errors[name] = "must be one of " + ", ".join(repr(c) for c in choices)
        return None
    return value


def _integer(form: Mapping[str, Any], name: str, errors: dict[str, str], low: int, high: int,
             default: int | None) -> int:
    value = _present(form, name)
    if value is None:
        if default is None:
            errors[name] = "required"
            return 0
        return default
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        errors[name] = "must be an integer"
        return 0
    # int() also takes "٥" and other scripts' digits, and "1_0": a form's text is ASCII digits.
    if isinstance(value, str) and not re.fullmatch(r"[+-]?[0-9]{1,9}", value):
        errors[name] = "must be an integer"
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        errors[name] = "must be an integer"
        return 0
    if not low <= number <= high:
        errors[name] = f"must be between {low} and {high}"
    return number


def _content_path(form: Mapping[str, Any], contents_dir: Path, errors: dict[str, str],
                  required: bool) -> Path | None:
    """``content_path`` resolved (symlinks too) and confined to ``contents_dir``."""
    value = _present(form, "content_path")
    if value is None:
        if required:
            errors["content_path"] = "required"
        return None
    if not isinstance(value, str) or "\x00" in value:
        errors["content_path"] = "must be a path"
        return None
    if not _is_utf8(value):  # a lone surrogate ("\udc80"): no document could store it
        errors["content_path"] = "must be valid UTF-8 text"
        return None
    raw = Path(value)
    if ".." in raw.parts:
        errors["content_path"] = "must not contain '..'"
        return None
    root = contents_dir.resolve()
    # Relative paths are relative to contents_dir. The original callers send
    # "./contents/x": its "contents" names contents_dir wherever that is (the
    # README's /mnt/contents), or the folder of that name in the working one.
    candidates = [raw] if raw.is_absolute() else [root / raw, Path.cwd() / raw]
    if not raw.is_absolute() and raw.parts[:1] == ("contents",) and len(raw.parts) > 1:
        candidates.insert(1, root.joinpath(*raw.parts[1:]))
    # realpath follows symlinks, so a link pointing outside is caught here.
    inside = [p for p in map(Path, map(os.path.realpath, candidates))
              if p == root or root in p.parents]
    if not inside:
        errors["content_path"] = "must be inside the contents folder"
        return None
    try:
        path = next((p for p in inside if _exists(p)), inside[0])
    except OSError as exc:  # no permission to look
        errors["content_path"] = f"cannot be used: {exc.strerror}"
        return None
    if not _is_utf8(str(path)):  # a link to a file whose name is not UTF-8
        errors["content_path"] = "must resolve to a path that is valid UTF-8"
        return None
    return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # no file can have that name
            return False
        raise


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
