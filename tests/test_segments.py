"""Segments of one video, cut separately, give exactly the single pass's tasks.

Videos are barcode videos (each frame shows its index, see media.py) with
short GOPs so that segments really seek to keyframes mid-video.
"""
from __future__ import annotations

import json
import random
import shutil
import threading
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import wait_for
from media import clip_barcodes, expected_samples, write_video

from exceptions import ContentError
from processors.packet_scan import scan_packets
from processors.pipeline import (
    OutputLayout,
    PipelineSettings,
    Progress,
    TaskOutput,
    run_pipeline,
)
from processors.sampling import TimestampSampler
from processors.segment_plan import Segment, open_segment, plan_segments, run_segment
from processors.segment_source import SegmentMismatch, SegmentSource
from processors.video_source import VideoSource

SIZE = (160, 120)


def encode(path: Path, pts: list[int], time_base: Fraction, gop: int = 12, bframes: int = 3,
           open_gop: bool = False, rotation: int = 0, fmt: str | None = None,
           container_options: dict | None = None) -> Path:
    """A barcode video (frame i shows i, at ``pts[i] * time_base``) with a keyframe
    every ``gop`` frames and up to ``bframes`` B-frames in a row."""
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:open-gop={int(open_gop)}"
    return write_video(path, pts, time_base, SIZE, rotation,
                       options={"preset": "veryfast", "x264-params": params}, fmt=fmt,
                       container_options=container_options)


VFR_MS = ([i * 33 for i in range(30)] + [1500 + i * 40 for i in range(25)]
          + [2600 + i * 10 for i in range(40)] + [4000 + i * 50 for i in range(20)])
VIDEOS = {
    # name: (pts, time_base, encoder options)
    "cfr 30fps, B-frames": (list(range(150)), Fraction(1, 30), {}),
    "cfr 30fps, no B-frames": (list(range(120)), Fraction(1, 30), {"bframes": 0, "gop": 10}),
    "29.97fps": ([i * 1001 for i in range(150)], Fraction(1, 30000), {"gop": 15}),
    "vfr with gaps": (VFR_MS, Fraction(1, 1000), {"gop": 8, "bframes": 2}),
    "first pts 30 s": ([900 + i for i in range(120)], Fraction(1, 30), {}),
    "open GOP": (list(range(150)), Fraction(1, 30), {"open_gop": True}),
    "rotated 90": (list(range(90)), Fraction(1, 30), {"rotation": 90, "gop": 10}),
    # Matroska stores whole ms (frame 1 at 33 ms): the sampler's half-tick slack
    "matroska 30fps, B-frames": (list(range(150)), Fraction(1, 30), {"fmt": "matroska"}),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("segment-videos")
    return {name: encode(folder / f"v{i}.mp4", pts, time_base, **options)
            for i, (name, (pts, time_base, options)) in enumerate(VIDEOS.items())}


def timestamps(name: str) -> list[Fraction]:
    """Each frame's time as the file stores it (Matroska: whole milliseconds)."""
    pts, time_base, options = VIDEOS[name]
    exact = [(p - pts[0]) * time_base for p in pts]
    if options.get("fmt") == "matroska":
        return [Fraction(round(t * 1000), 1000) for t in exact]
    return exact


def slack(path: Path) -> Fraction:
    """The sampler's half tick for the file (processors.sampling)."""
    return scan_packets(path).time_base / 2


def single_pass_samples(path: Path, rate: int) -> list[tuple[int, Fraction]]:
    source = VideoSource(path)
    try:
        source.skip_unsampled(rate)
        sampler = TimestampSampler(rate, slack=source.sampling_slack)  # as run_pipeline's
        return [(f.index, f.timestamp) for f in source.frames() if sampler.accept(f.timestamp)]
    finally:
        source.close()


# --- the plan --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_scan_numbers_frames_like_video_source(name, videos):
    scan = scan_packets(videos[name])
    source = VideoSource(videos[name])
    try:
        decoded = [(f.index, f.timestamp) for f in source.frames()]
    finally:
        source.close()
    assert scan.problem == ""
    planned = [(i, (p - scan.pts[0]) * scan.time_base) for i, p in enumerate(scan.pts)]
    assert planned == decoded == list(enumerate(timestamps(name)))
    assert len(scan.keys) > 2  # short GOPs: the segments below do seek


@pytest.mark.parametrize("segments", [2, 3, 4, 50])
@pytest.mark.parametrize("rate", [5, 7, 30, 60])
@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_plan_covers_every_task_once(name, rate, segments, videos):
    per_task = 4
    plan = plan_segments(videos[name], rate, per_task, segments)
    expected = expected_samples(timestamps(name), rate, slack(videos[name]))
    tasks = -(-len(expected) // per_task)
    assert len(plan) == min(segments, tasks)
    assert [s.number for s in plan] == list(range(1, len(plan) + 1))
    assert all(s.count == len(plan) and not s.reason for s in plan)
    assert [s.first_task for s in plan] == [1] + [s.last_task + 1 for s in plan[:-1]]
    assert plan[-1].last_task == tasks
    for segment in plan:
        assert segment.first_sample == (segment.first_task - 1) * per_task
        assert segment.first_task <= segment.last_task
        assert segment.seek_pts is None or segment.number > 1
        if segment.seek_pts is not None:
            assert segment.seek_pts <= segment.frames[0][1]  # the keyframe before its frames
    samples = [sample for segment in plan for sample in segment.samples]
    assert samples == single_pass_samples(videos[name], rate)
    assert [index for index, _ in samples] == expected


def test_segments_are_balanced_by_duration(videos):
    plan = plan_segments(videos["cfr 30fps, B-frames"], 30, 5, 3)  # 30 tasks of 1/6 s
    assert [(s.first_task, s.last_task) for s in plan] == [(1, 10), (11, 20), (21, 30)]
    # The spans tile the video, from 0 to its duration.
    assert [s.start_time for s in plan] == [0.0] + [s.end_time for s in plan[:-1]]
    assert plan[-1].end_time == pytest.approx(5.0, abs=0.04)
    spans = [s.end_time - s.start_time for s in plan]
    assert max(spans) - min(spans) < 0.2


@pytest.mark.parametrize("segments", [1, 2, 3])
def test_segment_round_trips_through_json(segments, videos):
    for segment in plan_segments(videos["vfr with gaps"], 7, 4, segments):
        data = json.loads(json.dumps(segment.to_dict()))
        assert Segment.from_dict(data) == segment


def test_one_segment_is_the_single_pass(videos):
    (segment,) = plan_segments(videos["cfr 30fps, B-frames"], 5, 4, 1)
    assert segment.whole and segment.reason == "" and segment.frames == ()
    assert (segment.first_task, segment.last_task, segment.first_sample) == (1, 7, 0)
    source = open_segment(videos["cfr 30fps, B-frames"], segment)
    try:
        assert isinstance(source, VideoSource)
    finally:
        source.close()


def raw_h264(folder: Path) -> Path:
    return encode(folder / "raw.h264", list(range(60)), Fraction(1, 30), fmt="h264")


def truncated(folder: Path) -> Path:
    path = encode(folder / "trunc.mp4", list(range(300)), Fraction(1, 30),
                  container_options={"movflags": "+faststart"})
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the index (moov) first: opens, ends early
    return path


@pytest.mark.parametrize("make,reasons", [
    (raw_h264, ["packets without timestamps"]),
    (truncated, ["damaged packet", "cannot be read", "(truncated)"]),
])
def test_forced_single_segment(make, reasons, tmp_path):
    """Where the scan cannot promise the single pass's numbering (or its error),
    the plan is the single pass."""
    path = make(tmp_path)
    (segment,) = plan_segments(path, 5, 4, 3)
    assert segment.whole and any(reason in segment.reason for reason in reasons)
    assert (segment.first_task, segment.first_sample, segment.frames) == (1, 0, ())


@pytest.mark.parametrize("kwargs,message", [
    ({"segments": 0}, "segments"), ({"segments": -2}, "segments"),
    ({"frame_rate": 0}, "frame_rate"), ({"frames_per_task": 0}, "frames_per_task"),
])
def test_bad_arguments(kwargs, message, videos):
    arguments = {"frame_rate": 5, "frames_per_task": 4, "segments": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        plan_segments(videos["cfr 30fps, B-frames"], **arguments)


def test_not_a_video_fails_like_a_single_pass(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ContentError) as planned:
        plan_segments(path, 5, 4, 2)
    with pytest.raises(ContentError) as single:
        VideoSource(path)
    assert planned.value.code == single.value.code == "not_a_video"


@pytest.mark.parametrize("data", [{}, {"format": 99}, {"format": 1, "number": 1}])
def test_from_dict_refuses_bad_data(data):
    with pytest.raises(ValueError):
        Segment.from_dict(data)


# --- cutting segments ------------------------------------------------------------------

def settings(rate: int, per_task: int) -> PipelineSettings:
    return PipelineSettings(frame_rate=rate, frames_per_task=per_task, keep_frames=True)


def collect(events) -> tuple[list[TaskOutput], list[float]]:
    tasks, progress = [], []
    for event in events:
        if isinstance(event, TaskOutput):
            tasks.append(event)
        elif isinstance(event, Progress):
            progress.append(event.fraction)
    return tasks, progress


def single_pass(path: Path, out: Path, rate: int, per_task: int) -> list[TaskOutput]:
    source = VideoSource(path)
    try:
        layout = OutputLayout(out / "clips", out / "frames", source.info.name)
        return collect(run_pipeline(source, settings(rate, per_task), layout))[0]
    finally:
        source.close()


def described(tasks: list[TaskOutput], root: Path) -> list[tuple]:
    """Everything a task output says, with paths relative to its layout."""
    return [(t.number, t.clip_path.relative_to(root),
             [(f.frame_id, f.source_index, f.timestamp, f.image_path.relative_to(root))
              for f in t.frames]) for t in sorted(tasks, key=lambda t: t.number)]


CUTS = [
    # video, frame rate, frames per task, segments
    ("cfr 30fps, B-frames", 5, 3, 1),
    ("cfr 30fps, B-frames", 5, 3, 2),
    ("cfr 30fps, B-frames", 7, 4, 3),
    ("cfr 30fps, B-frames", 30, 20, 4),
    ("cfr 30fps, no B-frames", 7, 3, 2),
    ("cfr 30fps, no B-frames", 60, 25, 3),
    ("29.97fps", 5, 3, 3),
    ("29.97fps", 7, 4, 4),
    ("vfr with gaps", 5, 3, 2),
    ("vfr with gaps", 10, 4, 4),
    ("first pts 30 s", 7, 3, 3),
    ("open GOP", 10, 5, 4),
    ("rotated 90", 5, 2, 2),
    ("cfr 30fps, B-frames", 2, 5, 4),  # more segments than tasks (2)
    ("matroska 30fps, B-frames", 30, 20, 4),
    ("matroska 30fps, B-frames", 7, 3, 3),
]


@pytest.mark.parametrize("name,rate,per_task,segments", CUTS)
def test_segments_cut_like_the_single_pass(name, rate, per_task, segments, videos, tmp_path):
    path = videos[name]
    reference = single_pass(path, tmp_path / "single", rate, per_task)
    plan = plan_segments(path, rate, per_task, segments)
    out = tmp_path / "segments"
    layout = OutputLayout(out / "clips", out / "frames", path.stem)
    assert len(plan) == 1 or any(s.seek_pts is not None for s in plan)  # really seeks
    order = list(plan)
    random.Random(segments).shuffle(order)  # any order: each segment stands alone
    tasks = []
    for segment in order:
        segment = Segment.from_dict(json.loads(json.dumps(segment.to_dict())))  # as a job gets it
        cut, progress = collect(run_segment(path, segment, settings(rate, per_task), layout))
        assert [t.number for t in cut] == list(range(segment.first_task, segment.last_task + 1))
        assert progress == sorted(progress) and progress[-1] == 1.0
        tasks += cut
    assert described(tasks, out) == described(reference, tmp_path / "single")
    unrotate = 1 if name == "rotated 90" else 0
    for ours, theirs in zip(sorted(tasks, key=lambda t: t.number), reference):
        shown = clip_barcodes(ours.clip_path, unrotate=unrotate)
        assert shown == clip_barcodes(theirs.clip_path, unrotate=unrotate)
        assert shown == [f.source_index for f in theirs.frames]
        for mine, single in zip(ours.frames, theirs.frames):
            assert mine.image_path.read_bytes() == single.image_path.read_bytes()
    assert not list(out.rglob("*.part"))


def test_a_retried_segment_skips_its_finished_tasks(videos, tmp_path):
    path = videos["29.97fps"]
    second = plan_segments(path, 5, 3, 2)[1]
    layout = OutputLayout(tmp_path / "clips", tmp_path / "frames", path.stem)
    done = frozenset({second.first_task})
    tasks, _ = collect(run_segment(path, second, settings(5, 3), layout, done))
    assert [t.number for t in tasks] == list(range(second.first_task + 1, second.last_task + 1))


def test_run_pipeline_refuses_a_start_inside_a_task(videos, tmp_path):
    source = VideoSource(videos["cfr 30fps, B-frames"])
    try:
        layout = OutputLayout(tmp_path / "clips", None, "v")
        with pytest.raises(ValueError, match="first_sample"):
            next(run_pipeline(source, settings(5, 4), layout, first_sample=6))
    finally:
        source.close()


def test_settings_must_be_the_plans(videos, tmp_path):
    segment = plan_segments(videos["cfr 30fps, B-frames"], 5, 4, 2)[1]
    layout = OutputLayout(tmp_path / "clips", None, "v")
    with pytest.raises(ValueError, match="frame_rate"):
        next(run_segment(videos["cfr 30fps, B-frames"], segment, settings(5, 5), layout))


def test_a_frame_the_decoder_does_not_give_is_a_mismatch(videos, tmp_path):
    path = videos["cfr 30fps, B-frames"]
    segment = plan_segments(path, 5, 4, 2)[1]
    (index, pts), *rest = segment.frames
    wrong = replace(segment, frames=((index, pts + 1), *rest))  # between two frames
    layout = OutputLayout(tmp_path / "clips", tmp_path / "frames", path.stem)
    with pytest.raises(SegmentMismatch):
        collect(run_segment(path, wrong, settings(5, 4), layout))
    assert not list(tmp_path.rglob("*.mp4"))


def segment_frames(path: Path, segment: Segment) -> list[tuple[int, Fraction, bytes]]:
    source = SegmentSource(path, segment)
    try:
        return [(f.index, f.timestamp, f.frame.to_ndarray(format="yuv420p").tobytes())
                for f in source.frames()]
    finally:
        source.close()


@pytest.mark.parametrize("seek", ["an earlier keyframe", "before the file", "the start"])
def test_a_seek_elsewhere_gives_the_same_frames(seek, videos):
    """A seek that lands early (an index by pts) costs time only; one that cannot
    land at or before the planned keyframe falls back to decoding from the start."""
    path = videos["open GOP"]
    segment = plan_segments(path, 10, 5, 3)[2]
    keys = scan_packets(path).keys
    earlier = keys[keys.index((segment.seek_pts, segment.seek_dts)) - 1]
    target = {"an earlier keyframe": earlier, "before the file": (-10 ** 9, -10 ** 9),
              "the start": (None, None)}[seek]
    moved = replace(segment, seek_pts=target[0], seek_dts=target[1])
    assert segment_frames(path, moved) == segment_frames(path, segment)


def test_a_replaced_file_is_refused(videos, tmp_path):
    segment = plan_segments(videos["cfr 30fps, B-frames"], 5, 4, 2)[1]
    other = encode(tmp_path / "other.mp4", list(range(40)), Fraction(1, 30))
    with pytest.raises(SegmentMismatch, match="not the file"):
        SegmentSource(other, segment)


def test_outputs_removed_mid_run_are_not_made_again(videos, tmp_path):
    """A stalled job's watchdog discards its outputs while the pipeline's other
    stages may still run: they must fail, not bring the folders back."""
    path = videos["cfr 30fps, B-frames"]
    layout = OutputLayout(tmp_path / "clips", tmp_path / "frames", path.stem)
    model_hangs = threading.Event()

    def annotate(frames: list) -> list:  # hangs until the outputs are gone
        model_hangs.wait(30)
        return [[] for _ in frames]

    source = VideoSource(path)
    events = run_pipeline(source, replace(settings(30, 4), annotate=annotate), layout)
    try:
        next(events)  # a Progress: the stages run
        wait_for(lambda: any(layout.frame_dir.rglob("*.jpg")), 10, "the first JPEGs")
        shutil.rmtree(layout.clip_dir)
        shutil.rmtree(layout.frame_dir)
        model_hangs.set()  # the other stages go on writing
        with pytest.raises(OSError):
            collect(events)
    finally:
        source.close()
    assert not layout.clip_dir.exists() and not layout.frame_dir.exists()
