"""A database that stops answering (a frozen primary, a partition): the API
answers in seconds, and the running upload carries on once it answers again.

The database is a dedicated SecantusDB server frozen with SIGSTOP (the suite's
shared one serves the other tests), under gunicorn started as the README says.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import requests
from conftest import AUTH_KEY, wait_for
from media import cfr_video, clip_barcodes
from queue_fixtures import secantus_server  # noqa: F401 (a fixture: a restartable server)
from live_server import readme_gunicorn

from storage import space as space_module
from config import load_config
from embedded_db import embedded_uri, stop_embedded
from exceptions import ConfigError
from mongo_manager import MongoManager

FRAMES, RATE = 1800, 10  # a 60 s video sampled at 10 fps: 600 frames, 5 tasks


def test_frozen_database(env, tmp_path):
    db_dir = tmp_path / "db"
    uri = embedded_uri(db_dir)
    db_pid = json.loads((db_dir / "server.json").read_text())["pid"]
    try:
        health = _outage(env, tmp_path, uri, lambda: _freeze(db_pid),
                         lambda: os.kill(db_pid, signal.SIGCONT))
    finally:
        os.kill(db_pid, signal.SIGCONT)
        stop_embedded(db_dir)
    assert health["database"] == {"ok": False, "error": "no answer within 1.5 s"}


def test_an_acknowledged_write_survives_the_database_killed(secantus_server):
    """Every write the service was told of is journaled: SecantusDB killed -9
    right after acknowledged writes keeps them all (without journaling it lost
    the last moments' writes, a staged task among them, and the running upload
    of the test below failed once in three)."""
    mongo = MongoManager(secantus_server.uri, "durability")
    try:
        for trial in range(3):
            for i in range(40):
                mongo.db["probe"].insert_one({"trial": trial, "i": i})
            secantus_server.proc.kill()
            secantus_server.proc.wait()
            secantus_server.start()
            assert mongo.db["probe"].count_documents({"trial": trial}) == 40
    finally:
        mongo.close()


def test_database_killed_and_restarted(env, tmp_path, secantus_server):
    killed: list[float] = []

    def kill() -> None:
        secantus_server.proc.kill()
        secantus_server.proc.wait()
        killed.append(time.monotonic())

    def restart() -> None:
        # Down longer than mongodb.timeout_ms (5 s): the job's operations wait for it.
        time.sleep(max(0.0, killed[0] + 6.0 - time.monotonic()))
        secantus_server.start()
    health = _outage(env, tmp_path, secantus_server.uri, kill, restart)
    assert health["database"]["ok"] is False


def _outage(env: dict[str, str], tmp_path: Path, uri: str, stop, resume) -> dict:
    """Under gunicorn, stop the database while an upload is being cut: health and
    a new POST answer 503 in seconds, nothing of it is recorded; once resumed,
    the running upload ends exact, run once. Returns the health checks."""
    env = {**env, "MONGODB_URI": uri, "PROCESSING_LEASE_SECONDS": "30",
           "PROCESSING_FRAMES_PER_TASK": "120"}
    cfr_video(Path(env["PATHS_CONTENTS_DIR"]) / "uploads" / "long.mp4", FRAMES)
    server, base = readme_gunicorn(env, tmp_path / "gunicorn.log", workers=1)
    mongo = MongoManager(uri, env["MONGODB_DATABASE"])
    try:
        wait_for(lambda: _get(base + "/api/health").status_code == 200, 60, "health")
        assert _post(base, "running").status_code == 202
        wait_for(lambda: (_get(f"{base}/api/processContent/running").json()["progress"] or 0)
                 > 0, 60, "the cut to start")
        stopped_at = datetime.now(timezone.utc)
        stop()
        try:
            health, health_s = _timed(lambda: _get(base + "/api/health"))
            accept, accept_s = _timed(lambda: _post(base, "refused"))
        finally:
            resume()
        assert health.status_code == 503 and health_s < 2.0, (health_s, health.text)
        assert accept.status_code == 503 and accept_s < 4.5, (accept_s, accept.text)
        assert accept.json()["code"] == "database_unavailable"
        wait_for(lambda: _get(f"{base}/api/processContent/running").json()["status"] != 0,
                 60, "the cut to end")
        # Nothing accepted while down; the running upload ends exact, run once.
        assert mongo.jobs.get_job("processContent:refused") is None
        assert mongo.uploads.get_upload("refused") is None
        upload = mongo.uploads.get_upload("running")
        assert upload["status"] == 1, upload["errorMessage"]
        assert upload["finishedAt"] > stopped_at  # ran through it
        assert mongo.jobs.get_job("processContent:running")["attempts"] == 1
        frames = [n for task in mongo.frames.tasks_of("running")
                  for n in clip_barcodes(Path(task["videoPath"]))]
        assert frames == list(range(0, FRAMES, 30 // RATE))
        assert _get(base + "/api/health").status_code == 200
        return health.json()["checks"]
    finally:
        mongo.close()
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def _freeze(pid: int) -> None:
    """SIGSTOP, and wait until every thread of ``pid`` has stopped (the signal is
    delivered asynchronously)."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    wait_for(lambda: all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
                         for task in tasks.iterdir()), 10, "the database to stop")


# Connection: close, or gunicorn's graceful stop waits for the kept-alive ones.
HEADERS = {"X-Auth-Key": AUTH_KEY, "Connection": "close"}


def _get(url: str) -> requests.Response:
    try:
        return requests.get(url, headers=HEADERS, timeout=30)
    except requests.ConnectionError:  # not listening yet
        return requests.Response()


def _post(base: str, upload_id: str) -> requests.Response:
    return requests.post(f"{base}/api/processContent", headers=HEADERS, data={
        "auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "p1",
        "frame_rate": str(RATE), "content_path": "uploads/long.mp4", "force_write": "0",
        "auto_anno_version": "0", "request_type": "0", "content_type": "1"}, timeout=30)


def _timed(call):
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def test_health_answers_while_the_disk_hangs(client, mongo, monkeypatch):
    """A statvfs on a hung NFS mount can block forever: the check is abandoned."""
    released = threading.Event()

    def hung(_path):
        released.wait(10)
        raise OSError("hung")
    monkeypatch.setattr(space_module.shutil, "disk_usage", hung)
    try:
        response, seconds = _timed(lambda: client.get("/api/health"))
    finally:
        released.set()
    assert response.status_code == 503 and seconds < 2.0, seconds
    checks = response.json["checks"]
    assert checks["storage"] == {"ok": False, "error": "no answer within 1.5 s"}
    assert checks["database"]["ok"] is True


def test_timeout_settings(env):
    config = load_config(env={**env, "MONGODB_TIMEOUT_MS": "700"})
    assert (config.mongodb.timeout_ms, config.mongodb.connect_timeout_ms) == (700, 700)
    config = load_config(env={**env, "MONGODB_CONNECT_TIMEOUT_MS": "900",
                              "MONGODB_REQUEST_TIMEOUT_MS": "2500",
                              "S3_READ_TIMEOUT_SECONDS": "30",
                              "QUEUE_BROKER_TIMEOUT_SECONDS": "2",
                              "SERVER_HEALTH_TIMEOUT_SECONDS": "1"})
    assert config.mongodb.connect_timeout_ms == 900
    assert config.mongodb.request_timeout_ms == 2500 and config.s3.read_timeout_seconds == 30
    assert config.queue.broker_timeout_seconds == 2 and config.server.health_timeout_seconds == 1
    for name, value in (("MONGODB_REQUEST_TIMEOUT_MS", "10"), ("MONGODB_SOCKET_TIMEOUT_MS", "-1"),
                        ("MONGODB_JOB_WAIT_SECONDS", "0"), ("S3_CONNECT_TIMEOUT_SECONDS", "x"),
                        ("SERVER_HEALTH_TIMEOUT_SECONDS", "0")):
        with pytest.raises(ConfigError, match=name.lower().replace("_", ".", 1)):
            load_config(env={**env, name: value})
