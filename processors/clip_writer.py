"""Encode one task clip: H.264, yuv420p, MP4 with the moov atom first."""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av


@dataclass(frozen=True)
class EncoderSettings:
    preset: str = "veryfast"
    crf: int = 23


class ClipWriter:
    """Writes frames to ``<path>.part`` and renames it into place on ``close``.

    The rename means a clip that exists under its final name is complete, which
    is what crash recovery relies on.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int,
                 settings: EncoderSettings) -> None:
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.count = 0
        # faststart moves the moov atom before mdat so a browser can start
        # playing before the whole file has arrived.
        self._container = av.open(str(self.part), "w", format="mp4",
                                  container_options={"movflags": "+faststart"})
        stream = self._container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"  # browsers decode only 4:2:0 8-bit H.264
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"preset": settings.preset, "crf": str(settings.crf)}
        self._stream = stream
        self._time_base = Fraction(1, fps)

    def write(self, frame: av.VideoFrame) -> None:
        # One frame per tick at the clip's own rate, whatever the source timing.
        frame.pts = self.count
        frame.time_base = self._time_base
        self._container.mux(self._stream.encode(frame))
        self.count += 1

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))
        self._container.close()
        os.replace(self.part, self.path)

    def abort(self) -> None:
        try:
            self._container.close()
        except av.FFmpegError:
            pass
        self.part.unlink(missing_ok=True)
