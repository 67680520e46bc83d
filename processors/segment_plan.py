"""Cut one long video in time segments that separate workers process at once.

A single pass (``run_pipeline`` over a ``VideoSource``) decodes the whole
video in one process. Here a cheap plan, made from a demux-only scan (packet
timestamps, no decoding), numbers every frame exactly as ``VideoSource``
would, samples them with the same ``TimestampSampler``, groups the samples
into tasks and splits the tasks into contiguous runs of about equal source
duration. Each run (a ``Segment``) is then cut on its own: it seeks to the
keyframe at or before its first frame, decodes from there and hands the
pipeline only its sampled frames, with their global index, timestamp,
sample number and task number. Cutting every segment of a plan, in any
order and in any process, gives the very tasks the single pass gives: same
numbers, frame ids, source frames, clips and JPEGs.

How a job uses it (jobs/segments.py): ``plan_segments`` once, then one job
per segment, its params carrying ``segment.to_dict()``; each job rebuilds it
with ``Segment.from_dict`` and iterates ``run_pipeline(open_segment(path,
segment), settings, layout, done_tasks, first_sample=segment.first_sample)``,
closing the source after, and stages each TaskOutput under its (global)
number. ``run_segment`` does these steps, for a job that needs no source.info.

All segments of an upload write into the same staging layout and stage their
tasks by global task number; the upload is committed once every task
``1 .. plan[-1].last_task`` is staged, i.e. when the last segment job is done
(a forced whole segment may not know its task count, ``last_task`` None: it
is done when its run ends, as a single pass is). A segment job that is
retried redoes only its own tasks (``skip_tasks`` works with global numbers
as before). Each segment's Progress goes from 0 to 1 over its own span
``[start_time, end_time)``; the spans tile the video, so the upload's
progress is the span-weighted sum.

A plan of one segment (``Segment.whole``) is the single pass itself:
``open_segment`` returns a plain ``VideoSource``. The plan is forced to one
segment, whatever was asked, when the scan cannot promise the single pass's
numbering (``Segment.reason`` says why): packets without timestamps or with
duplicate ones, timestamps further out of order than any decoder reorders,
timestamps that restart or jump (recordings joined end to end: the single
pass puts them on one timeline and records where, processors.timeline), a
damaged packet, a decoder that drops frames at the start, or a file that
the single pass would report as truncated (so that it still does).

Should the decoded frames still disagree with the plan at run time, the
segment's source (processors/segment_source.py) raises ``SegmentMismatch``
before it yields a wrong frame: the job should then process the upload in a
single pass.
"""
from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

from exceptions import ContentError
from processors.input_guard import InputLimits
from processors.packet_scan import PacketScan, scan_packets
from processors.pipeline import OutputLayout, PipelineSettings, Progress, TaskOutput, run_pipeline
from processors.sampling import TimestampSampler
from processors.segment_source import SegmentSource
from processors.source import Source
from processors.video_source import VideoSource, check_complete

FORMAT = 1  # of to_dict(); bumped when the meaning of a field changes


@dataclass(frozen=True)
class Segment:
    """One run of whole tasks of a plan, and what a worker needs to cut it alone."""

    number: int  # 1-based, in time order
    count: int  # segments in the plan
    first_task: int  # global task numbers (1-based)
    last_task: int | None  # None: unknown (a whole video whose packets could not be scanned)
    first_sample: int  # global 0-based sample number of the segment's first sample
    frame_rate: int
    frames_per_task: int
    file_size: int  # of the video the plan was made from: a replaced file is refused
    time_base: Fraction = Fraction(1)
    origin_pts: int = 0  # pts of the video's first frame (timestamps count from it)
    # The keyframe to seek to (seek_pts None: decode from the start of the
    # file; seek_dts None: the format stores no dts, seek by pts).
    seek_pts: int | None = None
    seek_dts: int | None = None
    frames: tuple[tuple[int, int], ...] = ()  # (source index, pts) of every sampled frame
    # Seconds where the next segment starts (the video's duration for the
    # last): the segments' spans [start_time, end_time) tile the video, so a
    # job can weigh each segment's progress by its span.
    end_time: float = 0.0
    reason: str = ""  # why the plan is one segment whatever was asked ("" if not forced)
    # (source index, pts) of the sampled frames just before the segment that
    # the shot detector looks back on (processors/shots.py: its ``window``):
    # decoded too, so that a cut on the segment's first frame is found.
    warmup: tuple[tuple[int, int], ...] = ()

    @property
    def whole(self) -> bool:
        """The only segment of its plan: cut by a plain single pass."""
        return self.count == 1

    @property
    def samples(self) -> list[tuple[int, Fraction]]:
        """(global source index, timestamp) of each frame the segment samples."""
        return [(index, self.timestamp(pts)) for index, pts in self.frames]

    def timestamp(self, pts: int) -> Fraction:
        """Seconds from the first frame, as VideoSource computes them."""
        return (pts - self.origin_pts) * self.time_base

    @property
    def start_time(self) -> float:
        """Seconds of the segment's first sample (0 for the first segment)."""
        return float(self.timestamp(self.frames[0][1])) if self.frames else 0.0

    def to_dict(self) -> dict:
        """Plain JSON types (a job's params); ``from_dict`` reads it back."""
        return {"format": FORMAT, "number": self.number, "count": self.count,
                "first_task": self.first_task, "last_task": self.last_task,
                "first_sample": self.first_sample, "frame_rate": self.frame_rate,
                "frames_per_task": self.frames_per_task, "file_size": self.file_size,
                "time_base": str(self.time_base), "origin_pts": self.origin_pts,
                "seek_pts": self.seek_pts, "seek_dts": self.seek_dts,
                "indexes": [index for index, _ in self.frames],
                "pts": [pts for _, pts in self.frames], "end_time": self.end_time,
                "reason": self.reason, "warmup": [list(pair) for pair in self.warmup]}

    @classmethod
    def from_dict(cls, data: dict) -> Segment:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a segment of format {FORMAT}: {data.get('format')!r}")
        try:
            indexes, pts = data["indexes"], data["pts"]
            if len(indexes) != len(pts):
                raise ValueError("indexes and pts differ in length")
            return cls(number=int(data["number"]), count=int(data["count"]),
                       first_task=int(data["first_task"]),
                       last_task=_int_or_none(data["last_task"]),
                       first_sample=int(data["first_sample"]), frame_rate=int(data["frame_rate"]),
                       frames_per_task=int(data["frames_per_task"]),
                       file_size=int(data["file_size"]), time_base=Fraction(data["time_base"]),
                       origin_pts=int(data["origin_pts"]), seek_pts=_int_or_none(data["seek_pts"]),
                       seek_dts=_int_or_none(data["seek_dts"]),
                       frames=tuple(zip(map(int, indexes), map(int, pts))),
                       end_time=float(data["end_time"]), reason=str(data["reason"]),
                       # absent from a plan made before shots were detected
                       warmup=tuple((int(i), int(p)) for i, p in data.get("warmup", ())))
        except (KeyError, TypeError, ZeroDivisionError) as exc:
            raise ValueError(f"not a valid segment: {exc!r}") from exc


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)


def plan_segments(path: str | os.PathLike, frame_rate: int, frames_per_task: int,
                  segments: int, limits: InputLimits = InputLimits(),
                  warmup: int | None = None) -> list[Segment]:
    """Split the tasks of the video at ``path`` into at most ``segments`` runs of
    whole tasks, balanced by source duration (fewer when there are fewer tasks).

    ``warmup``: sampled frames each segment also decodes before its first
    one (default: the shot detector's window).

    Raises ContentError for a file that a single pass would refuse at once
    (not a video, no frames, ...), ValueError for a bad argument.
    """
    if warmup is None:
        from processors.shots import ShotDetector  # here: see pipeline._stage_threads
        warmup = ShotDetector().window
    for name, value in (("frame_rate", frame_rate), ("frames_per_task", frames_per_task),
                        ("segments", segments)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    path = Path(path)
    scan, duration, reason = _checked_scan(path, limits)
    size = path.stat().st_size
    if reason:
        return [Segment(1, 1, 1, None, 0, frame_rate, frames_per_task, size,
                        end_time=duration, reason=reason)]
    sampler = TimestampSampler(frame_rate, slack=scan.time_base / 2)  # as VideoSource's
    sampled = [i for i, pts in enumerate(scan.pts)
               if sampler.accept((pts - scan.pts[0]) * scan.time_base)]
    tasks = (len(sampled) + frames_per_task - 1) // frames_per_task
    if segments == 1 or tasks == 1:
        return [Segment(1, 1, 1, tasks, 0, frame_rate, frames_per_task, size,
                        scan.time_base, scan.pts[0], end_time=duration)]
    starts = [scan.pts[sampled[t * frames_per_task]] for t in range(tasks)]
    firsts = _balance(starts, scan.pts[-1], segments)
    ends = [float((starts[f] - scan.pts[0]) * scan.time_base) for f in firsts[1:]]
    ends.append(max(duration, float((scan.pts[-1] - scan.pts[0]) * scan.time_base)))
    bounds = list(zip(firsts, firsts[1:] + [tasks], ends))
    plan = []
    for number, (first, end, end_time) in enumerate(bounds, start=1):
        chosen = sampled[first * frames_per_task:end * frames_per_task]
        before = sampled[max(0, first * frames_per_task - warmup):first * frames_per_task]
        seek = scan.seek_point(scan.pts[(before or chosen)[0]]) if first else None
        plan.append(Segment(number, len(bounds), first + 1, end, first * frames_per_task,
                            frame_rate, frames_per_task, size, scan.time_base, scan.pts[0],
                            seek[0] if seek else None, seek[1] if seek else None,
                            tuple((i, scan.pts[i]) for i in chosen), end_time,
                            warmup=tuple((i, scan.pts[i]) for i in before)))
    return plan


def _checked_scan(path: Path, limits: InputLimits) -> tuple[PacketScan, float, str]:
    """The packet scan, the video's duration, and why the scan cannot stand for
    a single pass ("" if it can)."""
    # VideoSource first: the same errors as a single pass for a bad file, and
    # the frame that really comes out of the decoder first. Without its own
    # timeline pass: the scan below reads the packets through the same
    # PacketTimeline (and a repaired timeline is cut in one pass).
    source = VideoSource(path, limits, scan_timeline=False)
    try:
        first = next(source.frames()).frame
        info = source.info
    finally:
        source.close()
    scan = scan_packets(path, limits)
    if scan.problem:
        return scan, info.duration, scan.problem
    if first.pts != scan.pts[0] or first.time_base is None \
            or Fraction(first.time_base) != scan.time_base:
        # e.g. leading pictures of an open GOP that the decoder drops at the start
        return scan, info.duration, "the decoder's first frame is not the first packet's"
    try:
        check_complete(source.name, info, len(scan.pts),
                       (scan.pts[-1] - scan.pts[0]) * scan.time_base)
    except ContentError as exc:
        return scan, info.duration, f"a single pass reports the file as broken ({exc.code})"
    return scan, info.duration, ""


def _balance(starts: list[int], end: int, segments: int) -> list[int]:
    """0-based first task of each segment: cut at the task starts nearest to equal
    shares of the source time (``starts``: first pts of each task, ``end``: last pts)."""
    count = min(segments, len(starts))
    origin = starts[0]
    firsts = [0]
    for k in range(1, count):
        target = origin + Fraction((end - origin) * k, count)
        i = bisect_left(starts, target)
        if i == len(starts) or (i > 0 and target - starts[i - 1] < starts[i] - target):
            i -= 1
        # Every segment keeps at least one task.
        firsts.append(min(max(i, firsts[-1] + 1), len(starts) - (count - k)))
    return firsts


def open_segment(path: str | os.PathLike, segment: Segment,
                 limits: InputLimits = InputLimits()) -> Source:
    """A Source for the pipeline that yields exactly the segment's sampled frames."""
    if segment.whole:
        return VideoSource(path, limits)
    return SegmentSource(path, segment, limits)


def run_segment(path: str | os.PathLike, segment: Segment, settings: PipelineSettings,
                layout: OutputLayout, skip_tasks: frozenset[int] = frozenset(),
                should_stop: Callable[[], bool] = lambda: False,
                limits: InputLimits = InputLimits()) -> Iterator[Progress | TaskOutput]:
    """Cut one segment: ``run_pipeline`` over ``open_segment``, numbered globally."""
    if (settings.frame_rate, settings.frames_per_task) != \
            (segment.frame_rate, segment.frames_per_task):
        raise ValueError("the settings' frame_rate / frames_per_task are not the plan's")
    source = open_segment(path, segment, limits)
    try:
        yield from run_pipeline(source, settings, layout, skip_tasks, should_stop,
                                first_sample=segment.first_sample)
    finally:
        source.close()
