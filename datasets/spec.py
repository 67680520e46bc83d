"""An AnnotationDatasetVersion document, checked at the edge into a typed spec."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exceptions import DatasetError

SPLIT_TYPES = ("train", "val", "test")  # canonical order: split boundaries never move
DEFAULT_AUDIT_STATUSES = (1, 5)  # Accepted, Completed
DEFAULT_SPLITS = (("train", 80.0), ("val", 20.0))
FORMATS = ("YOLO", "COCO", "MOT")
DEFAULT_FORMATS = ("YOLO", "COCO")  # a version that names none (MOT only when asked)


@dataclass(frozen=True)
class VersionSpec:
    version_id: str
    name: str
    project_ids: tuple[Any, ...]
    task_ids: tuple[Any, ...]
    labels: tuple[str, ...]  # class index = position
    splits: tuple[tuple[str, float], ...]  # (type, percentage), canonical order
    audit_statuses: tuple[int, ...]
    formats: tuple[str, ...]
    s3_prefix: str


def parse_version(doc: dict) -> VersionSpec:
    """The version's build settings, or DatasetError naming what is wrong."""
    version_id = str(doc["_id"])
    labels = doc.get("labels") or []
    if not isinstance(labels, list) or not labels:
        raise DatasetError("the version's label list is empty: nothing to map boxes to",
                           code="no_labels")
    if any(not isinstance(label, str) or not label.strip() for label in labels):
        raise DatasetError("labels must be non-empty strings", code="bad_labels")
    if len(set(labels)) != len(labels):
        raise DatasetError("labels must not repeat (a class index per name)", code="bad_labels")
    project_ids = _id_list(doc, "projectIds")
    task_ids = _id_list(doc, "taskList")
    if not project_ids and not task_ids:
        raise DatasetError("the version selects no tasks: set projectIds and/or taskList",
                           code="no_tasks")
    statuses = doc.get("auditStatuses") or list(DEFAULT_AUDIT_STATUSES)
    if not isinstance(statuses, list) or any(
            not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= 5 for s in statuses):
        raise DatasetError("auditStatuses must be audit status numbers 0-5",
                           code="bad_audit_statuses")
    return VersionSpec(
        version_id=version_id, name=str(doc.get("name") or version_id),
        project_ids=project_ids, task_ids=task_ids, labels=tuple(labels),
        splits=parse_splits(doc.get("splitCount")), audit_statuses=tuple(statuses),
        formats=_formats(doc.get("exportFormats")),
        s3_prefix=str(doc.get("s3Prefix") or f"datasets/{version_id}").strip("/"))


def _id_list(doc: dict, field: str) -> tuple:
    value = doc.get(field) or []
    if not isinstance(value, list):
        raise DatasetError(f"{field} must be a list of ids", code="bad_selection")
    return tuple(value)


def parse_splits(raw: Any) -> tuple[tuple[str, float], ...]:
    if not raw:
        return DEFAULT_SPLITS
    shares: dict[str, float] = {}
    for item in raw if isinstance(raw, list) else [None]:
        kind = item.get("type") if isinstance(item, dict) else None
        share = item.get("percentage") if isinstance(item, dict) else None
        if kind not in SPLIT_TYPES or kind in shares:
            raise DatasetError(f"splitCount: each entry needs a distinct type out of "
                               f"{', '.join(SPLIT_TYPES)}", code="bad_splits")
        # not 0 <= share: NaN compares false with everything, so it is refused too
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share:
            raise DatasetError(f"splitCount: {kind} percentage must be a number >= 0",
                               code="bad_splits")
        shares[kind] = float(share)
    if abs(sum(shares.values()) - 100) > 0.01:
        raise DatasetError(f"splitCount percentages must add up to 100, "
                           f"not {sum(shares.values()):g}", code="bad_splits")
    return tuple((kind, shares[kind]) for kind in SPLIT_TYPES if shares.get(kind))


def _formats(raw: Any) -> tuple[str, ...]:
    if not raw:
        return DEFAULT_FORMATS
    names = [str(name).upper() for name in (raw if isinstance(raw, list) else [raw])]
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise DatasetError(f"exportFormats: unknown {', '.join(unknown)} "
                           f"(known: {', '.join(FORMATS)})", code="bad_formats")
    return tuple(name for name in FORMATS if name in names)
