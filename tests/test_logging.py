"""Structured logs: JSON lines, each naming the upload it was logged for."""
from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
from pathlib import Path

import pytest
from conftest import AUTH_KEY
from media import cfr_video

from logging_setup import (
    JsonFormatter,
    current_upload_id,
    gunicorn_log_config,
    upload_context,
)


@pytest.fixture
def captured():
    """Every record the root logger gets, as the JSON lines the service writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_a_line_is_one_json_object():
    record = logging.LogRecord("content_job", logging.WARNING, __file__, 1,
                               "upload %s: %s", ("u1", "bad\n\"content\""), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "content_job"
    assert entry["message"] == "upload u1: bad\n\"content\""
    assert entry["time"].endswith("+00:00") and "upload_id" not in entry


def test_exceptions_and_extra_fields_are_kept():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    record.task = 3
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"] and entry["task"] == 3


def test_gunicorn_access_lines_are_typed():
    atoms = {"m": "POST", "U": "/api/processContent", "s": "202", "M": "4", "h": "10.0.0.1",
             "a": "node"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(m)s", (), None)
    record.args = atoms  # what gunicorn passes
    entry = json.loads(JsonFormatter().format(record))
    assert entry["http"] == {"method": "POST", "path": "/api/processContent", "status": 202,
                             "durationMs": 4, "remote": "10.0.0.1", "userAgent": "node"}


@pytest.mark.parametrize("access_log,level", [(None, "WARNING"), ("-", "INFO")])
def test_gunicorn_log_config(access_log, level):
    config = gunicorn_log_config(access_log)
    assert config["loggers"]["gunicorn.access"]["level"] == level
    assert config["formatters"]["json"]["()"] is JsonFormatter
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        logging.config.dictConfig(config)  # what gunicorn does with it
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_threads_of_a_job_carry_its_upload_id():
    """The pipeline's stage threads and annotate's frame loader (context_thread)
    run in a copy of the job's context."""
    from processors.threads import context_thread
    seen = []
    with upload_context("u7"):
        worker = context_thread(lambda: seen.append(current_upload_id()), name="stage")
    worker.start()
    worker.join()
    assert seen == ["u7"] and current_upload_id() is None


def test_every_line_of_a_job_names_its_upload(captured, client, mongo, contents, post,
                                              run_jobs):
    cfr_video(contents / "uploads" / "clip.mp4", 30)
    (contents / "uploads" / "bad.mp4").write_text("not a video")
    assert post(upload_id="good", content_path="uploads/clip.mp4").status_code == 202
    assert post(upload_id="bad", content_path="uploads/bad.mp4").status_code == 202
    start = len(captured())  # what the jobs log, from here on
    assert run_jobs() == 2
    lines = captured()[start:]
    assert {line["upload_id"] for line in lines} == {"good", "bad"}
    assert all(line.get("upload_id") for line in lines), lines
    failed = [line for line in lines if line["level"] == "WARNING"]
    assert failed and {line["upload_id"] for line in failed} == {"bad"}
    assert current_upload_id() is None  # the tag ends with the job


def test_request_lines_name_the_upload(captured, make_config, contents):
    from app import create_app
    down = make_config(MONGODB_URI="mongodb://127.0.0.1:9/?directConnection=true",
                       MONGODB_TIMEOUT_MS="300")
    cfr_video(contents / "uploads" / "clip.mp4", 10)
    client = create_app(down).test_client()
    response = client.post("/api/processContent", json={
        "auth_key": AUTH_KEY, "upload_id": "u9", "project_id": "p1", "frame_rate": 5,
        "content_path": "uploads/clip.mp4"})
    assert response.status_code == 503
    logged = [line for line in captured() if line["logger"] == "api.errors"]
    assert logged and all(line["upload_id"] == "u9" for line in logged)
    assert current_upload_id() is None  # cleared when the request ended


def test_accepted_request_is_logged_with_its_upload(captured, client, mongo, contents, post):
    cfr_video(contents / "uploads" / "clip.mp4", 10)
    assert post(upload_id="u3", content_path="uploads/clip.mp4").status_code == 202
    line, = [line for line in captured() if line["logger"] == "api.process_content"]
    assert line["upload_id"] == "u3" and "202" in line["message"]


def test_processes_log_json(env, tmp_path: Path):
    """The command line configures the same JSON logs."""
    import subprocess

    from conftest import ROOT, service_env
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    result = subprocess.run([sys.executable, "app.py", "process", str(bad), "--upload-id",
                             "b1"], env=service_env(env), cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    job_lines = [line for line in lines
                 if line.get("logger", "").startswith(("engines.", "jobs."))]
    assert job_lines and all(line["upload_id"] == "b1" for line in job_lines), result.stderr
