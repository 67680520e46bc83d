"""Decode a video file with PyAV into source frames, classifying bad input."""
from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from exceptions import ContentError
from processors.source import SourceFrame, SourceInfo, display_size

# A file is "truncated" when it ends this far before its declared length.
TRUNCATION_TOLERANCE = 0.05


class VideoSource:
    samples_every_frame = False

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._container = _open_container(self.path)
        try:
            self._stream = _video_stream(self._container, self.path)
            # Frame and slice threads: decoding is the longest stage.
            self._stream.thread_type = "AUTO"
            self._decoded = self._decode()
            self._first = next(self._decoded, None)
            if self._first is None:
                raise ContentError(f"{self.path.name}: the video has no decodable frames",
                                   code="no_frames")
            self.info = self._probe(self._first.frame)
        except BaseException:
            self._container.close()
            raise

    def _probe(self, first: av.VideoFrame) -> SourceInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or 0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            duration = self._container.duration / av.time_base
        rotation = int(first.rotation or 0) % 360
        width, height = display_size(first.width, first.height, rotation)
        return SourceInfo(name=self.path.stem, width=width, height=height, fps=float(rate),
                          duration=duration, frame_count=int(stream.frames or 0),
                          rotation=rotation)

    def frames(self) -> Iterator[SourceFrame]:
        """Every decoded frame once, in presentation order; checks the file's end."""
        last: SourceFrame | None = None
        count = 0
        if self._first is not None:
            first, self._first = self._first, None
            yield first
            last, count = first, 1
        for item in self._decoded:
            yield item
            last, count = item, count + 1
        self._check_complete(last, count)

    def _decode(self) -> Iterator[SourceFrame]:
        stream = self._stream
        frame_time = Fraction(1, 30)
        if stream.average_rate:
            frame_time = 1 / Fraction(stream.average_rate)
        previous: Fraction | None = None
        origin: Fraction | None = None
        index = 0
        try:
            for frame in self._container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    ts = frame.pts * Fraction(frame.time_base)
                else:  # raw streams without timestamps: assume the nominal rate
                    ts = Fraction(0) if previous is None else previous + frame_time
                origin = ts if origin is None else origin
                previous = ts
                yield SourceFrame(index=index, timestamp=ts - origin, frame=frame)
                index += 1
        except av.FFmpegError as exc:
            at = float(previous - origin) if previous is not None and origin is not None else 0.0
            raise ContentError(f"{self.path.name}: corrupt video data at {at:.1f} s ({exc})",
                               code="corrupt") from exc

    def _check_complete(self, last: SourceFrame | None, count: int) -> None:
        info = self.info
        declared = info.frame_count
        if declared and count < declared * (1 - TRUNCATION_TOLERANCE) - 1:
            raise ContentError(f"{self.path.name}: the file is truncated: only {count} of "
                               f"{declared} frames could be read", code="truncated")
        seen = float(last.timestamp) if last else 0.0
        if info.duration > 2 and seen < info.duration * (1 - TRUNCATION_TOLERANCE) - 1:
            raise ContentError(f"{self.path.name}: the file is truncated: only {seen:.1f} s of "
                               f"{info.duration:.1f} s could be read", code="truncated")

    def close(self) -> None:
        self._container.close()


def _open_container(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise ContentError(f"{path.name}: file not found", code="missing_file")
    if path.stat().st_size == 0:
        raise ContentError(f"{path.name}: the file is empty", code="empty_file")
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        text = str(exc)
        # FFmpeg logs "moov atom not found" but raises a generic error, so the
        # file's top-level boxes are checked here to name the real problem.
        if _mp4_without_moov(path):
            raise ContentError(f"{path.name}: the MP4 has no moov atom (the upload was cut off "
                               "before the file was finished)", code="no_moov") from exc
        raise ContentError(f"{path.name}: not a video file that can be read ({text})",
                           code="not_a_video") from exc


def _mp4_without_moov(path: Path) -> bool:
    """True for an MP4/MOV whose top-level boxes hold no moov (an unfinished upload)."""
    kinds = []
    with open(path, "rb") as handle:
        while len(header := handle.read(8)) == 8:
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0] - 8
            kinds.append(kind)
            if size < 8:
                break
            handle.seek(size - 8, os.SEEK_CUR)
    return bool(kinds) and kinds[0] == b"ftyp" and b"moov" not in kinds


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        raise ContentError(f"{path.name}: the file has no video stream", code="no_video_stream")
    stream = container.streams.video[0]
    codec = stream.codec_context
    if codec is None or codec.codec is None or codec.name in ("none", ""):
        # PyAV gives no codec context when FFmpeg has no decoder for the stream.
        raise ContentError(f"{path.name}: unsupported video codec (no decoder for this stream)",
                           code="unsupported_codec")
    return stream
