"""docker-compose.yml, Procfile and Dockerfile agree with the service's real settings.

They cannot be run here (no docker); this checks what can go wrong silently: an
environment variable that is not a config key (ignored, so the setting never
applies), a value the service would refuse at start-up, a health check that
does not hit /api/health, a worker listening on a queue nothing is sent to.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from config import DEFAULTS, load_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# Our image's services: the ones that run the service's code.
APP_SERVICES = sorted(name for name, svc in SERVICES.items()
                      if str(svc.get("image", "")).startswith("content-processor"))
# Read from the environment, but not config keys: the S3 client's credentials,
# and gunicorn.conf.py's own settings.
OTHER_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CONFIG_FILE"} | set(
    re.findall(r"GUNICORN_[A-Z_]+", (ROOT / "gunicorn.conf.py").read_text()))


def config_keys() -> set[str]:
    return {f"{section}_{key}".upper() for section, keys in DEFAULTS.items() for key in keys}


def environment(service: str) -> dict[str, str]:
    """The service's environment as compose would pass it, with the required
    ``${VAR:?...}`` variables given a value and ``${VAR:-default}`` defaulted."""
    def substitute(value: str) -> str:
        value = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "secret", value)
        return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return {key: substitute(str(value)) for key, value in SERVICES[service]["environment"].items()}


def command(service: str) -> list[str]:
    value = SERVICES[service]["command"]
    return value if isinstance(value, list) else shlex.split(value)


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(cmd) for name, cmd in
            (line.split(":", 1) for line in lines if line and not line.startswith("#"))}


def test_the_production_services_are_there():
    assert {"web", "worker-cpu", "worker-gpu", "redis", "mongo", "s3"} <= set(SERVICES)
    assert APP_SERVICES == ["web", "worker-cpu", "worker-gpu"]
    assert SERVICES["mongo"]["image"].startswith("mongo:")  # a real MongoDB, not embedded
    assert "seaweedfs" in SERVICES["s3"]["image"]


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_variable_is_a_real_setting(service):
    keys = config_keys()
    unknown = [name for name in environment(service)
               if name not in keys and name not in OTHER_VARIABLES
               and not re.fullmatch(r"ANNOTATION_VERSION_\d+", name)]
    assert not unknown, f"{service}: not config keys: {unknown}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_the_environment_passes_config_validation(service):
    config = load_config(env=environment(service))  # raises ConfigError naming the key
    assert config.mongodb.uri.startswith("mongodb://mongo:")  # not the embedded server
    assert config.broker_url.startswith("redis://redis:")
    assert config.s3.endpoint_url == "http://s3:8333" and config.s3.bucket
    assert config.contents_dir == Path("/data/contents")
    assert not config.events.enabled  # events only when EVENTS_URL is given
    with_events = load_config(env={**environment(service), "EVENTS_URL": "https://backend/hooks",
                                   "EVENTS_SECRET": "whsec_" + "A" * 43 + "="})
    assert with_events.events.url == "https://backend/hooks"


def test_web_health_check_hits_api_health():
    web = SERVICES["web"]
    config = load_config(env=environment("web"))
    check = " ".join(web["healthcheck"]["test"])
    assert f"http://127.0.0.1:{config.server.port}/api/health" in check
    assert f"{config.server.port}:{config.server.port}" in web["ports"]
    assert command("web") == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def test_every_long_running_service_has_a_health_check():
    for name, svc in SERVICES.items():
        if svc.get("restart") != "no":
            assert svc.get("healthcheck", {}).get("test"), name


@pytest.mark.parametrize("service,queue", [("worker-cpu", "cpu_queue"),
                                           ("worker-gpu", "gpu_queue")])
def test_workers_listen_where_jobs_are_sent(service, queue):
    config = load_config(env=environment(service))
    args = command(service)
    assert args[:4] == ["celery", "-A", "celery_app", "worker"]
    assert args[args.index("-Q") + 1] == getattr(config.queue, queue)


def test_gpu_worker_gets_a_gpu():
    gpu = SERVICES["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert load_config(env=environment("worker-gpu")).annotation.device == "cuda"


def test_procfile_runs_what_compose_runs():
    processes = procfile()
    assert processes["web"] == command("web")
    assert processes["worker"] == command("worker-cpu")
    assert processes["gpu_worker"] == command("worker-gpu")


def test_dockerfile_starts_the_web_server():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)
    assert yaml.safe_load(cmd) == command("web")
    assert "./install.sh" in dockerfile  # the same install as a bare machine
