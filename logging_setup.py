"""Structured logs: one JSON object per line, with the upload id while handling one.

Every process of the service (gunicorn master and workers, the executor and its
job processes, ``python app.py``) logs through ``JsonFormatter``: ``time``,
``level``, ``logger``, ``message`` and, on every line logged while an upload is
being handled, ``upload_id``. The id lives in a context variable, set by the
API handler for the length of a request and by the job runner for the length
of a job, so that it follows the work (gevent greenlets each have their own
context; threads a job starts copy it, see processors/pipeline.py) instead of
having to be passed to every ``log`` call.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Iterator

_upload_id: ContextVar[str | None] = ContextVar("upload_id", default=None)

# LogRecord attributes that are not extra fields passed with ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def current_upload_id() -> str | None:
    return _upload_id.get()


def set_upload_id(upload_id: Any) -> None:
    """Tag what this request (or job) logs from now on; ``None`` stops tagging."""
    _upload_id.set(None if upload_id in (None, "") else str(upload_id))


@contextlib.contextmanager
def upload_context(upload_id: Any) -> Iterator[None]:
    """Tag every line logged inside the block with ``upload_id``."""
    token = _upload_id.set(None if upload_id in (None, "") else str(upload_id))
    try:
        yield
    finally:
        _upload_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never raises on odd arguments."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name,
            "message": record.getMessage(), "process": record.process,
        }
        upload_id = getattr(record, "upload_id", None) or _upload_id.get()
        if upload_id:
            entry["upload_id"] = upload_id
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            entry.update(_access_fields(record.args))
        for key, value in vars(record).items():  # extra={...} fields
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _access_fields(atoms: dict) -> dict[str, Any]:
    """gunicorn passes the request's atoms as the record's args: keep them typed."""
    return {"http": {"method": atoms.get("m"), "path": atoms.get("U"),
                     "status": _int(atoms.get("s")), "durationMs": _int(atoms.get("M")),
                     "remote": atoms.get("h"), "userAgent": atoms.get("a")}}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def handler_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary: JSON lines on stderr."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json",
                              "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["json"]},
    }


def gunicorn_log_config(access_log: str | None) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its own loggers in JSON too.

    ``access_log``: None = no access log; "-" = stdout; else a file. gunicorn
    hands each request's fields to the access logger, so they come out typed
    (``http.status``, ``http.durationMs``, ...).
    """
    config = handler_config()
    access_handler = "json"
    if access_log:
        access_handler = "access"
        config["handlers"]["access"] = (
            {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
            if access_log == "-" else
            {"class": "logging.FileHandler", "formatter": "json", "filename": access_log})
    config["loggers"] = {
        "gunicorn.error": {"level": "INFO", "handlers": ["json"], "propagate": False},
        # WARNING when off: gunicorn logs each request at INFO.
        "gunicorn.access": {"level": "INFO" if access_log else "WARNING",
                            "handlers": [access_handler], "propagate": False},
    }
    return config


def configure_logging(level: int | str = logging.INFO) -> None:
    """JSON lines on stderr for this process (replaces any handler already set)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
