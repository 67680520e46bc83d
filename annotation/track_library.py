"""Roboflow's ``trackers`` library as annotation/tracking.py uses it: its
trackers made from our settings, and our boxes given to it.

Two of its ways left a box without a track, though every auto box carries a
``trackId`` (README, issue 17): a box of no area, and a track's first box under
ByteTrack; below, each fixed where it arises.
"""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from annotation.tracking import TrackBox, TrackerSettings

MIN_SIDE = 1.0  # pixels: the least width and height a box is tracked with


def library_tracker(settings: TrackerSettings, frame_rate: float) -> Any:
    """A SORT or ByteTrack tracker of the library, for one label's boxes."""
    # Imported here: model manifests (read by every web process and the gunicorn
    # master) name a tracker without loading the library (~1 s of imports).
    from trackers import SORTTracker

    # The library counts lost frames at 30 fps and scales by frame_rate.
    lost = max(1, round(settings.lost_seconds * 30))
    if settings.kind == "sort":
        tracker = SORTTracker(lost_track_buffer=lost, frame_rate=frame_rate,
                              track_activation_threshold=0.0, minimum_consecutive_frames=1,
                              minimum_iou_threshold=settings.min_iou)
    else:
        tracker = _bytetrack()(lost_track_buffer=lost, frame_rate=frame_rate,
                               track_activation_threshold=settings.high_score,
                               minimum_consecutive_frames=1,
                               minimum_iou_threshold=settings.min_iou,
                               high_conf_det_threshold=settings.high_score)
    # The library keeps a track while it has missed fewer than this many frames,
    # checked after it starts the new ones: at 0 (lost_seconds under one sample)
    # it dropped even the track a box had just started, and no box got an id.
    tracker.maximum_frames_without_update = max(1, tracker.maximum_frames_without_update)
    return tracker


@cache
def _bytetrack() -> type:
    """The library's ByteTrack, giving a track's first box its id.

    It gives a track an id at its first match only, whatever
    minimum_consecutive_frames says (1 here): the box that started the track
    was left without one. A track of its own for that box (tracking's
    ``_observe``) would take the join that its object's track, one sample
    later, needs to keep its id after a loss (ID switches at 2 fps on the
    scene)."""
    from trackers import ByteTrackTracker
    from trackers.core.bytetrack.kalman_box_tracker import ByteTrackKalmanBoxTracker

    class ByteTrack(ByteTrackTracker):  # type: ignore[misc]
        def _spawn_new_trackers(self, detections: Any, detection_boxes: Any,
                                unmatched_detections: Any, updated_detections: list) -> None:
            tracks, spawned = len(self.tracks), len(updated_detections)
            super()._spawn_new_trackers(detections, detection_boxes, unmatched_detections,
                                        updated_detections)
            # One new track and its box's detection (id -1) appended per box.
            for track, found in zip(self.tracks[tracks:], updated_detections[spawned:]):
                track.tracker_id = ByteTrackKalmanBoxTracker.get_next_tracker_id()
                found.tracker_id = np.array([track.tracker_id])

    return ByteTrack


def to_detections(boxes: Sequence[TrackBox], picked: list[int]) -> Any:
    """The ``picked`` boxes as the library's detections, their indices kept."""
    import supervision as sv

    xyxy = np.array([_extent(boxes[i]) for i in picked], dtype=float).reshape(-1, 4)
    return sv.Detections(xyxy=xyxy, confidence=np.array([boxes[i].score for i in picked],
                                                        dtype=float),
                         data={"index": np.array(picked, dtype=int)})


def _extent(box: TrackBox) -> list[float]:
    """The box as the library tracks it (x1, y1, x2, y2): at least MIN_SIDE wide
    and high about its centre.

    The library gives a box its id only through the box's IoU with a track's
    (SORT re-matches every box after the update, even to the track the box has
    just started), and a box of no area overlaps nothing: a detector's box for a
    car entering at the frame's edge, placed past it and clipped to zero width,
    or a width under 0.005 px stored as 0, was left without a track. The stored
    box is unchanged."""
    w, h = max(box.w, MIN_SIDE), max(box.h, MIN_SIDE)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
