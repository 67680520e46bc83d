"""One continuous timeline for a video whose timestamps restart or jump.

Recordings joined end to end (``cat a.ts b.ts > joined.ts``), a recorder that
resumes a stream, a muxer that resets its clock: the packets' timestamps go
back to 0 (or to any earlier time) or leap ahead. Read as they are, the
frames after a step back lie before targets already sampled, and
TimestampSampler (SPEC: the first frame at or after each target) keeps none
of them: whole recordings vanished without a word.

FFmpeg's command line repairs this while it demuxes (fftools/ffmpeg_demux.c,
``ts_discontinuity_detect``): for a format flagged AVFMT_TS_DISCONT (MPEG-TS,
MPEG-PS, ...), a dts more than 0.1 s before the previous one, or more than
``-dts_delta_threshold`` (10 s) away from the one expected next, shifts that
packet and every later one so that it follows the packet before it. Other
formats are left as they are. ``PacketTimeline`` does the same kind of
repair, on the packets of the video stream, before they are decoded, so that
the decoder, the frame skipper, the sampler and the demux-only scan of a
segment plan all see one timeline. What starts a new part:

- A step back, in every format (no legitimate stream goes back in time): a
  dts more than one frame duration before the previous packet's, a pts that
  one of the last REORDER_WINDOW packets already has (two frames at one
  time: a part of a few frames that starts where the last one started), or
  a pts below every pts of the packets before those (what no decoder's
  reordering explains; also the rule for packets without a dts, e.g.
  Matroska's first ones).
- A leap ahead, only in formats flagged AVFMT_TS_DISCONT, whose timestamps
  are a transmission clock that a recorder resets or resumes: a pts more than
  JUMP_SECONDS (10 s, FFmpeg's default ``-dts_delta_threshold``) plus a frame
  duration after the highest pts of its part. Below that the gap is kept as
  a gap: a camera that lowers its frame rate in the dark, or lost packets,
  leave real gaps of a few seconds, and a frame-relative threshold would
  squeeze them out of a variable-frame-rate stream. In MP4, MOV, Matroska,
  AVI, ... a gap of any length is a pause of a variable-frame-rate video and
  keeps its meaning (SPEC: the targets it skips over are dropped, never filled).

A new part is held back until REORDER_WINDOW of its packets are read (or it
ends): its earliest pts then lands one nominal frame duration after the
highest pts before it, and all its packets move by that much. Parts that
start with a keyframe (every recording does) then follow one another on the
timeline exactly as their frames come out of the decoder: the frames of N
joined recordings of a constant rate are one recording of that rate.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator

import av

from exceptions import ContentError

# A leap ahead longer than this (plus a frame) starts a new part, in formats
# flagged AVFMT_TS_DISCONT only: FFmpeg's default -dts_delta_threshold.
JUMP_SECONDS = Fraction(10)
# More repairs than this: the timestamps are damaged rather than a few
# recordings joined, and each repair is listed in the upload document
# (timelineRepairs: about 60 bytes each).
MAX_REPAIRS = 1000
# No decoder holds back more frames than this to put them in presentation
# order (H.264 and HEVC allow at most 16): a packet whose pts is below one
# demuxed this many packets earlier cannot be a reordered frame.
REORDER_WINDOW = 16
DEFAULT_FRAME_TIME = Fraction(1, 30)  # of a stream that declares no rate


@dataclass(frozen=True)
class Repair:
    """Where one part of the stream was moved (time-base ticks)."""

    pts: int  # where the part's earliest frame lands on the repaired timeline
    shift: int  # added to the part's own timestamps


@dataclass(frozen=True)
class TimelineRepair:
    """A repair as the upload records it (``timelineRepairs``)."""

    source_frame: int  # the first frame of the part (VideoSource numbering)
    at: Fraction  # its timestamp on the repaired timeline (seconds from the first frame)
    shift: Fraction  # seconds its part was moved: timestamp = own time in the file + shift

    def to_document(self) -> dict:
        return {"sourceFrame": self.source_frame, "at": float(self.at),
                "shift": float(self.shift)}


def nominal_frame_time(stream: av.VideoStream) -> Fraction:
    """Seconds per frame at the stream's declared average rate (1/30 without one)."""
    rate = stream.average_rate
    return 1 / Fraction(rate) if rate else DEFAULT_FRAME_TIME


def leaps_are_breaks(container: av.container.InputContainer) -> bool:
    """Whether the format's timestamps are a clock that may be reset or resumed
    (AVFMT_TS_DISCONT: MPEG-TS, MPEG-PS, Ogg, HLS, ...): a leap ahead of more
    than JUMP_SECONDS then starts a new part."""
    return bool(container.format.flags & av.format.Flags.ts_discont.value)


class PacketTimeline:
    """Puts the packets of one stream on one timeline, in demux order.

    ``packets(demuxed)`` yields every packet of ``demuxed`` once, in the same
    order, with its pts and dts moved onto the repaired timeline (the first
    part is never moved); ``repairs`` lists the parts moved so far. Raises
    ContentError (``broken_timeline``) past MAX_REPAIRS.
    """

    def __init__(self, stream: av.VideoStream, leaps: bool, name: str) -> None:
        time_base = Fraction(stream.time_base or 1)
        self.frame_ticks = max(1, round(nominal_frame_time(stream) / time_base))
        self.jump_ticks = round(JUMP_SECONDS / time_base)
        self.leaps = leaps
        self.name = name  # for messages
        self.repairs: list[Repair] = []
        self.offset = 0  # ticks added to the timestamps of the current part
        self.highest: int | None = None  # highest pts yielded (repaired)
        self._held: list[av.Packet] | None = None  # a new part's first packets
        # The current part, in its own timestamps:
        self._last_dts: int | None = None
        self._highest: int | None = None
        self._recent: deque[int] = deque()  # pts of its last REORDER_WINDOW packets
        self._settled: int | None = None  # highest pts of its packets before those

    def packets(self, demuxed: Iterable[av.Packet]) -> Iterator[av.Packet]:
        for packet in demuxed:
            if self._breaks(packet):
                yield from self._release()
                self._held = []
            if self._held is None:
                yield self._moved(packet)
                continue
            self._held.append(packet)
            if len(self._held) >= REORDER_WINDOW:
                yield from self._release()
        yield from self._release()

    def _breaks(self, packet: av.Packet) -> bool:
        """Whether ``packet`` starts a new part (then the part's state restarts)."""
        if not packet.size:
            return False  # the flush packet at the end
        pts, dts = packet.pts, packet.dts
        back = dts is not None and self._last_dts is not None \
            and dts < self._last_dts - self.frame_ticks
        leap = False
        if pts is not None:
            back = back or pts in self._recent \
                or (self._settled is not None and pts < self._settled)
            leap = self.leaps and self._highest is not None \
                and pts - self._highest > self.frame_ticks + self.jump_ticks
        broke = (back or leap) and self.highest is not None
        if broke:
            self._last_dts = self._highest = self._settled = None
            self._recent.clear()
        if dts is not None:
            self._last_dts = dts
        if pts is not None:
            self._highest = pts if self._highest is None else max(self._highest, pts)
            self._recent.append(pts)
            if len(self._recent) > REORDER_WINDOW:
                old = self._recent.popleft()
                self._settled = old if self._settled is None else max(self._settled, old)
        return broke

    def _release(self) -> Iterator[av.Packet]:
        """The held packets of a new part, moved: its earliest pts lands one
        frame after the highest pts before it."""
        if self._held is None:
            return
        held, self._held = self._held, None
        earliest = min((p.pts for p in held if p.size and p.pts is not None), default=None)
        if earliest is not None and self.highest is not None:
            landing = self.highest + self.frame_ticks
            self.offset = landing - earliest
            self.repairs.append(Repair(landing, self.offset))
            if len(self.repairs) > MAX_REPAIRS:
                raise ContentError(
                    f"{self.name}: the timestamps restart or jump more than {MAX_REPAIRS} "
                    "times: they are damaged, not recordings joined end to end, and the "
                    "frames cannot be put on one timeline", code="broken_timeline")
        for packet in held:
            yield self._moved(packet)

    def _moved(self, packet: av.Packet) -> av.Packet:
        if self.offset:
            if packet.pts is not None:
                packet.pts += self.offset
            if packet.dts is not None:
                packet.dts += self.offset
        if packet.size and packet.pts is not None:
            self.highest = packet.pts if self.highest is None else max(self.highest, packet.pts)
        return packet


def repaired_span(container: av.container.InputContainer, stream: av.VideoStream,
                  name: str) -> Fraction | None:
    """Seconds from the first frame to the end of the last one on the repaired
    timeline, when the stream has to be repaired (None when it need not be,
    or cannot be read to its end: decoding then says what is wrong). A
    demux-only pass, for a format whose duration FFmpeg estimates from the
    timestamps themselves (MPEG-TS: the last one minus the first, which a
    restart makes meaningless). Raises ContentError (``broken_timeline``)."""
    timeline = PacketTimeline(stream, leaps_are_breaks(container), name)
    lowest = highest = None
    try:
        for packet in timeline.packets(container.demux(stream)):
            if packet.size and packet.pts is not None and not packet.is_discard:
                lowest = packet.pts if lowest is None else min(lowest, packet.pts)
                highest = packet.pts if highest is None else max(highest, packet.pts)
    except av.FFmpegError:
        return None
    if not timeline.repairs or lowest is None:
        return None
    return (highest - lowest + timeline.frame_ticks) * Fraction(stream.time_base)
