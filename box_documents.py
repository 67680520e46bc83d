"""AnnotationFrame box documents made from detections (request types 1 and 2)."""
from __future__ import annotations

from mongo_manager import new_id


def box_documents(found: list, version: int) -> list[dict]:
    """Detections as AnnotationFrame boxes: x, y top-left, w, h in clip pixels."""
    return [{"id": new_id(), "label": d.label, "x": round(d.x, 2), "y": round(d.y, 2),
             "w": round(d.w, 2), "h": round(d.h, 2), "confidence": round(d.score, 4),
             "source": f"auto:v{version}"} for d in found]
