"""Content processor: Flask application factory and development entry point.

    python app.py                                  serve the API and run jobs (development)
    python app.py process VIDEO --frame-rate 5     process a local file, with a progress bar
"""
from __future__ import annotations

import argparse
import os
import sys

from flask import Flask

from api.service import Service
from config import Config, load_config, with_auth_key
from logging_setup import configure_logging


def create_app(config: Config | None = None) -> Flask:
    """The Flask app for ``config`` (read from config.cfg and the environment if None)."""
    # The one place the key is used: never serve without one, however the
    # config was loaded.
    config = with_auth_key(config or load_config())
    app = Flask(__name__)
    app.config["SERVICE"] = Service(config)
    # Bodies over the limit are refused (413) before they are read: by
    # Content-Length, or while reading a chunked body (gunicorn marks its input
    # as terminated, so Werkzeug stops reading at the limit).
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = config.server.max_body_bytes
    app.json.sort_keys = False
    # No routing redirects (an HTML 308 for ".../id/" or "...//"): such a URL is
    # served as written or gets the JSON 404. Set before the routes are added.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False

    import api  # after the app exists: blueprints import current_app lazily
    api.register(app)
    return app


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
    args = parser.parse_args(argv)
    configure_logging()  # JSON lines on stderr, like every process of the service
    try:
        # Serving needs the key; processing a local file makes no HTTP call.
        config = load_config(require_auth_key=args.command != "process")
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
