"""The source that cuts one segment of a plan (processors/segment_plan.py):
it seeks to the segment's keyframe and yields exactly the segment's sampled
frames (its warm-up first), numbered as a single pass numbers them, or raises
``SegmentMismatch`` before it yields a frame the plan did not expect."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import av

from exceptions import ContentError
from processors.input_guard import InputLimits
from processors.source import SourceFrame
from processors.video_source import (
    VideoSource,
    av_reason,
    limit_decoder,
    open_video,
    video_stream_of,
)

if TYPE_CHECKING:
    from processors.segment_plan import Segment


class SegmentMismatch(RuntimeError):
    """The decoded frames are not the ones the plan expected: cut the upload in a
    single pass instead (nothing wrong was yielded)."""


class SegmentSource:
    """The sampled frames of one segment, decoded from the keyframe before it.

    Every frame it yields is a sample (``samples_every_frame``), numbered with
    the plan's global index and timestamp; ``info`` is a single pass's.
    """

    samples_every_frame = True

    def __init__(self, path: str | os.PathLike, segment: Segment,
                 limits: InputLimits = InputLimits()) -> None:
        self.path = Path(path)
        self.limits = limits
        if not segment.frames:
            raise ValueError("a segment without frames is cut by a single pass (open_segment)")
        # Same checks and the same SourceInfo (size, rotation from the first
        # decoded frame, duration) as the single pass: a plan of segments is
        # made only of a timeline that needs no repair, which the single
        # pass's timeline pass leaves as it is.
        probe = VideoSource(self.path, limits, scan_timeline=False)
        self.name = probe.name  # for messages: relative to the contents folder
        try:
            self.info = probe.info
        finally:
            probe.close()
        if self.path.stat().st_size != segment.file_size:
            raise SegmentMismatch(f"{self.path.name} is not the file the plan was made from")
        self.segment = segment
        # run_pipeline reports progress over this part of the video only.
        self.progress_span = (segment.start_time, segment.end_time)
        self._container: av.container.InputContainer | None = None

    def frames(self) -> Iterator[SourceFrame]:
        """The segment's warm-up frames (``warmup`` set), then its sampled
        frames, in order; stops after the last one."""
        segment = self.segment
        wanted = {pts for _, pts in segment.warmup + segment.frames}
        pending = iter([(i, p, True) for i, p in segment.warmup] +
                       [(i, p, False) for i, p in segment.frames])
        index, pts, warmup = next(pending)
        modes: dict[int, str] = {}  # skip_frame set, per codec context (a fallback reopens)
        for packet in self._packets():
            codec = packet.stream.codec_context
            # PERFORMANCE: the plan knows every sampled frame, so any other
            # non-reference frame can be left undecoded (the reference frames
            # the samples are predicted from are always decoded). Set per
            # packet: frame threads copy skip_frame when handed a packet.
            skip = "NONREF" if packet.size and packet.pts not in wanted else "DEFAULT"
            if modes.get(id(codec), "DEFAULT") != skip:
                codec.skip_frame = modes[id(codec)] = skip
            for frame in self._decode(packet):
                if frame.pts is None or frame.pts < pts:
                    continue  # before the segment (decoded from the keyframe on) or unsampled
                if frame.pts > pts or frame.time_base is None \
                        or Fraction(frame.time_base) != segment.time_base:
                    raise SegmentMismatch(f"{self.path.name}: frame {index} (pts {pts}) "
                                          "was not decoded where the plan expects it")
                yield SourceFrame(index=index, timestamp=segment.timestamp(pts), frame=frame,
                                  warmup=warmup)
                following = next(pending, None)
                if following is None:
                    return  # the rest of the video belongs to other segments
                index, pts, warmup = following
        raise SegmentMismatch(f"{self.path.name}: the video ended before frame {index}")

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            return packet.decode()
        except av.FFmpegError as exc:
            at = float(self.segment.timestamp(packet.pts)) if packet.pts is not None else 0.0
            raise ContentError(f"{self.name}: corrupt video data at {at:.1f} s "
                               f"({av_reason(exc, self.path, self.limits)})",
                               code="corrupt") from exc

    def _packets(self) -> Iterator[av.Packet]:
        """Packets from the segment's keyframe on (or from the start of the file)."""
        segment = self.segment
        stream = self._open()
        if segment.seek_pts is None:
            yield from self._container.demux(stream)
            return
        # Seek by dts where known, not by pts: MP4 indexes keyframes by dts,
        # and a later keyframe's dts can be <= this one's pts (short GOPs and
        # B-frame delay), so a seek to seek_pts could land one keyframe late.
        # "The last keyframe at or before seek_dts" is the planned keyframe
        # itself; formats indexed by pts land one keyframe earlier (correct,
        # only slower), and Matroska, which has no dts, is indexed by pts.
        target = segment.seek_pts if segment.seek_dts is None else segment.seek_dts
        try:
            self._container.seek(target, backward=True, stream=stream)
        except av.FFmpegError:
            demuxed: Iterator[av.Packet] = iter(())  # no index to seek with: from the start
        else:
            demuxed = self._container.demux(stream)
        for packet in demuxed:
            if not packet.is_keyframe:
                continue  # landed mid-GOP: those pictures lack their references
            if _after(packet, segment):
                break  # landed too late (an imprecise index): start over
            yield packet
            yield from demuxed
            return
        # Decoding from the start of the file is always right, only slower.
        stream = self._open()
        yield from self._container.demux(stream)

    def _open(self) -> av.VideoStream:
        self.close()
        self._container = open_video(self.path, self.limits)
        stream = video_stream_of(self._container)
        limit_decoder(stream, self.name, self.limits)
        stream.thread_type = "AUTO"
        return stream

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _after(packet: av.Packet, segment: Segment) -> bool:
    """Whether a keyframe comes after the segment's planned keyframe."""
    if packet.dts is not None and segment.seek_dts is not None:
        return packet.dts > segment.seek_dts
    return packet.pts is None or packet.pts > segment.seek_pts
