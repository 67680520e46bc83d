"""One error hierarchy for the whole service.

Every error the service raises on purpose derives from ``ServiceError``; the
API maps it to an HTTP response in one place (``api/errors.py``) and the job
runner turns a ``ContentError`` into ``status = 2`` with ``errorMessage``.
"""
from __future__ import annotations


class ServiceError(Exception):
    """Base class: ``http_status`` and a stable machine-readable ``code``."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class ConfigError(ServiceError):
    """A bad configuration value; start-up stops with the key named."""

    code = "config_error"


class BadRequest(ServiceError):
    http_status = 400
    code = "invalid_request"

    def __init__(self, errors: dict[str, str], message: str | None = None) -> None:
        names = ", ".join(sorted(errors))
        super().__init__(message or f"invalid request: {names}")
        self.errors = errors

    def to_dict(self) -> dict:
        return {**super().to_dict(), "errors": self.errors}


class Unauthorized(ServiceError):
    http_status = 401
    code = "unauthorized"


class NotFound(ServiceError):
    http_status = 404
    code = "not_found"


class Conflict(ServiceError):
    http_status = 409
    code = "conflict"


class BodyTooLarge(ServiceError):
    """The request body is larger than server.max_body_bytes; nothing was accepted."""

    http_status = 413
    code = "body_too_large"


class DatabaseUnavailable(ServiceError):
    http_status = 503
    code = "database_unavailable"


class InsufficientStorage(ServiceError):
    """The contents store is below processing.min_free_mb; nothing was accepted."""

    http_status = 507
    code = "insufficient_storage"


class DiskFull(InsufficientStorage):
    """The contents store ran out of space under a job (ENOSPC).

    Ends the job with ``status = 2``, its partial outputs removed; the warm
    start runs it again once the store is above the floor.
    """

    code = "disk_full"


class DatabaseTimeout(DatabaseUnavailable):
    """The database did not answer within a request's deadline
    (mongodb.request_timeout_ms): frozen, partitioned, failing over. The
    request gave up rather than queue behind it."""


class JobCancelled(ServiceError):
    """The job's run was replaced (force_write=1) while it was running."""

    code = "cancelled"


class ContentError(ServiceError):
    """The uploaded content cannot be processed (not a video, truncated, ...).

    Ends the job with ``status = 2``; ``code`` says which problem it was.
    """

    http_status = 422
    code = "bad_content"


class DatasetError(ServiceError):
    """A dataset version cannot be built as it stands (no labels, no tasks, ...).

    Ends the build with ``status = 2``; a warm start does not retry it.
    """

    http_status = 422
    code = "bad_dataset_version"


class StorageError(ServiceError):
    """The object store failed: unreachable, missing bucket, rejected credentials.

    ``retryable``: the store was away or overloaded (a later warm start
    finishes the build); otherwise a person has to fix the setup first.
    """

    http_status = 502
    code = "storage_error"

    def __init__(self, message: str, *, code: str | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable
