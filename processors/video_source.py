"""Decode a video file with PyAV into source frames, classifying bad input."""
from __future__ import annotations

import os
import struct
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av

from exceptions import ContentError
from processors.frame_skipper import UnsampledSkipper
from processors.input_guard import (
    InputLimits,
    check_pixels,
    output_stem,
    redact,
    regular_file,
    shown,
)
from processors.source import SourceFrame, SourceInfo, display_size
from processors.timeline import (
    PacketTimeline,
    TimelineRepair,
    leaps_are_breaks,
    nominal_frame_time,
    repaired_span,
)

# A file is "truncated" when it ends this far before its declared length.
TRUNCATION_TOLERANCE = 0.05


class VideoSource:
    """The frames of a video file, on one timeline (processors.timeline).

    ``timeline_repairs``: where the timestamps restarted or jumped and the
    frames were moved onto one timeline, complete once ``frames()`` is done.
    ``scan_timeline=False`` leaves out the demux-only pass that a format
    whose timestamps may restart (MPEG-TS, ...) gets at opening, for a caller
    that already knows they do not (a segment of a plan: processors.segment_plan):
    its ``info.duration`` is then FFmpeg's, as the pass leaves it when there
    is nothing to repair.
    """

    samples_every_frame = False

    def __init__(self, path: str | os.PathLike, limits: InputLimits = InputLimits(),
                 scan_timeline: bool = True) -> None:
        self.path = Path(path)
        self.limits = limits
        # How messages name the file: relative to the contents folder.
        self.name = shown(self.path, limits.root_for(self.path))
        self.timeline_repairs: list[TimelineRepair] = []
        self._container = open_video(self.path, limits)
        try:
            self._stream = _video_stream(self._container, self.name, limits)
            # Frame and slice threads: decoding is the longest stage.
            self._stream.thread_type = "AUTO"
            self._skipper: UnsampledSkipper | None = None
            self._early_pts: list[int | None] = []  # packets demuxed before the first frame
            self._decoded = self._decode()
            self._first = next(self._decoded, None)
            if self._first is None:
                raise ContentError(f"{self.name}: the video has no decodable frames",
                                   code="no_frames")
            self.info = self._probe(self._first.frame)
            if scan_timeline and leaps_are_breaks(self._container):
                self._scan_timeline()
        except BaseException:
            self._container.close()
            raise

    def _scan_timeline(self) -> None:
        """FFmpeg estimates an MPEG-TS file's duration from its first and last
        timestamps, which a restart makes meaningless (the truncation check,
        progress and the tasks' videoDuration need the real one): a
        demux-only pass measures it on the repaired timeline, and refuses a
        file that cannot be put on one before anything is cut. 1-2 % of the
        decoding time at 720p (BENCHMARKS.md, "Joined recordings")."""
        with open_video(self.path, self.limits) as container:
            span = repaired_span(container, video_stream_of(container), self.name)
        if span is not None:
            self.info = replace(self.info, duration=float(span))

    def _probe(self, first: av.VideoFrame) -> SourceInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or 0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = container_seconds(self._container)
        rotation = int(first.rotation or 0) % 360
        width, height = display_size(first.width, first.height, rotation)
        return SourceInfo(name=output_stem(self.path.stem), width=width, height=height, fps=float(rate),
                          duration=duration, frame_count=int(stream.frames or 0),
                          rotation=rotation)

    @property
    def sampling_slack(self) -> Fraction:
        """Half a tick of the stream's time base (see processors.sampling)."""
        time_base = self._stream.time_base
        return Fraction(time_base) / 2 if time_base else Fraction(0)

    def skip_unsampled(self, rate: int) -> None:
        """Let ``frames()`` leave out frames that sampling at ``rate`` never keeps.

        PERFORMANCE: decoding is about half of a job's CPU time, and at 5 fps
        from a 30 fps source five frames in six are decoded only to be thrown
        away. A frame that is not the first one of its 1/rate-second sampling
        bucket is never sampled (TimestampSampler keeps exactly the first
        frame at or after each target), so when it is also a non-reference
        frame (no other frame is predicted from it, e.g. most B-frames) the
        decoder is told to skip it (``skip_frame = NONREF``, set per packet).
        Every frame that is yielded keeps the ``index`` and ``timestamp`` it
        has without skipping (skipped frames are still counted), every
        frame that a sampler at ``rate`` keeps is still yielded, with the
        same pixels, and the truncation checks count the skipped frames too.
        Call before iterating ``frames()``; not calling it yields every frame.
        """
        if self._first is None or self._skipper is not None:
            return  # frames() has started: too late to skip anything
        self._skipper = UnsampledSkipper(rate, self._stream.time_base, self._first.frame,
                                          self._early_pts)

    def frames(self) -> Iterator[SourceFrame]:
        """Every decoded frame once (but see ``skip_unsampled``), in presentation
        order; checks the file's end."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._decoded
        self._check_complete()

    def _decode(self) -> Iterator[SourceFrame]:
        stream = self._stream
        timeline = _Timeline(stream)
        packets = PacketTimeline(stream, leaps_are_breaks(self._container), self.name)
        # Frames read (skipped ones too) and the time of the last: for _check_complete.
        self._count, self._seen = 0, Fraction(0)
        skip_mode = "DEFAULT"
        try:
            # demux + decode per packet (what container.decode does) so that
            # the skipper can set skip_frame for each packet before it is sent,
            # each packet moved onto one timeline first (processors.timeline).
            for demuxed in packets.packets(self._container.demux(stream)):
                for packet, skip in self._ready(demuxed, timeline.started):
                    mode = "NONREF" if skip else "DEFAULT"
                    if mode != skip_mode:
                        # Frame threads copy skip_frame from this context at
                        # each packet they are handed, so this is per packet.
                        stream.codec_context.skip_frame = skip_mode = mode
                    for frame in packet.decode():
                        # A stream may switch to a bigger size after its header.
                        check_pixels(frame.width, frame.height, self.limits, self.name)
                        at = timeline.at(frame)
                        if self._skipper is not None:
                            for pts in self._skipper.on_frame(frame.pts, frame.time_base):
                                self._note_repairs(packets, pts, timeline)
                                self._count += 1
                        self._note_repairs(packets, frame.pts, timeline)
                        index = self._count
                        self._count += 1
                        self._seen = at
                        yield SourceFrame(index=index, timestamp=at, frame=frame)
            self._count_skipped_at_end(timeline, packets)
        except av.FFmpegError as exc:
            raise ContentError(f"{self.name}: corrupt video data at {timeline.seconds():.1f} s "
                               f"({av_reason(exc, self.path, self.limits)})",
                               code="corrupt") from exc

    def _note_repairs(self, packets: PacketTimeline, pts: int | None,
                      timeline: "_Timeline") -> None:
        """The frame at ``pts``, number ``self._count`` (decoded, or skipped: see
        skip_unsampled), is the first frame of each repaired part that lands
        at or before it (frames come out in presentation order; a part none
        of whose frames came out is noted at its successor's first)."""
        repairs, noted = packets.repairs, self.timeline_repairs
        while pts is not None and len(noted) < len(repairs) and pts >= repairs[len(noted)].pts:
            time_base = Fraction(self._stream.time_base)
            noted.append(TimelineRepair(self._count, pts * time_base - timeline.origin,
                                        repairs[len(noted)].shift * time_base))

    def _ready(self, demuxed: av.Packet, started: bool) -> Iterable[tuple[av.Packet, bool]]:
        """The packets to decode now, each with whether to skip its frame."""
        if self._skipper is not None:
            return self._skipper.feed(demuxed)
        if not started and demuxed.size and not demuxed.is_discard:
            self._early_pts.append(demuxed.pts)  # for skip_unsampled
        return ((demuxed, False),)

    def _count_skipped_at_end(self, timeline: "_Timeline", packets: PacketTimeline) -> None:
        """Skipped frames after the last decoded one still count as read."""
        if self._skipper is None or not timeline.started:
            return
        skipped = self._skipper.at_end()
        for pts in skipped:
            self._note_repairs(packets, pts, timeline)
            self._count += 1
        if skipped:  # the last frame was a skipped one
            self._seen = skipped[-1] * Fraction(self._stream.time_base) - timeline.origin

    def _check_complete(self) -> None:
        check_complete(self.name, self.info, self._count, self._seen)

    def close(self) -> None:
        self._container.close()


class _Timeline:
    """Frame times from the first frame on (their packets' timestamps are
    already on one timeline: processors.timeline); the nominal rate where a
    raw stream has no timestamps."""

    def __init__(self, stream: av.VideoStream) -> None:
        self.frame_time = nominal_frame_time(stream)
        self.origin: Fraction | None = None
        self.previous: Fraction | None = None

    @property
    def started(self) -> bool:
        return self.origin is not None

    def at(self, frame: av.VideoFrame) -> Fraction:
        if frame.pts is not None and frame.time_base is not None:
            ts = frame.pts * Fraction(frame.time_base)
        else:
            ts = Fraction(0) if self.previous is None else self.previous + self.frame_time
        self.origin = ts if self.origin is None else self.origin
        self.previous = ts
        return ts - self.origin

    def seconds(self) -> float:
        """Where decoding got to, for an error message."""
        return float(self.previous - self.origin) if self.started else 0.0


def check_complete(name: str, info: SourceInfo, count: int, seen: Fraction) -> None:
    """Raise ContentError when ``count`` frames read up to ``seen`` seconds fall
    short of what the container declares (a truncated file).

    A module function so that a plan made without decoding
    (processors.segment_plan) can tell beforehand whether a single pass would fail.
    """
    declared = info.frame_count
    if declared and count < declared * (1 - TRUNCATION_TOLERANCE) - 1:
        raise ContentError(f"{name}: the file is truncated: only {count} of "
                           f"{declared} frames could be read", code="truncated")
    seconds = float(seen)
    if info.duration > 2 and seconds < info.duration * (1 - TRUNCATION_TOLERANCE) - 1:
        raise ContentError(f"{name}: the file is truncated: only {seconds:.1f} s of "
                           f"{info.duration:.1f} s could be read", code="truncated")


def open_video(path: Path, limits: InputLimits) -> av.container.InputContainer:
    """``av.open`` of a regular file inside ``limits.root`` (never a FIFO, which
    would block it forever); ContentError for a file that is not a video."""
    root = limits.root_for(path)
    name = shown(path, root)
    real = regular_file(path, root)
    if real.stat().st_size == 0:
        raise ContentError(f"{name}: the file is empty", code="empty_file")
    try:
        # metadata_errors: a hostile file's tags need not be UTF-8.
        container = av.open(str(real), "r", metadata_errors="replace")
    except av.FFmpegError as exc:
        # FFmpeg logs "moov atom not found" but raises a generic error, so the
        # file's top-level boxes are checked here to name the real problem.
        if _mp4_without_moov(real):
            raise ContentError(f"{name}: the MP4 has no moov atom (the upload was cut off "
                               "before the file was finished)", code="no_moov") from exc
        raise ContentError(f"{name}: not a video file that can be read "
                           f"({av_reason(exc, path, limits)})", code="not_a_video") from exc
    if container.format.name.startswith("mov,"):
        # MP4 files joined with cat: FFmpeg reads the first one's index and
        # never sees the others' frames; refused rather than cut short.
        files = _top_level_boxes(real).count(b"ftyp")
        if files > 1:
            container.close()
            raise ContentError(f"{name}: the file is {files} MP4 files joined end to end "
                               "(an MP4 is read through its own index: only the first "
                               "one's frames could be read); join them with ffmpeg -f "
                               "concat, or upload them one by one", code="joined_mp4")
    return container


def av_reason(exc: av.FFmpegError, path: Path, limits: InputLimits) -> str:
    """An FFmpeg error as a message may show it: without the file's absolute path."""
    return redact(str(exc), limits.root_for(path))


def _mp4_without_moov(path: Path) -> bool:
    """True for an MP4/MOV whose top-level boxes hold no moov (an unfinished upload)."""
    kinds = _top_level_boxes(path)
    return bool(kinds) and kinds[0] == b"ftyp" and b"moov" not in kinds


def _top_level_boxes(path: Path) -> list[bytes]:
    """The types of an MP4/MOV file's top-level boxes, in file order."""
    kinds = []
    with open(path, "rb") as handle:
        while len(header := handle.read(8)) == 8:
            size, kind = struct.unpack(">I4s", header)
            if size == 1:  # a 64-bit size follows
                if len(large := handle.read(8)) < 8:
                    break
                size = struct.unpack(">Q", large)[0] - 8
            kinds.append(kind)
            if size < 8:
                break
            handle.seek(size - 8, os.SEEK_CUR)
    return kinds


def _video_stream(container: av.container.InputContainer, name: str,
                  limits: InputLimits) -> av.VideoStream:
    stream = video_stream_of(container)
    if stream is None:
        raise ContentError(f"{name}: the file has no video stream", code="no_video_stream")
    codec = stream.codec_context
    if codec is None or codec.codec is None or codec.name in ("none", ""):
        # PyAV gives no codec context when FFmpeg has no decoder for the stream.
        raise ContentError(f"{name}: unsupported video codec (no decoder for this stream)",
                           code="unsupported_codec")
    limit_decoder(stream, name, limits)
    return stream


def video_stream_of(container: av.container.InputContainer) -> av.VideoStream | None:
    """The file's video: the stream FFmpeg itself picks (av_find_best_stream),
    not a cover picture or a still that happens to come first. Every reader of
    the file (cutting, the packet scan, segments) takes this one."""
    return container.streams.best("video")


def container_seconds(container: av.container.InputContainer) -> float:
    """The container's duration, from its first timestamp: Matroska gives the
    time of its end, so a file starting at 10 s would seem 10 s longer than
    it is (and be judged truncated)."""
    if not container.duration:
        return 0.0
    return max(0, container.duration - max(container.start_time or 0, 0)) / av.time_base


def limit_decoder(stream: av.VideoStream, name: str, limits: InputLimits) -> None:
    """Refuse frames over ``max_frame_pixels`` from the stream's header, before
    one is decoded (a frame of 8192x8192 is ~100 MB, and the pipeline holds
    dozens); the decoder itself refuses a later, bigger frame too."""
    codec = stream.codec_context
    check_pixels(codec.width, codec.height, limits, name)
    # FFmpeg checks its coded size (e.g. 1920x1088), a little over the shown
    # one: the exact limit is check_pixels' on each decoded frame.
    codec.options = {**codec.options, "max_pixels": str(2 * limits.max_frame_pixels)}
