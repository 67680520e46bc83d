"""The real entry points: gunicorn with gevent workers, and the command line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from conftest import AUTH_KEY, ROOT, service_env
from media import cfr_video, clip_barcodes
from live_server import readme_gunicorn

from engines.control import executor_running


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:  # not up yet, or still warming up
            pass
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_gunicorn_serves_and_processes(env, contents, mongo, config, tmp_path):
    """The README's production command, as written (its key placeholder filled)."""
    log = tmp_path / "gunicorn.log"
    cfr_video(contents / "uploads" / "cam 1.mp4", 60)
    server, base = readme_gunicorn(env, log, workers=2)
    try:
        wait_until(lambda: requests.get(f"{base}/api/health", timeout=2).status_code == 200)
        # urlencoded, numbers as strings: what the Node.js backend sends.
        response = requests.post(f"{base}/api/processContent", data={
            "auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": "5",
            "content_path": "uploads/cam 1.mp4", "force_write": "0", "auto_anno_version": "0",
            "request_type": "0", "content_type": "1"}, timeout=5)
        assert response.status_code == 202, response.text
        assert response.elapsed.total_seconds() < 1.0
        status_url = base + response.json()["status_url"]
        wait_until(lambda: requests.get(status_url, headers={"X-Auth-Key": AUTH_KEY},
                                        timeout=2).json()["status"] == 1)
        tasks = mongo.frames.tasks_of("u1")
        assert [t["taskName"] for t in tasks] == ["task-1-cam 1"]
        assert clip_barcodes(Path(tasks[0]["videoPath"])) == list(range(0, 60, 6))
        bad = requests.post(f"{base}/api/processContent", json={"auth_key": "nope"}, timeout=5)
        assert bad.status_code == 401 and "Traceback" not in bad.text
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    # The executor the master started is gone with it.
    wait_until(lambda: not executor_running(config), timeout=30)
    # No false alarm: gunicorn's own SERVER_SOFTWARE is not taken for a misspelled setting.
    assert "Booting worker" in log.read_text() and "is not a setting" not in log.read_text()


def test_command_line_processes_a_local_file(env, tmp_path, mongo):
    video = cfr_video(tmp_path / "outside.mp4", 45)  # outside contents_dir: linked in
    result = subprocess.run([sys.executable, "app.py", "process", str(video), "--frame-rate",
                             "5", "--upload-id", "cli1", "--project-id", "p9"],
                            env=service_env(env), cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr  # the progress bar
    tasks = mongo.frames.tasks_of("cli1")
    assert len(tasks) == 1 and tasks[0]["frameCount"] == 8
    assert tasks[0]["videoPath"] in result.stdout
    assert Path(tasks[0]["videoPath"]).is_file()


def test_command_line_reports_bad_content(env, tmp_path, mongo):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    result = subprocess.run([sys.executable, "app.py", "process", str(bad), "--upload-id", "b1"],
                            env=service_env(env), cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "not a video" in result.stderr
    assert mongo.uploads.get_upload("b1")["status"] == 2


def test_command_line_config_error_names_key(env):
    result = subprocess.run([sys.executable, "app.py", "process", "x"],
                            env=service_env({**env, "PROCESSING_CRF": "99"}), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "processing.crf" in result.stderr
