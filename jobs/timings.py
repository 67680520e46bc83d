"""How long a job's stages took, recorded in the upload document at commit.

``timings`` is what ``GET /api/processContent/<id>`` shows and what
``/metrics`` summarises (``api/metrics.py``): it is written in the same update
that completes the upload, so every completed upload carries the timings of
the run that produced it, whichever process or machine ran it.
"""
from __future__ import annotations

from datetime import datetime, timezone

from job_types import Job
from mongo_manager import now


class RunClock:
    """Started when a run starts working; ``timings`` when it is done."""

    def __init__(self, job: Job, started_at: datetime | None = None) -> None:
        """``started_at``: when the run began working, if not now (a run cut in
        segments is committed by another process than the one that began it)."""
        self.job = job
        self.started_at = _utc(started_at) if started_at else now()

    def timings(self, stage: str, frames: int, **extra: int) -> dict:
        """``stage``: what the run did ("cutting", "annotating"); ``frames``: how
        many frames this run handled (a resumed run counts only its own);
        ``extra``: more counts (a segmented run's ``segments``)."""
        seconds = round(max(0.0, (now() - self.started_at).total_seconds()), 3)
        return {"processingSeconds": seconds, "attempts": self.job.attempts,
                "frames": frames, **extra,
                "framesPerSecond": round(frames / seconds, 3) if seconds > 0 else 0.0,
                "stages": {"queued": self._queued_seconds(), stage: seconds}}

    def _queued_seconds(self) -> float:
        """From the request's acceptance to the start of this run's work."""
        created = self.job.created_at
        if not isinstance(created, datetime):
            return 0.0
        return round(max(0.0, (self.started_at - _utc(created)).total_seconds()), 3)


def with_stage(timings: dict, stage: str, seconds: float) -> dict:
    """``timings`` with one more stage (one that ran after the run's clock was
    read, such as tracking before the commit)."""
    return {**timings, "stages": {**timings["stages"], stage: round(seconds, 3)}}


def _utc(moment: datetime) -> datetime:
    """A client without tz_aware reads naive dates; stored dates are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
