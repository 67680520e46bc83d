"""``celery -A celery_app worker -Q cut``: the Celery worker's entry (the worker
side is ``engines/celery_worker.py``).

``app`` is built from config.cfg and the environment on first use: importing
this module reads no configuration.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# ``celery -A celery_app`` puts the working folder on sys.path only while it
# imports this module, and its pool processes inherit the path without it; the
# job code imports some modules lazily (``engines.engine.get_notifier`` imports
# the Celery send side, model runtimes load on first use), so this folder stays
# on the path for the worker's whole life. Inserted even when it is there
# already: Celery then removes one copy (its own) and ours stays.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from config import load_config  # noqa: E402
from engines.celery_worker import worker_app  # noqa: E402  (connects the worker's signals)
from exceptions import ConfigError  # noqa: E402


def __getattr__(name: str) -> Any:
    """``app`` for ``celery -A celery_app``."""
    if name in ("app", "celery"):
        global app
        try:
            config = load_config(require_auth_key=False)  # workers serve no HTTP
        except ConfigError as exc:  # one line naming the key, as gunicorn gives it
            print(f"configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        app = worker_app(config)
        return app
    raise AttributeError(name)
