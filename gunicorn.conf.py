"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app`` is a complete deployment.

gevent workers serve the API (requests only record jobs, in milliseconds);
the master starts the embedded database and the job executor once, before
forking, so that heavy work never runs in a web worker. No preload: each
worker creates its MongoDB client lazily after the fork.
"""
import multiprocessing
import os
import sys

from annotation.registry import ModelRegistry
from config import load_config
from dev_key import serving_config
from exceptions import ConfigError
from logging_setup import gunicorn_log_config

try:
    # The key is checked (and dev_mode's made, once, before the workers read it) here.
    _config = serving_config(load_config(require_auth_key=False))
    ModelRegistry(_config.annotation)  # a bad model manifest stops start-up here
except ConfigError as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    sys.exit(2)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("GUNICORN_BIND", f"{_config.server.host}:{_config.server.port}")
proc_name = "content-processor"
worker_class = "gevent"
# One event loop per core: a worker's own CPU work (parsing, validation, JSON)
# runs on one core; its waits on MongoDB yield to other requests.
workers = _env_int("GUNICORN_WORKERS", multiprocessing.cpu_count())
# Open connections per worker, idle keep-alive ones included; each is a parked
# greenlet (a few KiB), so many are cheap. Work on MongoDB at once is bounded
# anyway by pymongo's pool (100 per process): beyond it greenlets queue there.
worker_connections = _env_int("GUNICORN_WORKER_CONNECTIONS", 1000)
preload_app = False
# A gevent worker heartbeats from its event loop between greenlet switches, so
# this kills only a worker whose loop is stuck (a request never blocks it for
# long: every request is milliseconds of work plus database waits that yield).
timeout = _env_int("GUNICORN_TIMEOUT", 30)
# On SIGTERM (a deploy, a scale-down) in-flight requests get this long to end:
# several times a request's database deadline (mongodb.request_timeout_ms, 3 s),
# so a request waiting on a failing-over replica set still answers. docker-compose.yml's
# stop_grace_period is longer than this plus the executor's stop.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 20)
# Longer than the idle timeout of whatever keeps connections to us (a load
# balancer: 60 s; the Node.js backend's keep-alive agent: a few s): otherwise we
# may close a socket just as the caller reuses it, and its request fails with
# ECONNRESET. An idle keep-alive connection costs one parked greenlet.
keepalive = _env_int("GUNICORN_KEEPALIVE", 75)
# The worker heartbeat file in memory: on a container's overlay /tmp a slow
# disk write can stall the heartbeat and get a healthy worker killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = os.environ.get("GUNICORN_ACCESSLOG")  # unset: none; "-": stdout; else a file
# JSON lines, like every process of the service (logging_setup.py); the workers
# are forked from the master, so the app's own loggers log JSON there too.
logconfig_dict = gunicorn_log_config(accesslog)


def when_ready(server):
    # Nothing here may load pymongo: the workers are forked from this
    # process and gevent must patch them before pymongo loads.
    from embedded_db import embedded_uri
    from engines.control import start_executor

    if _config.mongodb.uri == "embedded":  # start it once, before the workers need it
        embedded_uri(_config.contents_dir / "db")
    if not _config.broker_url:  # with a broker, Celery workers run the jobs
        server.content_executor = start_executor(parent_pid=os.getpid())


def on_exit(server):
    executor = getattr(server, "content_executor", None)
    if executor is not None:
        executor.terminate()
        executor.wait(timeout=30)
