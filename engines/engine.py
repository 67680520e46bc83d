"""Who runs a job: the ``Executor`` protocol and ``get_executor`` (the embedded
engine's job processes, or Celery workers when ``queue.broker_url`` is set).

Accepting a request records its job in MongoDB first; ``submit`` only tells
the engine, so a lost ``submit`` delays a job but never loses it.
"""
from __future__ import annotations

import logging
from typing import Protocol

from config import Config
from engines.control import wake_executor

log = logging.getLogger(__name__)


class Executor(Protocol):
    def submit(self, job_id: str) -> None: ...


class EmbeddedExecutor:
    """The job document is the queue entry; the job processes claim queued jobs."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def submit(self, job_id: str) -> None:
        # The job was recorded (state "queued") before this call: the wake-up
        # only saves an idle job process the wait for its next poll.
        wake_executor(self.config)
        log.debug("job %s queued for the embedded executor", job_id)


def get_executor(config: Config) -> Executor:
    if config.broker_url:  # imported only here: the embedded engine needs no Celery
        from engines.celery_send import CeleryExecutor
        return CeleryExecutor(config)
    return EmbeddedExecutor(config)
