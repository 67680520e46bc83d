"""The two pieces every producer thread of a bounded queue needs: a put that
gives up once the consumer has stopped, and a thread that runs in a copy of
its starter's context."""
from __future__ import annotations

import contextvars
import queue
import threading
from typing import Callable

POLL_SECONDS = 0.2  # how soon a blocked put sees that the consumer stopped


def put_unless_stopped(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` into the bounded ``q``, waiting for room; False, and ``item``
    not put, once ``stop`` is set (a consumer that has gone never makes room)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def context_thread(target: Callable[..., object], *, name: str, args: tuple = (),
                   daemon: bool | None = None) -> threading.Thread:
    """A thread (not started) that runs ``target(*args)`` in a copy of the
    calling thread's context: what it logs carries the job's context (the
    upload id, see logging_setup.py) like the caller's own lines."""
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target, *args), name=name,
                            daemon=daemon)
