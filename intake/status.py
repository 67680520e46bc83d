"""What uploads and dataset versions share in their descriptions: the status text
and how dates are shown."""
from __future__ import annotations

from datetime import datetime
from typing import Any

STATUS_TEXT = {0: "in progress", 1: "completed", 2: "error"}


def iso(value: Any) -> str | None:
    """A stored date as ISO 8601; None when it is not set."""
    return value.isoformat() if isinstance(value, datetime) else None
