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
from functools import partial
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import av
import numpy as np

from naming import frame_file_name, task_clip_name, task_frames_folder
from processors.clip_writer import ClipWriter, EncoderSettings
from processors.frame_ops import encode_jpeg, normalize
from processors.sampling import TimestampSampler, task_number
from processors.source import Source, SourceInfo
from processors.threads import context_thread, put_unless_stopped

if TYPE_CHECKING:
    from processors.shots import ShotDetector

QUEUE_FRAMES = 24  # frames in flight per queue: ~75 MB of yuv420p at 1080p
# ... but no more than this many bytes of frames per queue, down to QUEUE_MIN
# frames: at 4K a queue of 24 would hold 300 MB, at 8K 1.2 GB (bench/bench_frame_memory.py).
QUEUE_BYTES = 96 * 1024 * 1024
QUEUE_MIN = 4
PROGRESS_INTERVAL = 0.5  # seconds between Progress events
_END = object()


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


@dataclass(frozen=True)
class OutputLayout:
    """Where task ``n``'s clip and frame ``k`` (1-based) of it are written."""

    clip_dir: Path
    frame_dir: Path | None
    video_name: str

    def clip_path(self, task: int) -> Path:
        return self.clip_dir / task_clip_name(task, self.video_name)

    def frame_path(self, task: int, frame_id: int) -> Path | None:
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
    number: int
    clip_path: Path
    frames: list[FrameRecord]
    # Source frames of the task where a new shot starts (detect_shots): the
    # cuts one pass over the whole video finds there, whatever part was cut.
    cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Progress:
    """Sent after each task and, in between, every PROGRESS_INTERVAL in which a
    stage moved on: a run whose stages all hang sends none, which is how the
    job's watchdog (jobs/watchdog.py) tells it from a slow one."""

    fraction: float  # 0..1 of the source consumed


@dataclass
class _Sample:
    sample: int
    task: int
    source_index: int
    timestamp: Fraction
    frame: av.VideoFrame
    warmup: bool = False  # for the shot detector only (not a sample of a task)


class _Run:
    """Shared state of one pipeline run: stop flag, first error, side-stage progress."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.position = 0.0
        self.moves = 0  # items any stage finished: changes while the run is alive
        # (stage, task) -> frames of the task that the JPEG / annotation stage finished
        self.done: dict[tuple[str, int], int] = {}
        self.boxes: dict[int, list] = {}  # sample -> annotation result
        self.cuts: set[int] = set()  # source frames starting a shot, not reported yet
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
                    return _END


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
    run = _Run()
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


def _stage_threads(run: _Run, source: Source, settings: PipelineSettings,
                   layout: OutputLayout, events: queue.Queue,
                   span: tuple[frozenset[int], int, float]) -> list[threading.Thread]:
    """The decoder, the encoder and the side stages (JPEG, annotation, shots),
    joined by bounded queues; ``span``: the tasks to skip, the first sample, the
    end time."""
    depth = queue_depth(source.info.width, source.info.height)
    encode_q: queue.Queue = queue.Queue(depth)
    # Side stages: each gets every sampled frame and reports per task.
    sides: dict[str, tuple[queue.Queue, Callable]] = {}
    if layout.frame_dir:
        sides["jpeg"] = (queue.Queue(depth), _jpeg_stage)
    if settings.annotate:
        sides["annotate"] = (queue.Queue(depth), _annotate_stage)
    warm = None  # (the shot stage's queue, the sampled frames a decision looks back on)
    if settings.detect_shots:
        # Imported here: PySceneDetect and its dependencies are ~12 MiB that a
        # job refused before cutting (a frame too large) should not pay.
        from processors.shots import ShotDetector
        detector = ShotDetector()
        if detector.delay:  # a segment's last cuts would need frames past its end
            raise ValueError("the pipeline's shot detector must decide each frame at once")
        sides["shots"] = (queue.Queue(depth), partial(_shots_stage, detector))
        warm = (sides["shots"][0], detector.window)
    return [
        context_thread(_guard(run, _decode_stage), name="decode",
                       args=(run, source, settings, *span,
                             [encode_q] + [q for q, _ in sides.values()], warm)),
        context_thread(_guard(run, _encode_stage), name="encode",
                       args=(run, source, settings, layout, encode_q, events, list(sides))),
    ] + [context_thread(_guard(run, stage), name=name, args=(run, settings, layout, side_q))
         for name, (side_q, stage) in sides.items()]


def _events(run: _Run, events: queue.Queue, should_stop: Callable[[], bool],
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
        if event is _END or (run.stop.is_set() and event is None):
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


def _guard(run: _Run, stage: Callable) -> Callable:
    """``stage``, its error handed to the caller's thread (it runs in a
    context_thread, in a copy of the caller's context)."""
    def wrapper(*args: object) -> None:
        try:
            stage(*args)
        except BaseException as exc:  # handed to the caller's thread
            run.fail(exc)
    return wrapper


def _decode_stage(run: _Run, source: Source, settings: PipelineSettings,
                  skip: frozenset[int], first_sample: int, end: float,
                  outputs: list[queue.Queue], warm: tuple[queue.Queue, int] | None) -> None:
    info = source.info
    sampler = TimestampSampler(settings.frame_rate,
                               slack=getattr(source, "sampling_slack", Fraction(0)))
    sample = first_sample  # global: a segment's samples follow those before it
    # Sampled frames the shot detector has not seen, that the next frame it
    # sees looks back on: a segment's warm-up, the end of a task skipped.
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
                behind.append(item)
                continue
            if behind and not _warm_up(run, warm[0], behind, info, task):
                return
            frame = normalize(item.frame, info.rotation, info.width, info.height)
            work = _Sample(sample - 1, task, item.index, item.timestamp, frame)
            if not all(run.put(q, work) for q in outputs):
                return
        run.position = end
    finally:
        for q in outputs:
            run.put(q, _END)


def _warm_up(run: _Run, shots_q: queue.Queue, behind: deque, info: SourceInfo,
             task: int) -> bool:
    """Hand the shot detector the frames before the next one it decides on (the
    same pixels one pass gives it: normalised); False when the run stopped."""
    while behind:
        item = behind.popleft()
        frame = normalize(item.frame, info.rotation, info.width, info.height)
        if not run.put(shots_q, _Sample(-1, task, item.index, item.timestamp, frame,
                                        warmup=True)):
            return False
    return True


def _encode_stage(run: _Run, source: Source, settings: PipelineSettings,
                  layout: OutputLayout, encode_q: queue.Queue, events: queue.Queue,
                  sides: list[str]) -> None:
    info = source.info
    writer: ClipWriter | None = None
    task, frames = 0, []
    try:
        while True:
            work = run.get(encode_q)
            if work is _END and run.stop.is_set():
                return  # stopped or failed: the open clip is discarded below
            if work is _END or work.task != task:
                if writer is not None:
                    writer.close()
                    writer = None
                    for side in sides:
                        run.wait_done(side, task, len(frames))
                    if run.stop.is_set():
                        return
                    events.put(_task_output(run, task, layout, frames))
                if work is _END:
                    return
                task, frames = work.task, []
                writer = ClipWriter(layout.clip_path(task), info.width, info.height,
                                    settings.frame_rate, settings.encoder)
            writer.write(work.frame)
            run.moves += 1
            frame_id = len(frames) + 1
            frames.append((work.sample, FrameRecord(frame_id, work.source_index,
                                                    float(work.timestamp),
                                                    layout.frame_path(task, frame_id))))
    finally:
        if writer is not None:
            writer.abort()
        events.put(_END)


def _task_output(run: _Run, task: int, layout: OutputLayout,
                 frames: list[tuple[int, FrameRecord]]) -> TaskOutput:
    with run.cond:
        boxes = [run.boxes.pop(sample, None) for sample, _ in frames]
        cuts = tuple(r.source_index for _, r in frames if r.source_index in run.cuts)
        run.cuts.difference_update(cuts)
    records = [replace(record, boxes=found) for (_, record), found in zip(frames, boxes)]
    return TaskOutput(task, layout.clip_path(task), records, cuts)


def _jpeg_stage(run: _Run, settings: PipelineSettings, layout: OutputLayout,
                jpeg_q: queue.Queue) -> None:
    first_sample: dict[int, int] = {}
    while True:
        work = run.get(jpeg_q)
        if work is _END:
            return
        start = first_sample.setdefault(work.task, work.sample)
        path = layout.frame_path(work.task, work.sample - start + 1)
        path.parent.mkdir(exist_ok=True)  # not parents: see run_pipeline
        path.write_bytes(encode_jpeg(work.frame, settings.jpeg_quality))
        run.mark_done("jpeg", work.task)
        run.moves += 1


def _annotate_stage(run: _Run, settings: PipelineSettings, layout: OutputLayout,
                    annotate_q: queue.Queue) -> None:
    """Batches sampled frames for the detector; a batch is cut short when no frame
    is waiting, so the model never idles while a full batch gathers."""
    ended = False
    while not ended:
        batch = []
        work = run.get(annotate_q)
        while work is not _END:
            batch.append(work)
            if len(batch) >= settings.annotate_batch:
                break
            try:
                work = annotate_q.get_nowait()
            except queue.Empty:
                break
        ended = work is _END
        if not batch:
            continue
        found = settings.annotate([w.frame.to_ndarray(format="rgb24") for w in batch])
        with run.cond:
            for w, boxes in zip(batch, found):
                run.boxes[w.sample] = boxes
        for w in batch:
            run.mark_done("annotate", w.task)
        run.moves += 1


def _shots_stage(detector: ShotDetector, run: _Run, settings: PipelineSettings,
                 layout: OutputLayout, shots_q: queue.Queue) -> None:
    """Shot boundaries over the sampled frames, in order (the detector decides
    each frame at once). A warm-up frame is only looked back on: its own result
    is the business of the task that holds it."""
    while True:
        work = run.get(shots_q)
        if work is _END:
            return
        cuts = detector.push(work.source_index, work.frame)
        if work.warmup:
            continue
        if cuts:
            with run.cond:
                run.cuts.update(cuts)
        run.mark_done("shots", work.task)
        run.moves += 1
