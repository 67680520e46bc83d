"""Validation of POST /api/processContent at the edge: a typed, checked request.

Used by the API and by the command line, so both follow the same rules.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from exceptions import BadRequest, NotFound

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # ids become folder names
REQUEST_TYPES = {0: "tasks only", 1: "tasks plus auto-annotations", 2: "auto-annotations only"}
CONTENT_TYPES = {1: "video", 2: "images"}
MAX_FRAME_RATE = 120


@dataclass(frozen=True)
class ProcessRequest:
    upload_id: str
    project_id: str
    frame_rate: int
    content_path: str  # absolute, resolved, inside contents_dir
    force_write: int
    auto_anno_version: int
    request_type: int
    content_type: int

    def as_params(self, frames_per_task: int) -> dict:
        """What a job needs to run (and to resume identically)."""
        return {**asdict(self), "frames_per_task": frames_per_task}


def parse_process_request(form: Mapping[str, Any], contents_dir: Path,
                          versions: Collection[int] = ()) -> ProcessRequest:
    """A checked request, or BadRequest listing every bad field (404 for a missing path).

    ``versions``: the registered auto-annotation versions.
    """
    errors: dict[str, str] = {}
    upload_id = _identifier(form, "upload_id", errors)
    project_id = _identifier(form, "project_id", errors)
    request_type = _integer(form, "request_type", errors, 0, 2, default=0)
    content_type = _integer(form, "content_type", errors, 1, 2, default=1)
    force_write = _integer(form, "force_write", errors, 0, 1, default=0)
    version = _integer(form, "auto_anno_version", errors, 0, 10**6, default=0)
    needs_content = request_type in (0, 1)
    frame_rate = _integer(form, "frame_rate", errors, 1, MAX_FRAME_RATE,
                          default=None if needs_content else 0)
    if request_type in (1, 2) and "auto_anno_version" not in errors:
        if version == 0:
            errors["auto_anno_version"] = "must be >= 1 for request_type 1 and 2"
        elif version not in versions:
            known = ", ".join(map(str, sorted(versions))) or "none"
            errors["auto_anno_version"] = (f"version {version} is not registered "
                                           f"(registered: {known})")
    path = _content_path(form, contents_dir, errors, required=needs_content)
    if errors:
        raise BadRequest(errors)
    if path is not None and not path.exists():
        raise NotFound(f"content_path {form.get('content_path')!r} does not exist",
                       code="content_not_found")
    return ProcessRequest(upload_id=upload_id, project_id=project_id, frame_rate=frame_rate,
                          content_path=str(path) if path else "", force_write=force_write,
                          auto_anno_version=version, request_type=request_type,
                          content_type=content_type)


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
    raw = Path(value)
    if ".." in raw.parts:
        errors["content_path"] = "must not contain '..'"
        return None
    root = contents_dir.resolve()
    # Relative paths are relative to contents_dir; "contents/x" (the form the
    # original callers send) is accepted too when it resolves inside it.
    candidates = [raw] if raw.is_absolute() else [root / raw, Path.cwd() / raw]
    # realpath follows symlinks, so a link pointing outside is caught here.
    inside = [p for p in map(Path, map(os.path.realpath, candidates))
              if p == root or root in p.parents]
    if not inside:
        errors["content_path"] = "must be inside the contents folder"
        return None
    return next((p for p in inside if p.exists()), inside[0])
