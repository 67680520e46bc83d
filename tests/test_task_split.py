"""Tasks that follow shots and still frames left out (processors/task_split.py),
through the real pipeline on a generated edit with exact ground truth: hard
cuts, short shots, a fade, then a fixed camera where nothing moves for
seconds before a small box enters. One pass, segments cut in any order and a
resumed run that skips staged tasks give the same tasks; clips read back."""
from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import av
import pytest
from shot_scenes import cuts_scene, encode, still_scene

from processors.pipeline import OutputLayout, PipelineSettings, TaskOutput, run_pipeline
from processors.segment_plan import Segment, plan_segments, run_segment
from processors.video_source import VideoSource

RATE, PER_TASK, MIN_SHOT = 10, 12, 3  # 30 fps source: every 3rd frame sampled
SHOTS = PipelineSettings(frame_rate=RATE, frames_per_task=PER_TASK,
                         detect_shots=True, task_split="shots",
                         min_shot_frames=MIN_SHOT)
STILL = PipelineSettings(frame_rate=RATE, frames_per_task=PER_TASK, detect_shots=True,
                         skip_still=True)
BOTH = replace(SHOTS, skip_still=True)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """(video, ground truth): cuts_scene's 8 shots, then still_scene's fixed camera."""
    path = tmp_path_factory.mktemp("split") / "edit.mp4"
    return path, encode(path, cuts_scene() + still_scene(quiet=90))


def one_pass(path: Path, out: Path, settings: PipelineSettings,
             skip: frozenset[int] = frozenset()) -> list[TaskOutput]:
    source = VideoSource(path)
    try:
        layout = OutputLayout(out / "clips", out / "frames", path.stem)
        return [e for e in run_pipeline(source, settings, layout, skip)
                if isinstance(e, TaskOutput)]
    finally:
        source.close()


def described(tasks: list[TaskOutput]) -> list[tuple]:
    """What a task output says, its paths aside."""
    return [(t.number, t.label, t.next, t.left_out, t.cuts, t.cut_ends, t.last_sample,
             t.clip_path.name,
             [(f.frame_id, f.source_index, f.timestamp, f.image_path.name) for f in t.frames])
            for t in sorted(tasks, key=lambda t: t.number)]


def clip_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def samples_of(path: Path, tmp_path: Path) -> list[int]:
    """Every sampled source frame (fixed tasks, nothing left out)."""
    fixed = one_pass(path, tmp_path / "fixed", PipelineSettings(RATE, PER_TASK,
                                                                keep_frames=False))
    return [f.source_index for t in fixed for f in t.frames]


def test_task_clips_never_span_a_cut_but_short_shots(scene, tmp_path):
    path, truth = scene
    samples = samples_of(path, tmp_path)
    tasks = one_pass(path, tmp_path / "shots", SHOTS)
    cuts = {c for t in tasks for c in t.cuts}
    position = {frame: i for i, frame in enumerate(samples)}
    for cut in truth.expected_cuts(samples):  # every hard cut is found...
        assert cut in cuts
    fades = [(a, b) for a, b in truth.fades]
    hard = set(truth.expected_cuts(samples))
    assert all(c in hard or any(a - 3 <= c <= b + 3 for a, b in fades) for c in cuts)
    held = [f.source_index for t in tasks for f in t.frames]
    assert held == samples  # ...and no sampled frame is lost or doubled
    starts = {t.frames[0].source_index for t in tasks}
    for t in tasks:
        first = position[t.frames[0].source_index]
        assert first % PER_TASK == 0 or t.frames[0].source_index in cuts  # grid line or cut
        assert first // PER_TASK == position[t.frames[-1].source_index] // PER_TASK  # one cell
        assert t.number == first + 1
        cell = first // PER_TASK + 1
        assert t.label == str(cell) or t.label.startswith(f"{cell}.")
        assert clip_frames(t.clip_path) == len(t.frames)
        for f in t.frames[1:]:  # a cut inside a task: the shot before it is short
            if f.source_index in cuts:
                assert position[f.source_index] - first < MIN_SHOT
    assert cuts - starts  # the short shots of the scene were gathered...
    assert len(tasks) > len({position[s] // PER_TASK for s in samples})  # ...and cuts split
    assert [t.next for t in tasks[:-1]] == [t.number for t in tasks[1:]]


def test_still_frames_are_left_out_and_no_change_is(scene, tmp_path):
    path, truth = scene
    samples = samples_of(path, tmp_path)
    tasks = one_pass(path, tmp_path / "still", STILL)
    kept = [f.source_index for t in tasks for f in t.frames]
    left_out = sorted(set(samples) - set(kept))
    assert sum(t.left_out for t in tasks) == len(left_out) == len(samples) - len(kept)
    last_kept, stills, lost = None, 0, []
    for frame in samples:
        if last_kept is not None and truth.shot_of[frame] == truth.shot_of[last_kept]:
            change = truth.change(frame, last_kept)
            stills += change == "still"
            if change == "changed" and frame in left_out:
                lost.append(frame)
        if frame not in left_out:
            last_kept = frame
    assert not lost  # a frame where anything moved or appeared is kept
    assert len(left_out) >= 0.8 * stills > 0  # most still frames go (figures: bench_shots)
    for t in tasks:  # kept frames keep their true place and time, clips hold only them
        assert [f.frame_id for f in t.frames] == list(range(1, len(t.frames) + 1))
        assert all(f.timestamp == pytest.approx(f.source_index / 30) for f in t.frames)
        assert clip_frames(t.clip_path) == len(t.frames)
        assert len(list(t.frames[0].image_path.parent.iterdir())) == len(t.frames)


@pytest.mark.parametrize("settings", [SHOTS, BOTH], ids=["shots", "shots+still"])
def test_segments_and_a_resumed_run_place_frames_like_one_pass(scene, settings, tmp_path):
    path, _ = scene
    reference = one_pass(path, tmp_path / "one", settings)
    plan = plan_segments(path, RATE, PER_TASK, 3)
    assert len(plan) == 3 and any(s.seek_pts is not None for s in plan)
    layout = OutputLayout(tmp_path / "seg" / "clips", tmp_path / "seg" / "frames", path.stem)
    cut = []
    for segment in random.Random(7).sample(plan, len(plan)):  # any order
        segment = Segment.from_dict(json.loads(json.dumps(segment.to_dict())))
        cut += [e for e in run_segment(path, segment, settings, layout)
                if isinstance(e, TaskOutput)]
    assert described(cut) == described(reference)
    staged = frozenset(t.number for t in reference[::2])  # a run killed after these
    resumed = one_pass(path, tmp_path / "resumed", settings, staged)
    assert described(resumed) == described([t for t in reference if t.number not in staged])
