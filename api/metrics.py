"""GET /metrics: Prometheus metrics, computed from MongoDB when it is scraped.

No key, like /api/health: it shows counts and timings, no ids and no secrets,
and a scraper sends no custom header.

Why at scrape time, from the database, rather than counters kept in memory:
a scrape reaches one gunicorn worker out of several, the jobs run in other
processes (the executor's job processes, or Celery workers on other
machines), and any of them can die. In-process metrics would show each
worker's own slice; prometheus_client's multiprocess mode would fix that on
one machine only, and not for workers elsewhere. MongoDB holds the job queue
and every completed run's timings (``jobs/timings.py``), so every web worker
on every machine computes the same, fleet-wide numbers from it:

- ``content_processor_jobs{state}``: jobs per state, right now (queued,
  running, failed, ...). A gauge.
- ``content_processor_stage_duration_seconds{stage}``: seconds per stage
  (queued, cutting, annotating) of the uploads completed in the last
  ``WINDOW``. A *gauge histogram* (OpenMetrics): its buckets describe a
  sliding window, so they may go down; query it as it is
  (``histogram_quantile(0.9, content_processor_stage_duration_seconds_bucket)``),
  not with ``rate()``.
- ``content_processor_frames_per_second{stage}``: frames over working seconds
  of those same uploads: how fast a job process cuts (or annotates).
- ``content_processor_database_up``: 0 when MongoDB could not be read (the
  other metrics are then left out rather than reported as zeros).
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable, Iterator

from flask import Blueprint, Response, current_app, request
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from api.service import service
from exceptions import ServiceError
from mongo_manager import DatabaseError, MongoManager, now

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

PREFIX = "content_processor"
WINDOW = timedelta(minutes=15)
MAX_RUNS = 2000  # newest completed uploads read per scrape, whatever the window holds
BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# The stages a run records, in the order they happen (jobs.timings.RunClock).
STAGES = ("queued", "cutting", "annotating", "tracking")


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions.get("metrics_registry")
    if registry is None:
        svc = service()
        registry = current_app.extensions["metrics_registry"] = make_registry(svc.mongo)
    # OpenMetrics when the scraper asks for it (Prometheus does): it has a proper
    # type for the sliding-window histograms; the classic text format otherwise.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), content_type=content_type)


class JobMetricsCollector(Collector):
    """Everything /metrics shows, read from MongoDB at each scrape."""

    def __init__(self, mongo: Callable[[], MongoManager]) -> None:
        self.mongo = mongo  # a factory: the manager is per process, created lazily

    def collect(self) -> Iterator[Metric]:
        try:
            mongo = self.mongo()
            counts = mongo.jobs.job_counts()
            runs = mongo.uploads.recent_timings(now() - WINDOW, MAX_RUNS)
        except (DatabaseError, ServiceError) as exc:  # the scrape still answers
            log.warning("metrics: database unreachable: %s", exc)
            yield _gauge("database_up", "1 when MongoDB answered this scrape.", 0)
            return
        yield _gauge("database_up", "1 when MongoDB answered this scrape.", 1)
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs per state, from the job queue in "
                                 "MongoDB (all machines): one job per upload or dataset "
                                 "version, in the state of its latest run.", labels=["state"])
        for state, count in sorted(counts.items()):
            jobs.add_metric([state], count)
        yield jobs
        yield _gauge("recent_runs", f"Uploads completed in the last {_minutes()} minutes "
                     "(what the stage and frame metrics describe).", len(runs))
        yield from _run_metrics(runs)


def _run_metrics(runs: list[dict]) -> Iterator[Metric]:
    durations = GaugeHistogramMetricFamily(
        f"{PREFIX}_stage_duration_seconds", f"Seconds per stage of the uploads completed in "
        f"the last {_minutes()} minutes (a sliding window: do not rate() it).",
        labels=["stage"])
    speed = GaugeMetricFamily(f"{PREFIX}_frames_per_second", "Frames per working second of "
                              f"the uploads completed in the last {_minutes()} minutes.",
                              labels=["stage"])
    for stage in STAGES:
        seconds = [run["stages"][stage] for run in runs
                   if isinstance(run.get("stages"), dict) and stage in run["stages"]]
        durations.add_metric([stage], _buckets(seconds), sum(seconds))
        if stage == "queued":
            continue
        worked = [run for run in runs if stage in (run.get("stages") or {})]
        busy = sum(run["stages"][stage] for run in worked)
        frames = sum(run.get("frames") or 0 for run in worked)
        if busy > 0:  # no completed run in the window: no sample, rather than a false 0
            speed.add_metric([stage], frames / busy)
    yield durations
    yield speed


def _buckets(values: list[float]) -> list[tuple[str, float]]:
    """Cumulative bucket counts, as Prometheus histograms have them."""
    bounds = [*map(float, BUCKETS), float("inf")]
    return [(_bound(b), float(sum(1 for v in values if v <= b))) for b in bounds]


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _minutes() -> int:
    return int(WINDOW.total_seconds() // 60)


def make_registry(mongo: Callable[[], MongoManager]) -> CollectorRegistry:
    """A registry of its own per app: no per-process defaults (process CPU, GC) that
    would differ from one gunicorn worker to the next."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobMetricsCollector(mongo))
    return registry
