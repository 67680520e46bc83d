"""Every command the README gives people, run as a person types it: read from
the README, console scripts from PATH, from the repo folder, no PYTHONPATH, a
fresh contents folder. A README edit that breaks a command breaks a test.

(gunicorn's line is run in test_deployment.py; the CLIs that need no server
key, ``python app.py process``, ``python executor.py``, the dataset CLI and
the warm start, are run the same way in test_entry_point_keys.py.)
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import AUTH_KEY, ROOT, wait_for
from media import cfr_video
from queue_fixtures import needs_redis, redis_server  # noqa: F401
from readme import person_env, readme_command, readme_commands, split

from app import create_app
from config import load_config
from embedded_db import free_port


class Started:
    """A README command running in its own process group, its output in a file."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.command, self.log = command, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(["bash", "-c", command], env=env, cwd=ROOT,
                                         stdout=out, stderr=out, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"`{self.command}` exited:\n{self.text()[-3000:]}")
        return True

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                continue


def healthy(base: str, server: Started) -> bool:
    server.alive()
    try:
        return requests.get(f"{base}/api/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_quick_start_as_written(tmp_path):
    """Quick start 1 in a fresh contents folder; quick start 2 is what CI runs."""
    install_and_run, install_and_test = readme_commands("./install.sh ")[:2]
    assert install_and_run == "./install.sh && python3 quickstart.py"
    ci = (ROOT / ".ci" / "run").read_text()
    assert [f"{part.strip()}\n" in ci for part in install_and_test.split("&&")] == [True, True]
    env = person_env({"PATHS_CONTENTS_DIR": str(tmp_path / "contents")})
    done = subprocess.run(["bash", "-c", install_and_run], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    clips = sorted((tmp_path / "contents" / "tasks" / "quickstart").rglob("task-*-sample.mp4"))
    assert clips and f"{clips[0]}" in done.stdout
    # What a newcomer sees is clean: no error line from the install (pip's
    # resolver once ended it with facenet-pytorch's torch conflict), and none
    # of the server's JSON log lines among the quick start's own: they are in
    # the log file whose path it prints.
    console = (done.stdout + done.stderr).splitlines()
    assert [line for line in console if re.search(r"error|conflict|requires", line, re.I)] == []
    assert [line for line in console if line.lstrip().startswith("{")] == []
    log = tmp_path / "contents" / "logs" / "quickstart-server.log"
    assert f"its log: {log}" in done.stdout
    logged = [json.loads(line) for line in log.read_text().splitlines()
              if line.startswith("{")]
    assert any(e["message"].startswith("Listening at: http://127.0.0.1") for e in logged)
    assert any(e.get("upload_id", "").startswith("quickstart-") for e in logged)


# The production command, ``SERVER_AUTH_KEY=... gunicorn ...``, is run as
# written by test_deployment.test_gunicorn_serves_and_processes.
WEB_COMMANDS = ["SERVER_AUTH_KEY=... python app.py", "SERVER_DEV_MODE=true python app.py"]


@pytest.mark.parametrize("start", WEB_COMMANDS)
def test_web_server_as_documented_processes_an_upload(start, env, contents, mongo, tmp_path):
    command = readme_command(start)
    assigns, argv = split(command)
    run_env = {k: v for k, v in env.items() if k != "SERVER_AUTH_KEY"}
    port = free_port()
    # The documented ways to choose where it listens.
    run_env.update(SERVER_HOST="127.0.0.1", SERVER_PORT=str(port),
                   GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2")
    if assigns.get("SERVER_AUTH_KEY") == "...":
        command = command.replace("SERVER_AUTH_KEY=...", f"SERVER_AUTH_KEY={AUTH_KEY}", 1)
    server = Started(command, person_env(run_env), tmp_path / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(base, server), 120, f"`{command}` to serve")
        key = AUTH_KEY
        if "SERVER_DEV_MODE" in assigns:  # generated, printed and kept for every process
            key = (contents / ".dev_auth_key").read_text().strip()
            assert key in server.text()
        cfr_video(contents / "uploads" / "v.mp4", 30, size=(64, 48))
        answer = requests.post(f"{base}/api/processContent", data={
            "auth_key": key, "upload_id": "w1", "project_id": "p1", "frame_rate": "5",
            "content_path": "uploads/v.mp4"}, timeout=10)
        assert answer.status_code == 202, answer.text
        url = base + answer.json()["status_url"]
        done = wait_for(lambda: (s := requests.get(url, headers={"X-Auth-Key": key},
                                                   timeout=5).json())["status"] and s, 120,
                        "the upload to end")
        assert done["status"] == 1, done
        assert mongo.frames.tasks_of("w1")[0]["frameCount"] == 5
    finally:
        server.stop()


def worker_queues(argv: list[str]) -> list[str]:
    return argv[argv.index("-Q") + 1].split(",")


def procfile_workers() -> list[str]:
    """The Procfile's Celery lines (honcho and foreman run them as written)."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines
            if not line.startswith("#") and "celery -A celery_app worker" in line]


@needs_redis
@pytest.mark.parametrize("command", readme_commands("celery -A celery_app worker")
                         + procfile_workers())
def test_celery_worker_as_documented_runs_jobs(command, env, contents, mongo, redis_server,
                                               tmp_path):
    """Each worker line of the README (and the table's short form) and of the
    Procfile takes and runs the jobs of its queues: a cut, and an auto-annotation (request_type 1,
    the built-in face model)."""
    assigns, argv = split(command)
    if assigns.get("ANNOTATION_DEVICE", "").startswith("cuda"):
        import torch
        if not torch.cuda.is_available():  # the GPU line on a machine without one
            command = command.replace(f"ANNOTATION_DEVICE={assigns['ANNOTATION_DEVICE']} ", "")
    run_env = {**env, "QUEUE_BROKER_URL": redis_server.url}
    worker = Started(command, person_env(run_env), tmp_path / "worker.log")
    try:
        wait_for(lambda: worker.alive() and " ready." in worker.text(), 120,
                 f"`{command}` to be ready")
        client = create_app(load_config(env=run_env)).test_client()
        cfr_video(contents / "uploads" / "v.mp4", 30, size=(64, 48))
        posted = []
        for queue, request_type, version in (("cut", 0, 0), ("annotate", 1, 1)):
            if queue in worker_queues(argv):
                upload_id = f"{queue}1"
                answer = client.post("/api/processContent", json={
                    "auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "p1",
                    "frame_rate": 5, "content_path": "uploads/v.mp4",
                    "request_type": request_type, "auto_anno_version": version})
                assert answer.status_code == 202, answer.get_json()
                posted.append(upload_id)
        assert posted
        wait_for(lambda: all(mongo.uploads.get_upload(u)["status"] for u in posted), 180,
                 f"`{command}` to run the jobs")
        for upload_id in posted:
            upload = mongo.uploads.get_upload(upload_id)
            assert upload["status"] == 1, upload["errorMessage"]
            assert f"job processContent:{upload_id}: claimed by" in worker.text()
    finally:
        worker.stop()


def test_celery_worker_with_a_bad_setting_says_which_in_one_line(env, tmp_path):
    """As gunicorn does: the key named on one line and exit 2, not Celery's
    "Unable to load celery application" over a traceback."""
    command = readme_commands("celery -A celery_app worker")[0]
    bad = {**env, "QUEUE_BROKER_URL": "redis://127.0.0.1:9/0", "PROCESSING_CRF": "99"}
    done = subprocess.run(["bash", "-c", command], env=person_env(bad), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "configuration error: processing.crf must be between 0 and 51, got 99")
    assert "Traceback" not in done.stderr
