"""What uploads and dataset versions share in their descriptions: the status text
and how dates are shown."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from job_states import UploadStatus

STATUS_TEXT = {UploadStatus.IN_PROGRESS: "in progress", UploadStatus.COMPLETED: "completed",
               UploadStatus.ERROR: "error"}


def iso(value: Any) -> str | None:
    """A stored date as ISO 8601; None when it is not set."""
    return value.isoformat() if isinstance(value, datetime) else None
