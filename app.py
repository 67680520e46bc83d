"""Content processor: the development entry point (the factory is ``api.create_app``).

    python app.py                                  serve the API and run jobs (development)
    python app.py process VIDEO --frame-rate 5     process a local file, with a progress bar
        [--model N] [--review out.html]            auto-annotate; write the review page
"""
from __future__ import annotations

import argparse
import os
import sys

from api import create_app
from config import Config, load_config
from dev_key import serving_config
from logging_setup import configure_logging

__all__ = ["create_app", "main"]  # create_app: the factory, from api/ (wsgi.py, the tests)


def serve(config: Config) -> None:
    """Development server with the embedded executor (gunicorn for production);
    with ``queue.broker_url`` set, Celery workers run the jobs instead."""
    from engines.control import start_executor
    from mongo_manager import resolve_uri

    resolve_uri(config)  # start the embedded database before anything needs it
    supervisor = None if config.broker_url else start_executor(parent_pid=os.getpid())
    try:
        create_app(config).run(host=config.server.host, port=config.server.port, threaded=True)
    finally:
        if supervisor is not None:
            supervisor.terminate()
            supervisor.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="content processor")
    commands = parser.add_subparsers(dest="command")
    process = commands.add_parser("process", help="process a local video or image set")
    process.add_argument("path")
    process.add_argument("--frame-rate", type=int, default=5)
    process.add_argument("--content-type", type=int, choices=(1, 2), default=None,
                         help="1 = video, 2 = images (default: guessed from the path)")
    process.add_argument("--project-id", default="local")
    process.add_argument("--upload-id", default=None)
    process.add_argument("--force-write", type=int, choices=(0, 1), default=0)
    process.add_argument("--model", type=int, default=0, metavar="N",
                         help="auto-annotate with registered model version N (0 = none)")
    process.add_argument("--review", default=None, metavar="OUT.html",
                         help="write the upload's review page (frames, boxes, tracks) here")
    args = parser.parse_args(argv)
    configure_logging()  # JSON lines on stderr, like every process of the service
    try:
        config = load_config(require_auth_key=False)
        if args.command != "process":  # serving needs the key; a local file no HTTP call
            config = serving_config(config)  # dev_mode: generated here, not while loading
    except Exception as exc:  # a ConfigError: say which key, no traceback
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "process":
        from cli import process_local
        return process_local(config, args)
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
