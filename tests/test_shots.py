"""Shot boundaries (processors/shots.py) on generated H.264 footage with exact
ground truth (tests/shot_scenes.py): cuts found, none made up, and the same
cuts whether a segment starts anywhere with its warm-up or one pass runs."""
from __future__ import annotations

import numpy as np
import pytest
from shot_scenes import RED, Mover, Shot, cuts_scene, decode, encode, encoded

from processors.shots import ShotDetector, camera_moved, detect_cuts


@pytest.fixture(scope="module")
def cuts_video(tmp_path_factory):
    return encoded(tmp_path_factory.mktemp("shots"), "cuts.mp4", cuts_scene())


@pytest.fixture(scope="module")
def motion_video(tmp_path_factory):
    """One long shot, no cut: a pan, fast movers, a flash."""
    path = tmp_path_factory.mktemp("shots") / "motion.mp4"
    shot = Shot(90, texture=21, pan=(5.0, 1.5), flashes=(45,), movers=(
        Mover(RED, (60, 40), (0, 60), (9.0, 1.0)), Mover((20, 200, 40), (30, 50), (300, 10), (-7.0, 2.0))))
    encode(path, [shot, Shot(60, texture=21, movers=(Mover(RED, (80, 60), (100, 50), (12.0, 0.0)),))])
    return list(decode(path))


@pytest.mark.parametrize("step", [1, 2, 6])
def test_hard_cuts_found_within_one_frame(cuts_video, step):
    frames, truth = cuts_video
    sampled = [(i, f) for i, f in frames if i % step == 0]
    found = detect_cuts(sampled)
    expected = truth.expected_cuts([i for i, _ in sampled])
    hard = [f for f in found if not any(a <= f < b for a, b in truth.fades)]
    assert len(hard) == len(expected), (found, expected)
    assert all(abs(f - e) <= 1 for f, e in zip(hard, expected)), (found, expected)


def test_the_fade_is_one_boundary_inside_it(cuts_video):
    frames, truth = cuts_video
    found = detect_cuts(frames)
    (start, end), = truth.fades
    assert [f for f in found if start <= f < end], found


def test_a_cut_between_the_same_object_at_the_same_place_is_found(cuts_video):
    """Shots 0 and 1 both show the red box at (140, 120): only the place changed."""
    frames, truth = cuts_video
    assert truth.hard_cuts[0] in detect_cuts(frames)


@pytest.mark.parametrize("step", [1, 6])
def test_no_cut_inside_a_moving_shot(motion_video, step):
    sampled = [(i, f) for i, f in motion_video if i % step == 0]
    assert detect_cuts(sampled) == [90]  # the cut to where the pan began, only


def test_camera_motion_explains_a_pan_not_a_cut():
    rng = np.random.default_rng(0)
    place = rng.integers(0, 255, (80, 200)).astype(np.float32)
    place = np.kron(place, np.ones((4, 4), np.float32))  # blocks, as a scene has
    before, after = place[40:112, 100:228], place[46:118, 120:248]  # the camera moved
    other = np.kron(rng.integers(0, 255, (18, 32)), np.ones((4, 4))).astype(np.float32)
    assert camera_moved(before, after)
    assert not camera_moved(before, other)
    assert not camera_moved(before, before)  # nothing moved: nothing to explain


@pytest.mark.parametrize("method", ["content+hash", "vote", "adaptive"])
@pytest.mark.parametrize("start,length", [(40, 30), (41, 20), (110, 40), (150, 20), (1, 300)])
def test_a_segment_with_its_warm_up_finds_what_one_pass_finds(cuts_video, method, start, length):
    """A segment from ``start`` decodes ``window`` frames before it and ``delay``
    after its end; its cuts in [start, start + length) are one pass's."""
    frames, _ = cuts_video
    whole = detect_cuts(frames, method)
    detector = ShotDetector(method)
    first = max(0, start - detector.window)
    last = min(len(frames), start + length + detector.delay)
    found = [c for i, f in frames[first:last] for c in detector.push(i, f)]
    if last == len(frames):
        found += detector.flush()
    end = start + length
    assert [c for c in found if start <= c < end] == [c for c in whole if start <= c < end]


def test_decisions_come_at_most_delay_frames_late(cuts_video):
    frames, truth = cuts_video
    detector = ShotDetector("vote")
    assert detector.delay == 2
    for i, frame in frames:
        for cut in detector.push(i, frame):
            assert i - detector.delay <= cut <= i
    default = ShotDetector()
    assert (default.window, default.delay) == (1, 0)  # the default decides at once


def test_arrays_rgb_and_bgr_give_the_frames_cuts(cuts_video):
    frames, _ = cuts_video
    rgb = [(i, f.to_ndarray(format="rgb24")) for i, f in frames[:90]]
    assert detect_cuts(rgb) == detect_cuts(frames[:90]) == [40, 75, 83]
    detector = ShotDetector()
    bgr = [c for i, a in rgb for c in detector.push(i, np.ascontiguousarray(a[:, :, ::-1]), "bgr")]
    assert bgr == [40, 75, 83]


def _tile(seed: int, w: int, h: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("w,h", [(1, 1), (2, 2), (16, 9), (7, 300)])
def test_tiny_frames(w, h):
    frames = [(i, _tile(0 if i < 5 else 1, w, h)) for i in range(10)]
    cuts = detect_cuts(frames)
    assert cuts in ([5], []) if w * h < 16 else cuts == [5]


def test_no_input_no_cut():
    assert detect_cuts([]) == []
    assert ShotDetector().flush() == []
    one = ShotDetector()
    assert one.push(7, _tile(0, 32, 18)) == [] and one.flush() == []  # nothing before it


@pytest.mark.parametrize("frame,order,message", [
    (np.zeros((0, 0, 3), np.uint8), "rgb", "empty"),
    (np.zeros((9, 16, 3), np.float32), "rgb", "uint8"),
    (np.zeros((9, 16, 4), np.uint8), "rgb", "HxWx3"),
    (np.zeros((9, 16, 3), np.uint8), "yuv", "order"),
])
def test_bad_frames_are_refused(frame, order, message):
    with pytest.raises(ValueError, match=message):
        ShotDetector().push(0, frame, order)


def test_bad_settings_and_backward_frames_are_refused():
    with pytest.raises(ValueError, match="method"):
        ShotDetector("magic")
    with pytest.raises(ValueError, match="too small"):
        ShotDetector(width=4)
    detector = ShotDetector()
    detector.push(5, _tile(0, 32, 18))
    with pytest.raises(ValueError, match="forward"):
        detector.push(5, _tile(1, 32, 18))
