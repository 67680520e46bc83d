"""Where each sampled frame of a video goes: which task, which frame of it, or
left out as still (issue 19: ``task_split`` and ``skip_still``).

The rule is made so that a segment of a video (processors/segment_plan.py),
which starts on a line of the fixed task grid (every ``frames_per_task``
samples), decides exactly as one pass over the whole video does, from what it
decodes itself (plus the shot detector's few warm-up frames):

* **Tasks.** Every grid line starts a task, as with fixed tasks. With
  ``by_shots`` a shot cut starts one too, unless the task cut short there
  would hold fewer than ``min_shot_frames`` samples: shots shorter than that
  are gathered with what follows, up to the next grid line or cut (their
  tracks still end at the cut: jobs/tracks.py). So a task clip never spans a
  cut but for such short shots.
* **Keys.** A task's key (its staging ``number``, the order of the upload's
  tasks) is its grid cell with fixed tasks (1, 2, ...: as before) and its
  first sample + 1 with ``by_shots``, which a segment knows without knowing
  how many tasks the segments before it made. ``next_task`` says which key
  follows each task, so the run can tell a gapless prefix
  (jobs/task_chain.py), where each task's place in it is its public number.
  The clip and frame folder are named by cell and part: ``3``, ``3.2``.
* **Still frames** (``skip_still``): processors/still.py decides against the
  last kept frame since the last cut or grid line, so the first frame of a
  shot and of a grid cell is always kept: no task is ever empty.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import av

from processors.sampling import task_number

if TYPE_CHECKING:
    from processors.shots import ShotDetector
    from processors.still import StillFilter


@dataclass(frozen=True)
class SplitSettings:
    frames_per_task: int
    by_shots: bool = False  # task_split "shots"
    min_shot_frames: int = 1  # by_shots: a cut starts a task if the one before holds this many
    skip_still: bool = False

    def __post_init__(self) -> None:
        if self.frames_per_task < 1 or self.min_shot_frames < 1:
            raise ValueError("frames_per_task and min_shot_frames must be >= 1")


@dataclass(frozen=True)
class Placement:
    task: int  # the task's key (see the module docstring)
    label: str  # names its clip and frame folder: "3", or "3.2" for a later part of cell 3
    frame_id: int  # 1-based within the task
    new_shot: bool  # a shot starts at this frame
    before: int = -1  # new_shot: the sampled source frame before it (the last shot's end)


class TaskSplitter:
    """Places the sampled frames of a video, in order (one segment's, or all)."""

    def __init__(self, settings: SplitSettings, detector: ShotDetector | None = None,
                 still: StillFilter | None = None) -> None:
        if settings.skip_still and still is None:
            raise ValueError("skip_still needs a StillFilter")
        self.settings, self.detector, self.still = settings, detector, still
        self.next_task: dict[int, int] = {}  # task key -> key of the task after it
        self.left_out: dict[int, int] = {}  # task key -> still frames left out of it
        self.last_sample: dict[int, int] = {}  # task key -> its last sampled source frame
        self._before = -1  # the source frame of the sample before (or warm-up frame)
        self._task: int | None = None
        self._label, self._part, self._start, self._frame_id, self._cell = "", 0, 0, 0, 0

    def look(self, source_index: int, frame: av.VideoFrame) -> None:
        """A frame before the first one placed (a segment's warm-up): the shot
        detector looks back on it; it is no sample of any task."""
        if self.detector is not None:
            self.detector.push(source_index, frame)
        self._before = source_index

    def place(self, sample: int, source_index: int, frame: av.VideoFrame) -> Placement | None:
        """Where global sample ``sample`` goes; None: left out as still."""
        settings = self.settings
        cut = bool(self.detector.push(source_index, frame)) if self.detector else False
        grid_line = sample % settings.frames_per_task == 0
        if (grid_line or cut) and self.still is not None:
            self.still.reset()  # the first frame of a shot and of a grid cell is kept
        if grid_line or self._task is None:
            self._start_task(sample, part=1)
        elif settings.by_shots and cut and sample - self._start >= settings.min_shot_frames:
            self._start_task(sample, part=self._part + 1)
        assert self._task is not None
        before, self._before = self._before, source_index
        self.last_sample[self._task] = source_index  # kept or not: its shot's end
        if settings.skip_still and not self.still.keep(frame):
            self.left_out[self._task] = self.left_out.get(self._task, 0) + 1
            return None
        self._frame_id += 1
        return Placement(self._task, self._label, self._frame_id, cut, before if cut else -1)

    def ending(self, task: int) -> tuple[int, int, int]:
        """How task ``task`` ended (known once the frame after it was placed, or
        ``end`` was called): the key of the task after it, the still frames
        left out of it, its last sampled source frame (kept or not)."""
        return self.next_task.get(task, task + 1), self.left_out.get(task, 0), \
            self.last_sample[task]

    def end(self) -> None:
        """No sample follows: the last task is followed by the next grid line's."""
        if self._task is not None:
            self.next_task[self._task] = self._key(self._cell + 1, self._cell * self.settings
                                                   .frames_per_task)

    def _start_task(self, sample: int, part: int) -> None:
        cell = task_number(sample, self.settings.frames_per_task)
        key = self._key(cell, sample)
        if self._task is not None:
            self.next_task[self._task] = key
        self._task, self._cell, self._part, self._start, self._frame_id = key, cell, part, sample, 0
        self._label = str(cell) if part == 1 else f"{cell}.{part}"

    def _key(self, cell: int, first_sample: int) -> int:
        return first_sample + 1 if self.settings.by_shots else cell
