"""Which packets a decoder may skip: non-reference frames never sampled
(``VideoSource.skip_unsampled``)."""
from __future__ import annotations

import heapq
import math
from collections import deque
from fractions import Fraction

import av

# Sampling buckets remembered by the frame skipper (see UnsampledSkipper): far
# more than any decoder's reordering window, and a bound on its memory.
SKIP_BUCKETS_KEPT = 256
# Packets the skipper looks ahead (demuxed, not yet sent to the decoder).
SKIP_LOOKAHEAD = 16


class UnsampledSkipper:
    """Which packets the decoder may skip: non-reference frames never sampled.

    PERFORMANCE (see ``VideoSource.skip_unsampled``). Sampling at ``rate``
    keeps the first frame (in presentation order) of each bucket
    ``floor((t - t0) * rate)``, ``t0`` being the first frame's time. Packets
    pass through a short lookahead queue; a packet leaving it is flagged when
    a frame of the same bucket with an earlier timestamp has been demuxed
    (before it, or after it in the queue): then it is not its bucket's first
    frame and no sampler keeps it. The decoder drops a flagged frame only if
    it is a non-reference one (``skip_frame = NONREF``); reference frames are
    decoded and yielded as usual, so the pictures of the frames that are
    kept do not change. The first frame of a bucket is never flagged, so it
    is always decoded.

    Skipped frames still count: a decoded frame's index is the number of
    frames before it, decoded or skipped, as it would be with nothing
    skipped. Skipping stops for good (nothing more is flagged) at anything
    this reasoning does not cover: a packet without a timestamp, or decoded
    frames whose timestamps are missing, not increasing, in another time
    base or not a demuxed packet's. Packets near a damaged one (one the
    demuxer marks corrupt, e.g. cut short at the end of a truncated file)
    are never flagged: frame-threaded decoding reports or conceals the
    damage depending on which neighbours it decodes, and the file must be
    judged the same way with or without skipping.
    """

    def __init__(self, rate: int, time_base: Fraction | None, first: av.VideoFrame,
                 early: list[int | None]) -> None:
        """``first``: the first decoded frame; ``early``: the pts of the packets
        demuxed until it came out (None for a packet without one)."""
        self.rate = rate
        self.time_base = Fraction(time_base) if time_base else None
        self.origin: int | None = first.pts  # t0, in time_base units
        self.enabled = (self.time_base is not None and self.origin is not None
                        and None not in early and first.time_base is not None
                        and Fraction(first.time_base) == self.time_base)
        self.first_in_bucket: dict[int, int] = {}  # bucket -> smallest pts demuxed
        self.newest_bucket = 0
        self.queue: deque[tuple[int, av.Packet]] = deque()  # (serial, packet) lookahead
        self.serial = 0  # packets fed
        self.corrupt_at = -SKIP_LOOKAHEAD - 1  # serial of the last damaged packet
        self.flagged: list[int] = []  # heap: pts flagged, not yet decoded or skipped
        self.last_frame_pts = self.origin
        self.pending: set[int] = set()  # pts demuxed, not yet decoded or skipped
        if self.enabled:
            for pts in early:
                self._record(pts)
            self.pending = {pts for pts in early if pts > self.origin}

    def _bucket(self, pts: int) -> int:
        # + half a tick: the sampler's slack (processors.sampling)
        return math.floor((pts - self.origin + Fraction(1, 2)) * self.time_base * self.rate)

    def _record(self, pts: int) -> None:
        bucket = self._bucket(pts)
        first = self.first_in_bucket.get(bucket)
        if first is None or pts < first:
            self.first_in_bucket[bucket] = pts
        if bucket > self.newest_bucket:
            self.newest_bucket = bucket
            if len(self.first_in_bucket) > 2 * SKIP_BUCKETS_KEPT:
                # A forgotten bucket only means a frame that is not flagged.
                oldest = bucket - SKIP_BUCKETS_KEPT
                self.first_in_bucket = {b: p for b, p in self.first_in_bucket.items()
                                        if b > oldest}

    @staticmethod
    def _is_frame(packet: av.Packet) -> bool:
        # Not flush packets, nor edit-list pre-roll (decoded, never output).
        return bool(packet.size) and not packet.is_discard

    def feed(self, packet: av.Packet) -> list[tuple[av.Packet, bool]]:
        """Take a demuxed packet; return the packets to decode now, with their flags."""
        if self.enabled and self._is_frame(packet):
            if packet.pts is None:
                self.enabled = False
            else:
                self.pending.add(packet.pts)
                self._record(packet.pts)
                if packet.is_corrupt:
                    self.corrupt_at = self.serial
        self.queue.append((self.serial, packet))
        self.serial += 1
        ready = []
        # The flush packet at the end empties the queue.
        while self.queue and (len(self.queue) > SKIP_LOOKAHEAD or not packet.size):
            serial, queued = self.queue.popleft()
            ready.append((queued, self._flag(serial, queued)))
        return ready

    def _flag(self, serial: int, packet: av.Packet) -> bool:
        if not (self.enabled and self._is_frame(packet)) or packet.pts is None \
                or abs(serial - self.corrupt_at) <= SKIP_LOOKAHEAD:
            return False
        first = self.first_in_bucket.get(self._bucket(packet.pts))
        if first is None or first >= packet.pts:
            return False
        heapq.heappush(self.flagged, packet.pts)
        return True

    def on_frame(self, pts: int | None, time_base: Fraction | None) -> list[int]:
        """A frame came out of the decoder: the pts of the skipped frames before it."""
        if pts is None:
            self.enabled = False
            return []
        if pts not in self.pending or (self.last_frame_pts is not None
                                       and pts <= self.last_frame_pts) \
                or time_base is None or Fraction(time_base) != self.time_base:
            self.enabled = False
        self.last_frame_pts = pts
        # Frames come out in presentation order: flagged frames before this
        # one that did not come out were skipped by the decoder.
        skipped = []
        while self.flagged and self.flagged[0] < pts:
            skipped.append(heapq.heappop(self.flagged))
        if self.flagged and self.flagged[0] == pts:
            heapq.heappop(self.flagged)  # flagged but decoded: a reference frame
        # Unflagged frames before this one that never came out were dropped
        # by the decoder itself: not counted, as without skipping.
        self.pending = {p for p in self.pending if p > pts}
        return skipped

    def at_end(self) -> list[int]:
        """The pts of the flagged frames after the last decoded one, in order."""
        skipped, self.flagged = sorted(self.flagged), []
        return skipped
