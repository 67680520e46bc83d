"""/metrics: Prometheus text that parses, with counts that follow real jobs."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import AUTH_KEY
from media import cfr_video
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families


def scrape(client) -> dict[str, dict[tuple, float]]:
    """{metric name: {sorted label items: value}} of one classic-format scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def jobs(samples: dict, state: str) -> float:
    return samples["content_processor_jobs"][(("state", state),)]


def bucket(samples: dict, stage: str, le: str) -> float:
    key = (("le", le), ("stage", stage))
    return samples["content_processor_stage_duration_seconds_bucket"][key]


@pytest.fixture
def video(contents: Path) -> Path:
    return cfr_video(contents / "uploads" / "clip.mp4", 30)


def test_metrics_parse_and_need_no_key(client, mongo):
    samples = scrape(client)
    assert samples["content_processor_database_up"][()] == 1
    for state in ("queued", "running", "failed", "done"):
        assert jobs(samples, state) == 0
    assert samples["content_processor_recent_runs"][()] == 0
    assert bucket(samples, "cutting", "+Inf") == 0
    assert "content_processor_frames_per_second" not in samples  # no run: no sample


def test_counts_follow_a_real_job(client, mongo, video, post, run_jobs):
    assert post(content_path="uploads/clip.mp4").status_code == 202
    samples = scrape(client)
    assert jobs(samples, "queued") == 1 and jobs(samples, "done") == 0
    assert run_jobs() == 1
    samples = scrape(client)
    assert jobs(samples, "queued") == 0 and jobs(samples, "done") == 1
    assert samples["content_processor_recent_runs"][()] == 1
    assert bucket(samples, "cutting", "+Inf") == 1 and bucket(samples, "queued", "+Inf") == 1
    assert bucket(samples, "annotating", "+Inf") == 0
    assert samples["content_processor_frames_per_second"][(("stage", "cutting"),)] > 0
    timings = mongo.uploads.get_upload("u1")["timings"]
    assert timings["frames"] == 5  # 30 frames at 30 fps, sampled at 5 fps
    assert set(timings["stages"]) == {"queued", "cutting"}


def test_a_failed_job_is_counted(client, mongo, contents, post, run_jobs):
    (contents / "uploads" / "bad.mp4").write_text("not a video")
    assert post(content_path="uploads/bad.mp4").status_code == 202
    run_jobs()
    samples = scrape(client)
    assert jobs(samples, "failed") == 1 and jobs(samples, "done") == 0
    assert samples["content_processor_recent_runs"][()] == 0  # only completed runs


def test_openmetrics_when_asked(client, mongo):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.mimetype == "application/openmetrics-text"
    families = {f.name: f for f in parse_openmetrics(response.get_data(as_text=True))}
    assert families["content_processor_stage_duration_seconds"].type == "gaugehistogram"
    assert families["content_processor_jobs"].type == "gauge"


def test_database_down_still_answers(make_config):
    from app import create_app
    down = make_config(MONGODB_URI="mongodb://127.0.0.1:9/?directConnection=true",
                       MONGODB_TIMEOUT_MS="300")
    samples = scrape(create_app(down).test_client())
    assert samples["content_processor_database_up"][()] == 0
    assert "content_processor_jobs" not in samples


def test_metrics_show_no_secrets(client, mongo, video, post):
    post(content_path="uploads/clip.mp4")
    text = client.get("/metrics").get_data(as_text=True)
    assert AUTH_KEY not in text and "u1" not in text
