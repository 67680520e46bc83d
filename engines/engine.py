"""How a job's engine hears of it: the ``JobNotifier`` protocol and
``get_notifier`` (a wake-up for the embedded engine's job processes, or a
Celery message when ``queue.broker_url`` is set).

Accepting a request records its job in MongoDB first; ``notify`` only tells
the engine, so a lost notice delays a job but never loses it.
"""
from __future__ import annotations

import logging
from typing import Protocol

from config import Config
from engines.control import wake_executor

log = logging.getLogger(__name__)


class JobNotifier(Protocol):
    def notify(self, job_id: str) -> None: ...


class EmbeddedNotifier:
    """The job document is the queue entry; the job processes claim queued jobs."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def notify(self, job_id: str) -> None:
        # The job was recorded (state "queued") before this call: the wake-up
        # only saves an idle job process the wait for its next poll.
        wake_executor(self.config)
        log.debug("job %s queued for the embedded executor", job_id)


def get_notifier(config: Config) -> JobNotifier:
    if config.broker_url:  # imported only here: the embedded engine needs no Celery
        from engines.celery_send import CeleryNotifier
        return CeleryNotifier(config)
    return EmbeddedNotifier(config)
