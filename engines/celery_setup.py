"""The Celery app's settings, shared by the sending side (``engines/celery_send.py``)
and the workers (``engines/celery_worker.py``).

Delivery settings: ``acks_late`` (a message is acknowledged only after its job
ran, so a worker that dies mid-job leaves it to be delivered again),
``task_reject_on_worker_lost`` (a killed pool process gives its message back at
once), prefetch 1 (a busy worker holds no other job back from idle workers),
and a Redis visibility timeout (``queue.visibility_timeout``) longer than the
longest job, so a slow job is not handed to a second worker while it runs.
"""
from __future__ import annotations

from celery import Celery

from config import Config
from exceptions import ConfigError

RUN_JOB = "content.run_job"  # the one task: its only argument is a job id


def make_celery(config: Config) -> Celery:
    """The Celery app of ``config``, its task not registered: what the sending side
    uses (``worker_app`` adds the task)."""
    if not config.broker_url:
        raise ConfigError("queue.broker_url is empty: set it (redis://...) to use Celery")
    queues = config.queue
    app = Celery("content_processor", broker=config.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=config.processing.workers,
        task_ignore_result=True,  # the job document is the result
        task_default_queue=queues.cpu_queue,
        # Bounded waits on Redis (queue.broker_timeout_seconds): a broker that
        # stops answering fails a send in seconds (the sweeper sends it later).
        broker_transport_options={"visibility_timeout": queues.visibility_timeout,
                                  "socket_connect_timeout": queues.broker_timeout_seconds,
                                  "socket_timeout": queues.broker_timeout_seconds},
        broker_connection_timeout=queues.broker_timeout_seconds,
        broker_connection_retry_on_startup=True,
        # A job keeps running while the broker is away: its state is in MongoDB,
        # and its redelivered message (if any) finds it done.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Accepting a request must not hang on a dead broker: the job is already
        # recorded, and the sweeper sends it once the broker is back.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0,
                                   "interval_step": 0.5, "interval_max": 1},
        worker_hijack_root_logger=True,
    )
    return app
