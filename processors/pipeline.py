"""The streaming pipeline: decode -> sample -> (encode task clips | write JPEGs).

Three threads overlap the stages so both cores stay busy: the decoder thread
(PyAV decodes with its own frame threads), an encoder thread (libx264) and a
JPEG thread (OpenCV). Queues between them are bounded, so memory does not grow
with the video's length. The caller iterates ``run_pipeline`` and receives
``Progress`` and ``TaskOutput`` events in its own thread, which is where the
job runner does its database writes.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from naming import frame_file_name, task_clip_name, task_frames_folder
from processors.clip_writer import ClipWriter, EncoderSettings
from processors.frame_ops import normalize
from processors.pipeline_run import END, Run, Sample
from processors.sampling import TimestampSampler, task_number
from processors.side_stages import annotate_stage, jpeg_stage, split_stage, warm_up
from processors.source import Source
from processors.task_split import SplitSettings, TaskSplitter
from processors.threads import context_thread

QUEUE_FRAMES = 24  # frames in flight per queue: ~75 MB of yuv420p at 1080p
# ... but no more than this many bytes of frames per queue, down to QUEUE_MIN
# frames: at 4K a queue of 24 would hold 300 MB, at 8K 1.2 GB (bench/bench_frame_memory.py).
QUEUE_BYTES = 96 * 1024 * 1024
QUEUE_MIN = 4
PROGRESS_INTERVAL = 0.5  # seconds between Progress events


@dataclass(frozen=True)
class PipelineSettings:
    frame_rate: int
    frames_per_task: int
    keep_frames: bool = True
    jpeg_quality: int = 90
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    # Annotate sampled frames while cutting: RGB frames in, one result per frame out.
    annotate: Callable[[list[np.ndarray]], list[list]] | None = None
    annotate_batch: int = 8
    # Find shot boundaries (processors/shots.py) on the sampled frames (videos).
    detect_shots: bool = False
    # Videos (processors/task_split.py): tasks also end at shot cuts ("shots"),
    # unless the one cut short would hold fewer than min_shot_frames samples;
    # still frames are left out (skip_still).
    task_split: str = "fixed"
    min_shot_frames: int = 1
    skip_still: bool = False

    def split(self) -> SplitSettings | None:
        """The split stage's settings; None when tasks are the fixed grid of
        every sampled frame and no shot is looked for."""
        by_shots = self.task_split == "shots"
        if not (self.detect_shots or by_shots or self.skip_still):
            return None
        return SplitSettings(self.frames_per_task, by_shots, self.min_shot_frames,
                             self.skip_still)


@dataclass(frozen=True)
class OutputLayout:
    """Where task ``n``'s clip and frame ``k`` (1-based) of it are written."""

    clip_dir: Path
    frame_dir: Path | None
    video_name: str

    def clip_path(self, task: int | str) -> Path:
        return self.clip_dir / task_clip_name(task, self.video_name)

    def frame_path(self, task: int | str, frame_id: int) -> Path | None:
        if self.frame_dir is None:
            return None
        return self.frame_dir / task_frames_folder(task) / frame_file_name(frame_id)

    def make_roots(self) -> None:
        """Make the output folders (``run_pipeline`` does, once, before any stage runs)."""
        for root in (self.clip_dir, self.frame_dir):
            if root is not None:
                root.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class FrameRecord:
    frame_id: int  # 1-based within the task
    source_index: int
    timestamp: float
    image_path: Path | None
    boxes: list | None = None  # what settings.annotate found, in clip pixels


@dataclass(frozen=True)
class TaskOutput:
    number: int  # the task's key: its order among the upload's tasks (task_split.py)
    clip_path: Path
    frames: list[FrameRecord]
    # Source frames of the task where a new shot starts (detect_shots): the
    # cuts one pass over the whole video finds there, whatever part was cut.
    cuts: tuple[int, ...] = ()
    label: str = ""  # names its clip and frame folder
    next: int = 0  # the key of the task after it
    left_out: int = 0  # still frames left out of it (skip_still)
    # The sampled source frame before each cut (a shot's last, even if left
    # out), and the task's last sampled source frame, kept or not.
    cut_ends: tuple[int, ...] = ()
    last_sample: int = -1


@dataclass(frozen=True)
class Progress:
    """Sent after each task and, in between, every PROGRESS_INTERVAL in which a
    stage moved on: a run whose stages all hang sends none, which is how the
    job's watchdog (jobs/watchdog.py) tells it from a slow one."""

    fraction: float  # 0..1 of the source consumed


def run_pipeline(source: Source, settings: PipelineSettings, layout: OutputLayout,
                 skip_tasks: frozenset[int] = frozenset(),
                 should_stop: Callable[[], bool] = lambda: False, *,
                 first_sample: int = 0) -> Iterator[Progress | TaskOutput]:
    """Cut ``source`` into task clips (and JPEGs); yields events as they happen.

    Tasks in ``skip_tasks`` (already finished by an earlier, interrupted run)
    are decoded for sampling but not written again. ``first_sample``: the
    global number of the source's first sample, for a source that is one
    segment of a video (processors.segment_plan): task numbers and frame ids
    then continue those of the segments before it. It must start a task.
    """
    start, end = _span(source, settings, first_sample)
    # The output roots are made here, once: the stages only make folders inside
    # them, so a run whose outputs were discarded while a starved stage still
    # ran (a stalled job its watchdog failed) cannot bring them back.
    layout.make_roots()
    run = Run()
    run.position = start
    events: queue.Queue = queue.Queue()
    threads = _stage_threads(run, source, settings, layout, events,
                             (skip_tasks, first_sample, end))
    for thread in threads:
        thread.start()
    try:
        yield from _events(run, events, should_stop, start, end)
    finally:
        run.stop.set()  # ends the stages early when the caller stopped iterating
        for thread in threads:
            thread.join()
    if run.error is not None:
        raise run.error


def _stage_threads(run: Run, source: Source, settings: PipelineSettings,
                   layout: OutputLayout, events: queue.Queue,
                   span: tuple[frozenset[int], int, float]) -> list[threading.Thread]:
    """The decoder, the split stage (when there is one), the encoder and the
    side stages (JPEG, annotation), joined by bounded queues; ``span``: the
    tasks to skip, the first sample, the end time."""
    depth = queue_depth(source.info.width, source.info.height)
    encode_q: queue.Queue = queue.Queue(depth)
    # Side stages: each gets every frame the encoder gets and reports per task.
    sides: dict[str, tuple[queue.Queue, Callable]] = {}
    if layout.frame_dir:
        sides["jpeg"] = (queue.Queue(depth), jpeg_stage)
    if settings.annotate:
        sides["annotate"] = (queue.Queue(depth), annotate_stage)
    outputs = [encode_q] + [q for q, _ in sides.values()]
    threads = [context_thread(_guard(run, stage), name=name, args=(run, settings, layout, side_q))
               for name, (side_q, stage) in sides.items()]
    threads.append(context_thread(_guard(run, _encode_stage), name="encode",
                                  args=(run, source, settings, layout, encode_q, events,
                                        list(sides))))
    skip, first_sample, end = span
    split = _splitter(settings)
    warm = None  # (the split stage's queue, the sampled frames a decision looks back on)
    if split is not None:
        splitter, window = split
        split_q: queue.Queue = queue.Queue(depth)
        run.splitter = splitter
        threads.append(context_thread(_guard(run, split_stage), name="split",
                                      args=(splitter, skip, outputs, run, split_q)))
        # The decoder hands it every sample: it skips tasks once it placed them.
        outputs, skip, warm = [split_q], frozenset(), (split_q, window)
    return [context_thread(_guard(run, _decode_stage), name="decode",
                           args=(run, source, settings, skip, first_sample, end, outputs,
                                 warm))] + threads


def _splitter(settings: PipelineSettings) -> tuple[TaskSplitter, int] | None:
    """The split stage's splitter, and how many frames before a segment its
    shot detector looks back on; None when there is no split stage."""
    split = settings.split()
    if split is None:
        return None
    detector, still, window = None, None, 0
    if settings.detect_shots or split.by_shots:
        # Imported here (with the still filter below): OpenCV's and the
        # detectors' modules that a job refused before cutting (a frame too
        # large) should not pay for.
        from processors.shots import ShotDetector
        detector = ShotDetector()
        if detector.delay:  # a segment's last cuts would need frames past its end
            raise ValueError("the pipeline's shot detector must decide each frame at once")
        window = detector.window
    if split.skip_still:
        from processors.still import StillFilter
        still = StillFilter()
    return TaskSplitter(split, detector, still), window


def _events(run: Run, events: queue.Queue, should_stop: Callable[[], bool],
            start: float, end: float) -> Iterator[Progress | TaskOutput]:
    """The encoder's finished tasks, and Progress whenever a stage moved on."""
    reported = 0
    while True:
        try:
            event = events.get(timeout=PROGRESS_INTERVAL)
        except queue.Empty:
            event = None
        if should_stop():
            run.stop.set()
        if event is END or (run.stop.is_set() and event is None):
            return
        if event is not None:
            yield event
        if event is not None or run.moves != reported:  # a finished task moved too
            reported = run.moves
            yield Progress(_fraction(run.position, start, end))


def queue_depth(width: int, height: int) -> int:
    """Frames each queue holds: QUEUE_FRAMES up to 1080p, fewer for bigger frames."""
    frame_bytes = width * height * 3 // 2  # yuv420p
    return max(QUEUE_MIN, min(QUEUE_FRAMES, QUEUE_BYTES // max(1, frame_bytes)))


def _span(source: Source, settings: PipelineSettings, first_sample: int) -> tuple[float, float]:
    """The source times that progress goes from 0 to 1 over: a segment of a
    video (processors.segment_plan) reports over its own part only."""
    if first_sample < 0 or first_sample % settings.frames_per_task:
        raise ValueError(f"first_sample {first_sample} does not start a task of "
                         f"{settings.frames_per_task} frames")
    return getattr(source, "progress_span", (0.0, source.info.duration))


def _fraction(position: float, start: float, end: float) -> float:
    return min(1.0, max(0.0, (position - start) / (end - start))) if end > start else 0.0


def _guard(run: Run, stage: Callable) -> Callable:
    """``stage``, its error handed to the caller's thread (it runs in a
    context_thread, in a copy of the caller's context)."""
    def wrapper(*args: object) -> None:
        try:
            stage(*args)
        except BaseException as exc:  # handed to the caller's thread
            run.fail(exc)
    return wrapper


def _decode_stage(run: Run, source: Source, settings: PipelineSettings,
                  skip: frozenset[int], first_sample: int, end: float,
                  outputs: list[queue.Queue], warm: tuple[queue.Queue, int] | None) -> None:
    info = source.info
    sampler = TimestampSampler(settings.frame_rate,
                               slack=getattr(source, "sampling_slack", Fraction(0)))
    sample = first_sample  # global: a segment's samples follow those before it
    # A segment's warm-up: the sampled frames before its first that the shot
    # detector looks back on (a split stage places the tasks it skips itself).
    behind: deque = deque(maxlen=warm[1] if warm else 0)
    skip_unsampled = getattr(source, "skip_unsampled", None)
    if skip_unsampled is not None and not source.samples_every_frame:
        # PERFORMANCE: a video source may then leave undecoded the frames
        # this sampler would drop anyway (non-reference frames that are not
        # the first of their 1/frame_rate bucket): the same frames are
        # sampled, with the same indexes and pixels, and on a 1080p30 video
        # with B-frames at 5 fps decoding takes ~40% less CPU (the whole job
        # ~20% less). See VideoSource.skip_unsampled and BENCHMARKS.md.
        skip_unsampled(settings.frame_rate)
    try:
        for item in source.frames():
            if run.stop.is_set():
                return
            run.position = float(item.timestamp)
            run.moves += 1
            if item.warmup:
                behind.append(item)
                continue
            if not source.samples_every_frame and not sampler.accept(item.timestamp):
                continue
            task = task_number(sample, settings.frames_per_task)
            sample += 1
            if task in skip:
                continue
            if behind and not warm_up(run, warm[0], behind, info, task):
                return
            frame = normalize(item.frame, info.rotation, info.width, info.height)
            # Where it goes on the fixed grid; a split stage may place it elsewhere.
            work = Sample(sample - 1, task, item.index, item.timestamp, frame, label=str(task),
                          frame_id=(sample - 1) % settings.frames_per_task + 1)
            if not all(run.put(q, work) for q in outputs):
                return
        run.position = end
    finally:
        for q in outputs:
            run.put(q, END)


def _encode_stage(run: Run, source: Source, settings: PipelineSettings,
                  layout: OutputLayout, encode_q: queue.Queue, events: queue.Queue,
                  sides: list[str]) -> None:
    info = source.info
    writer: ClipWriter | None = None
    task, label, frames = 0, "", []
    try:
        while True:
            work = run.get(encode_q)
            if work is END and run.stop.is_set():
                return  # stopped or failed: the open clip is discarded below
            if work is END or work.task != task:
                if writer is not None:
                    writer.close()
                    writer = None
                    for side in sides:
                        run.wait_done(side, task, len(frames))
                    if run.stop.is_set():
                        return
                    events.put(_task_output(run, task, label, layout, frames))
                if work is END:
                    return
                task, label, frames = work.task, work.label, []
                writer = ClipWriter(layout.clip_path(label), info.width, info.height,
                                    settings.frame_rate, settings.encoder)
            writer.write(work.frame)
            run.moves += 1
            frames.append((work.sample, work.before if work.new_shot else None, FrameRecord(
                work.frame_id, work.source_index, float(work.timestamp),
                layout.frame_path(label, work.frame_id))))
    finally:
        if writer is not None:
            writer.abort()
        events.put(END)


def _task_output(run: Run, task: int, label: str, layout: OutputLayout,
                 frames: list[tuple[int, int | None, FrameRecord]]) -> TaskOutput:
    """``frames``: (sample, the frame before it if a shot starts at it, record)."""
    with run.cond:
        boxes = [run.boxes.pop(sample, None) for sample, _, _ in frames]
    records = [replace(record, boxes=found) for (_, _, record), found in zip(frames, boxes)]
    cuts = [(record.source_index, before) for _, before, record in frames if before is not None]
    next_task, left_out, last_sample = (task + 1, 0, records[-1].source_index) \
        if run.splitter is None else run.splitter.ending(task)
    return TaskOutput(task, layout.clip_path(label), records, tuple(c for c, _ in cuts), label,
                      next_task, left_out, tuple(b for _, b in cuts), last_sample)
