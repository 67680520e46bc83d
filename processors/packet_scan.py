"""A demux-only scan of a video: frame timestamps and seek points, no decoding.

``VideoSource`` numbers frames in the order the decoder outputs them, which is
presentation (pts) order: one frame per packet that carries a picture (not
the flush packet, nor an edit list's pre-roll, which is decoded but never
output). Sorting those packets' pts therefore gives every frame's index and
timestamp without decoding a single one, as long as the packets' timestamps
can be trusted; ``PacketScan.problem`` says when they cannot. The packets are
read through the same ``PacketTimeline`` as VideoSource reads them
(processors.timeline): a stream whose timestamps restart or jump is
reported as a problem, so that it is cut in one pass, which records where
its timeline was repaired (a segment seeks by timestamp, and timestamps
that restart name more than one place in the file).
"""
from __future__ import annotations

import os
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from processors.input_guard import InputLimits, shown
from processors.timeline import REORDER_WINDOW, PacketTimeline, leaps_are_breaks
from processors.video_source import open_video, video_stream_of


@dataclass
class PacketScan:
    time_base: Fraction
    pts: list[int] = field(default_factory=list)  # every frame's pts, presentation order
    # Keyframes a decoder can start from for any frame at or after them
    # (ascending): (pts, dts) of keyframes that no earlier packet's pts
    # reaches, with increasing dts up to them (dts None: the format has none,
    # e.g. Matroska; its index is by pts).
    keys: list[tuple[int, int | None]] = field(default_factory=list)
    first_key: bool = False  # keys[0] is the file's first packet: no seek needed
    problem: str = ""  # why the scan cannot stand for the decoder ("" if it can)

    def seek_point(self, pts: int) -> tuple[int, int | None] | None:
        """(pts, dts) of the last keyframe at or before ``pts``; None: decode from
        the start of the file (no such keyframe, or it is the first packet)."""
        at = bisect_right(self.keys, pts, key=lambda key: key[0]) - 1
        if at < 0 or (at == 0 and self.first_key):
            return None
        return self.keys[at]


def scan_packets(path: str | os.PathLike, limits: InputLimits = InputLimits()) -> PacketScan:
    """Read every packet of the video stream (without decoding it). Raises
    ContentError (``broken_timeline``) as a single pass would."""
    path = Path(path)
    with open_video(path, limits) as container:
        stream = video_stream_of(container)
        time_base = stream.time_base if stream is not None else None
        scan = PacketScan(Fraction(time_base) if time_base else Fraction(0))
        if not scan.time_base:
            scan.problem = "the video stream has no time base"
            return scan
        timeline = PacketTimeline(stream, leaps_are_breaks(container),
                                  shown(path, limits.root_for(path)))
        packets = timeline.packets(container.demux(stream))
        try:
            _read(packets, scan)
            if scan.problem and not timeline.repairs:
                # Whether a join explains it: MPEG-TS files joined with cat
                # break the continuity counters at each join, so the demuxer
                # flags the last packet of a part as damaged
                # (AV_PKT_FLAG_CORRUPT: it cannot tell a part that ends from
                # lost packets), though its data is whole.
                for _ in packets:
                    if timeline.repairs:
                        break
        except av.FFmpegError as exc:  # the decoder would meet the same damage
            scan.problem = scan.problem or f"the file cannot be read to its end ({exc})"
        if timeline.repairs:
            scan.problem = "the timestamps restart or jump: one timeline is made in one pass"
    if not scan.problem:
        _order(scan)
    return scan


def _read(packets: object, scan: PacketScan) -> None:
    recent: deque[int] = deque()  # pts of the last REORDER_WINDOW packets
    settled: int | None = None  # highest pts of the packets before those
    highest: int | None = None  # highest pts so far
    last_dts: int | None = None
    seekable = True  # known dts have been increasing: a seek by dts lands where planned
    for position, packet in enumerate(packets):
        if not packet.size:
            continue  # the flush packet at the end
        pts, dts = packet.pts, packet.dts
        if pts is None:
            scan.problem = "packets without timestamps"
            return
        if packet.is_corrupt:
            # The decoder may conceal or report the damage depending on where
            # it started: only a single pass judges the file as a single pass does.
            scan.problem = "a damaged packet"
            return
        if settled is not None and pts <= settled:
            scan.problem = "timestamps out of presentation order"
            return
        if dts is not None:
            seekable = seekable and (last_dts is None or dts > last_dts)
            last_dts = dts
        if packet.is_keyframe and seekable and (highest is None or pts > highest):
            scan.keys.append((pts, dts))
            scan.first_key = scan.first_key or position == 0
        highest = pts if highest is None else max(highest, pts)
        recent.append(pts)
        if len(recent) > REORDER_WINDOW:
            dropped = recent.popleft()
            settled = dropped if settled is None else max(settled, dropped)
        if not packet.is_discard:  # edit-list pre-roll: decoded, never output
            scan.pts.append(pts)


def _order(scan: PacketScan) -> None:
    scan.pts.sort()
    if not scan.pts:
        scan.problem = "no frame packets"
    elif any(a == b for a, b in zip(scan.pts, scan.pts[1:])):
        scan.problem = "duplicate timestamps"
