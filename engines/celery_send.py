"""The Celery engine's sending side: ``notify(job_id)`` sends the job's id to its
queue (it never imports the worker side).

Cutting (processContent request_type 0) and dataset builds go to the CPU
queue (``queue.cpu_queue``); auto-annotation (request_type 1 and 2) to the
GPU-capable one (``queue.gpu_queue``), so that a GPU machine can take only
annotation work. The job is already durable in MongoDB when it is sent: a send
that fails (broker away) is logged and left to the workers' sweeper.
"""
from __future__ import annotations

import logging
import threading

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from config import Config, QueueConfig
from engines.celery_setup import RUN_JOB, make_celery
from job_states import ANNOTATING_TYPES, JobKind
from job_types import JobSend
from mongo_manager import get_mongo

log = logging.getLogger(__name__)

CUTTING_KINDS = (JobKind.CONTENT, JobKind.SEGMENT)  # a whole upload, or one segment of it


def queue_for(job: JobSend, queues: QueueConfig) -> str:
    """The queue a job goes to: annotation work is the only GPU work."""
    if job.kind in CUTTING_KINDS and job.request_type in ANNOTATING_TYPES:
        return queues.gpu_queue
    return queues.cpu_queue


class CeleryNotifier:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._app: Celery | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Celery:
        # Created on first use, in the process that sends (gunicorn forks first).
        with self._lock:
            if self._app is None:
                self._app = make_celery(self.config)
            return self._app

    def notify(self, job_id: str) -> None:
        mongo = get_mongo(self.config)
        doc = mongo.jobs.note_sent(job_id, self.config.queue.resubmit_seconds)
        if doc is None:
            return
        if not self.send(JobSend.from_doc(doc)):
            mongo.jobs.resend_soon(job_id)

    def send(self, job: JobSend) -> bool:
        """Send one job's id to its queue (the message carries nothing else);
        False when the broker cannot be reached."""
        queue = queue_for(job, self.config.queue)
        try:
            self.app.send_task(RUN_JOB, args=[job.id], queue=queue)
        except (OperationalError, redis.RedisError, OSError) as exc:
            log.warning("job %s: broker unreachable, the sweeper will send it: %s", job.id, exc)
            return False
        log.debug("job %s sent to %s", job.id, queue)
        return True

    def health(self) -> dict:
        """The broker's reachability and the messages waiting in each queue."""
        queues = self.config.queue
        # The health check waits no longer than its own deadline.
        seconds = min(queues.broker_timeout_seconds, self.config.server.health_timeout_seconds)
        client = redis.Redis.from_url(self.config.broker_url, socket_timeout=seconds,
                                      socket_connect_timeout=seconds)
        try:
            # A queue is a Redis list named after it (kombu's Redis transport).
            waiting = {name: client.llen(name) for name in (queues.cpu_queue, queues.gpu_queue)}
        except (redis.RedisError, OSError):
            return {"ok": False, "engine": "celery", "error": "broker unreachable"}
        finally:
            client.close()
        return {"ok": True, "engine": "celery", "waiting": waiting}
