"""The state one pipeline run (processors/pipeline.py) shares between its
stage threads (there and in processors/side_stages.py): the sampled frame
handed down the queues, the stop flag, the first error, side-stage progress."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av

from processors.threads import put_unless_stopped

if TYPE_CHECKING:
    from processors.task_split import TaskSplitter

END = object()  # the last item of a queue; also what Run.get returns once stopped


@dataclass
class Sample:
    sample: int
    task: int
    source_index: int
    timestamp: Fraction
    frame: av.VideoFrame
    warmup: bool = False  # for the shot detector only (not a sample of a task)
    # Where it goes (processors/task_split.py): the task's clip and folder name,
    # the frame's 1-based number in it, whether a new shot starts at it.
    label: str = ""
    frame_id: int = 0
    new_shot: bool = False
    before: int = -1  # new_shot: the sampled source frame before it (the last shot's end)


class Run:
    """Shared state of one pipeline run: stop flag, first error, side-stage progress."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.position = 0.0
        self.moves = 0  # items any stage finished: changes while the run is alive
        # (stage, task) -> frames of the task that the JPEG / annotation stage finished
        self.done: dict[tuple[str, int], int] = {}
        self.boxes: dict[int, list] = {}  # sample -> annotation result
        # The split stage's (processors/task_split.py), if the run has one: it
        # records how each task ends before it hands on the frame after it.
        self.splitter: TaskSplitter | None = None
        self.cond = threading.Condition()

    def mark_done(self, stage: str, task: int, count: int = 1) -> None:
        with self.cond:
            self.done[(stage, task)] = self.done.get((stage, task), 0) + count
            self.cond.notify_all()

    def wait_done(self, stage: str, task: int, count: int) -> None:
        """A task is reported only once its JPEGs (and boxes) are done too."""
        with self.cond:
            while self.done.get((stage, task), 0) < count and not self.stop.is_set():
                self.cond.wait(timeout=0.2)

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()

    def put(self, q: queue.Queue, item: object) -> bool:
        """Blocking put that gives up when the run is stopped."""
        return put_unless_stopped(q, item, self.stop)

    def get(self, q: queue.Queue) -> object:
        while True:
            try:
                return q.get(timeout=0.2)
            except queue.Empty:
                if self.stop.is_set():
                    return END
