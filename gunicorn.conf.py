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
from exceptions import ConfigError

try:
    _config = load_config()
    ModelRegistry(_config.annotation)  # a bad model manifest stops start-up here
except ConfigError as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    sys.exit(2)

bind = os.environ.get("GUNICORN_BIND", f"{_config.server.host}:{_config.server.port}")
worker_class = "gevent"
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count()))
worker_connections = 1000
preload_app = False
timeout = 30
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG")  # "-" for stdout


def when_ready(server):
    # Nothing here may import pymongo: the workers are forked from this
    # process and gevent must patch them before pymongo loads.
    from embedded_db import embedded_uri
    from executor_control import start_executor

    if _config.mongodb.uri == "embedded":  # start it once, before the workers need it
        embedded_uri(_config.contents_dir / "db")
    if not _config.broker_url:  # with a broker, Celery workers run the jobs
        server.content_executor = start_executor(parent_pid=os.getpid())


def on_exit(server):
    executor = getattr(server, "content_executor", None)
    if executor is not None:
        executor.terminate()
        executor.wait(timeout=30)
