"""The producer side of a bounded queue (processors/threads.py): a put waits
for room, and gives up once the consumer has stopped."""
from __future__ import annotations

import queue
import threading

from processors.threads import put_unless_stopped


def test_put_waits_for_room_and_gives_up_when_stopped():
    q: queue.Queue = queue.Queue(1)
    stop = threading.Event()
    assert put_unless_stopped(q, "a", stop)
    taker = threading.Timer(0.3, q.get)  # room only once the consumer takes "a"
    taker.start()
    assert put_unless_stopped(q, "b", stop)
    taker.join()
    assert q.get_nowait() == "b"
    q.put("c")  # full, and nobody takes: the stopped consumer never makes room
    threading.Timer(0.3, stop.set).start()
    assert not put_unless_stopped(q, "d", stop)
    assert q.get_nowait() == "c" and q.empty()
