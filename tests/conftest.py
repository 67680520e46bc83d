"""Fixtures: one real SecantusDB server for the run, a fresh database per test.

Like Flask's tutorial: ``config`` -> ``app`` -> ``client``; ``mongo`` talks to
the test's own database; ``run_jobs`` runs queued jobs here, the way a job
process of the executor does.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app import create_app  # noqa: E402
from config import Config, load_config  # noqa: E402
from embedded_db import embedded_uri, stop_embedded  # noqa: E402
from engines.embedded import worker_loop  # noqa: E402
from mongo_manager import MongoManager, close_mongo, get_mongo  # noqa: E402

AUTH_KEY = "test-key-0123456789"


@pytest.fixture(scope="session")
def db_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secantus")
    yield path
    stop_embedded(path)


@pytest.fixture(scope="session")
def db_uri(db_dir: Path) -> str:
    """A real SecantusDB server over TCP, started once for the whole run."""
    return embedded_uri(db_dir)


@pytest.fixture
def contents(tmp_path: Path) -> Path:
    path = tmp_path / "contents"
    (path / "uploads").mkdir(parents=True)
    return path


@pytest.fixture
def env(db_uri: str, contents: Path) -> dict[str, str]:
    """The environment a process of the service under test runs with."""
    return {"SERVER_AUTH_KEY": AUTH_KEY, "MONGODB_URI": db_uri,
            "MONGODB_DATABASE": f"t_{uuid.uuid4().hex[:12]}",
            "PATHS_CONTENTS_DIR": str(contents), "PROCESSING_FRAMES_PER_TASK": "10",
            "PROCESSING_WORKERS": "2", "PROCESSING_POLL_SECONDS": "0.1",
            "PROCESSING_LEASE_SECONDS": "5", "CONFIG_FILE": str(ROOT / "config.cfg")}


@pytest.fixture
def make_config(env: dict[str, str]) -> Callable[..., Config]:
    def make(**overrides: str) -> Config:
        return load_config(env={**env, **overrides})
    return make


@pytest.fixture
def config(make_config) -> Config:
    return make_config()


@pytest.fixture
def mongo(config: Config) -> MongoManager:
    manager = get_mongo(config)
    yield manager
    manager.client.drop_database(config.mongodb.database)
    close_mongo(config)  # one client per test's database would pile up connections


@pytest.fixture
def app(config: Config, mongo: MongoManager):
    app = create_app(config)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def run_jobs(config: Config, mongo: MongoManager) -> Callable[[], int]:
    """Run every queued job to the end in this process; returns how many ran."""
    def run(cfg: Config | None = None) -> int:
        return worker_loop(cfg or config, threading.Event(), drain=True)
    return run


@pytest.fixture
def post(client):
    """POST /api/processContent with the key and sensible defaults."""
    def send(**fields):
        body = {"auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": 5,
                "request_type": 0, "content_type": 1, **fields}
        body = {k: v for k, v in body.items() if v is not None}
        return client.post("/api/processContent", json=body)
    return send


def wait_for(predicate: Callable, timeout: float = 120.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something true (returned), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def service_env(env: dict[str, str]) -> dict[str, str]:
    """os.environ plus the test's config, for subprocesses of the service.

    No PYTHONPATH: the service's commands must work as a person types them,
    from the repo folder with nothing else on the path (a PYTHONPATH here once
    hid that ``celery -A celery_app worker`` could not import the job code).
    """
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**base, **env}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 store, started once for the whole run."""
    from s3_server import SeaweedServer
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """A fresh bucket; its config and credentials (set here too, for boto3)."""
    values = s3_server.env(s3_server.new_bucket())
    use_credentials(monkeypatch, values)
    return values


def use_credentials(monkeypatch, values: dict[str, str]) -> None:
    """The store's credentials for boto3 in this process (it reads the environment)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, values[name])
