"""Encode one task clip: H.264, yuv420p, MP4 with the moov atom first.

Timestamps, for frame-exact seeking: a tool that shows frame ``k`` seeks to
``k / fps``, which a browser rounds to whole microseconds against the clip's
own rounded timestamps; with frame ``k`` at exactly ``k / fps`` that lands on
frame ``k - 1`` for about a third of the frames (Chromium, 30 fps). So each
frame from the second on is presented one tick of a ~90 kHz clock (11 us)
early: ``k / fps`` then falls inside frame ``k`` whatever the rounding. Frame 0
stays at 0: a frame before the start would be cut by the edit list. The
declared rate stays exactly ``fps``, the duration ``count / fps`` less a tick.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

CLOCK_HZ = 90000  # MPEG's clock: about 11 us a tick, far above any frame rate
EARLY_TICKS = 1   # how early a frame is presented: more than a browser's rounding


@dataclass(frozen=True)
class EncoderSettings:
    preset: str = "veryfast"
    crf: int = 23


def clip_clock(fps: Fraction) -> tuple[Fraction, int]:
    """The clip's time base (about 1/90000 s, whole ticks per frame even at
    30000/1001 fps) and a frame's length in ticks."""
    ticks_per_unit = -(-CLOCK_HZ // fps.numerator)  # ceiling: never coarser than 90 kHz
    return Fraction(1, fps.numerator * ticks_per_unit), fps.denominator * ticks_per_unit


class ClipWriter:
    """Writes frames to ``<path>.part`` and renames it into place on ``close``.

    The rename means a clip that exists under its final name is complete, which
    is what crash recovery relies on.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int | Fraction,
                 settings: EncoderSettings) -> None:
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.count = 0
        fps = Fraction(fps)
        self._time_base, self._frame_ticks = clip_clock(fps)
        # faststart moves the moov atom before mdat so a browser can start
        # playing before the whole file has arrived; the edit list in the
        # clip's own clock, not milliseconds, keeps the last frame's end exact.
        self._container = av.open(str(self.part), "w", format="mp4", container_options={
            "movflags": "+faststart", "movie_timescale": str(self._time_base.denominator)})
        stream = self._container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"  # browsers decode only 4:2:0 8-bit H.264
        stream.codec_context.time_base = self._time_base
        stream.time_base = self._time_base  # the MP4 timescale: the same clock
        stream.options = {"preset": settings.preset, "crf": str(settings.crf)}
        self._stream = stream

    def write(self, frame: av.VideoFrame) -> None:
        # One frame per 1/fps at the clip's own rate, whatever the source
        # timing (moved a tick early in _mux, after the encoder).
        frame.pts = self.count * self._frame_ticks
        frame.time_base = self._time_base
        self._mux(self._stream.encode(frame))
        self.count += 1

    def close(self) -> None:
        self._mux(self._stream.encode(None))
        self._container.close()
        os.replace(self.part, self.path)

    def abort(self) -> None:
        try:
            self._container.close()
        except av.FFmpegError:
            pass
        self.part.unlink(missing_ok=True)

    def _mux(self, packets: list[av.Packet]) -> None:
        # The encoder saw evenly spaced frames; moving every decoding time and
        # every presentation time but frame 0's the same tick earlier keeps the
        # MP4's sample durations even (one entry: the rate reads back exact)
        # and each packet's pts >= dts.
        for packet in packets:
            packet.dts -= EARLY_TICKS
            if packet.pts:
                packet.pts -= EARLY_TICKS
        self._container.mux(packets)
