"""How long a job's stages took, recorded in the upload document at commit.

``timings`` is what ``GET /api/processContent/<id>`` shows and what
``/metrics`` summarises (``metrics.py``): it is written in the same update
that completes the upload, so every completed upload carries the timings of
the run that produced it, whichever process or machine ran it.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from mongo_manager import now


class RunClock:
    """Started when a run starts working; ``timings`` when it is done."""

    def __init__(self, job: dict) -> None:
        self.job = job
        self.started = time.monotonic()
        self.started_at = now()

    def timings(self, stage: str, frames: int) -> dict:
        """``stage``: what the run did ("cutting", "annotating"); ``frames``: how
        many frames this run handled (a resumed run counts only its own)."""
        seconds = round(time.monotonic() - self.started, 3)
        return {"processingSeconds": seconds, "attempts": self.job.get("attempts", 1),
                "frames": frames,
                "framesPerSecond": round(frames / seconds, 3) if seconds > 0 else 0.0,
                "stages": {"queued": self._queued_seconds(), stage: seconds}}

    def _queued_seconds(self) -> float:
        """From the request's acceptance to the start of this run's work."""
        created = self.job.get("createdAt")
        if not isinstance(created, datetime):
            return 0.0
        if created.tzinfo is None:  # a client without tz_aware: stored dates are UTC
            created = created.replace(tzinfo=timezone.utc)
        return round(max(0.0, (self.started_at - created).total_seconds()), 3)
