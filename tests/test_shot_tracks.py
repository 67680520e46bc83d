"""Shots through the service (issue 19): a generated video of four shots
joined by hard cuts, the same red car parked at one place in three of them,
cut and annotated by the exact colour detector (tests/tracking_scene.py).
The upload lists the shots of the ground truth, each task the shots it
holds, and no trackId holds boxes on both sides of a cut; one pass, segments
(one cut on a segment's first frame), a force_write rerun (tracked offline)
and a run killed with kill -9 and resumed all end the same; a dataset's MOT
export has one sequence per shot."""
from __future__ import annotations

import json
import re

import pytest
from conftest import AUTH_KEY
from progressive_reader import Reader, kill_job_mid_run
from shot_scenes import Mover, Shot, encode
from test_annotation import model_dirs, post_aa, run_all, versions_env  # noqa: F401
from test_datasets import build_here
from test_recovery import start_executor
from tracking_scene import COLOURS, colour_detector

from config import load_config
from jobs.dataset import dataset_dir

CAR, PERSON = COLOURS[0], COLOURS[4]  # the colour detector's "car" and "person"
PARKED = Mover(CAR, (40, 24), (140, 120))  # at the same place on both sides of cuts
WALKER = Mover(PERSON, (16, 32), (20, 40), (3.0, 0.5))
SHOTS = [Shot(60, 31, movers=(PARKED, WALKER), muted=True),
         Shot(45, 32, movers=(PARKED,), muted=True),
         Shot(30, 33, movers=(Mover(PERSON, (16, 32), (200, 60)),), muted=True),
         Shot(105, 34, movers=(PARKED, WALKER), muted=True)]
# 240 frames at 30 fps, 4 task clips of 10 samples at 5 fps: the cut at 60 is
# the first frame of task 2 (and of segment 2, with 2 s segments).
STARTS_5FPS = [0, 60, 108, 138]


@pytest.fixture(scope="module")
def scene_model(tmp_path_factory):
    return colour_detector(tmp_path_factory.mktemp("colours"))


@pytest.fixture
def shots_env(versions_env, contents, scene_model):
    truth = encode(contents / "uploads" / "shots.mp4", SHOTS)
    assert truth.hard_cuts == [60, 105, 135]
    return {**versions_env, "ANNOTATION_VERSION_9": str(scene_model)}


def post(client, upload_id: str, frame_rate: int = 5, **fields):
    return post_aa(client, upload_id=upload_id, content_path="uploads/shots.mp4",
                   auto_anno_version=9, frame_rate=frame_rate, **fields)


def boxes_of(mongo, upload_id: str) -> list[tuple[int, int, str, float, int]]:
    """(task number, source frame, label, x, trackId) of every auto box, in sample order."""
    found = []
    for number, task in enumerate(mongo.frames.tasks_of(upload_id), 1):
        for frame in mongo.frames.frames_of(task["_id"]):
            found += [(number, frame["sourceFrame"], b["label"], round(b["x"], 1), b["trackId"])
                      for b in frame["boxes"] if b["source"].startswith("auto:")]
    return found


def described(mongo, upload_id: str) -> list[tuple]:
    """Each task's name (the upload's aside), sampled frames and shots."""
    return [(t["taskName"].replace(upload_id, ""), t["original_frames"], t["shots"])
            for t in mongo.frames.tasks_of(upload_id)]


def shot_index(starts: list[int], source_frame: int) -> int:
    return max(i for i, start in enumerate(starts) if start <= source_frame)


def check_tracks(boxes: list[tuple], starts: list[int]) -> None:
    """No track on both sides of a cut; the parked car is a track per shot it is in."""
    shots_of: dict[int, set[int]] = {}
    for _, source, _, _, track in boxes:
        shots_of.setdefault(track, set()).add(shot_index(starts, source))
    assert all(len(shots) == 1 for shots in shots_of.values()), shots_of
    parked = {track for _, _, label, x, track in boxes if label == "car" and 130 <= x <= 150}
    assert len(parked) == 3, boxes


def test_a_resumed_pass_finds_the_cut_on_the_first_task_it_redoes(tmp_path):
    """The pipeline alone: tasks skipped (staged by a run that died) are decoded
    but not written; the frame before the first task redone is still shown to
    the shot detector, so the cut on that task's first frame is found."""
    from processors.pipeline import OutputLayout, PipelineSettings, TaskOutput, run_pipeline
    from processors.video_source import VideoSource
    encode(tmp_path / "shots.mp4", SHOTS)
    settings = PipelineSettings(frame_rate=5, frames_per_task=10, keep_frames=False,
                                detect_shots=True)

    def cuts(skip: frozenset[int]) -> dict[int, tuple[int, ...]]:
        source = VideoSource(tmp_path / "shots.mp4")
        try:
            layout = OutputLayout(tmp_path / f"clips-{sorted(skip)}", None, "shots")
            return {event.number: event.cuts for event in run_pipeline(source, settings, layout,
                                                                       skip)
                    if isinstance(event, TaskOutput)}
        finally:
            source.close()

    assert cuts(frozenset()) == {1: (), 2: (60, 108), 3: (138,), 4: ()}
    assert cuts(frozenset({1})) == {2: (60, 108), 3: (138,), 4: ()}
    assert cuts(frozenset({1, 2})) == {3: (138,), 4: ()}
    assert cuts(frozenset({1, 3})) == {2: (60, 108), 4: ()}


def test_one_pass_segments_and_a_rerun_find_the_same_shots_and_tracks(shots_env, mongo):
    from app import create_app
    client = create_app(load_config(env=shots_env)).test_client()
    for upload_id, extra in (("one", {}), ("seg", {"PROCESSING_SEGMENT_SECONDS": "2"})):
        assert post(client, upload_id).status_code == 202
        run_all({**shots_env, **extra})
        assert mongo.uploads.get_upload(upload_id)["status"] == 1
    assert mongo.uploads.get_upload("seg")["timings"]["segments"] == 4
    one = mongo.uploads.get_upload("one")
    assert [shot["start"] for shot in one["shots"]] == STARTS_5FPS
    assert one["shots"] == [{"start": 0, "end": 54, "startTime": 0.0},
                            {"start": 60, "end": 102, "startTime": 2.0},
                            {"start": 108, "end": 132, "startTime": 3.6},
                            {"start": 138, "end": 234, "startTime": 4.6}]
    assert one["stillFramesLeftOut"] == 0
    assert mongo.uploads.get_upload("seg")["shots"] == one["shots"]
    for upload_id in ("one", "seg"):
        assert [task["shots"] for task in mongo.frames.tasks_of(upload_id)] == \
            [[0], [1, 2], [2, 3], [3]]
    reference = boxes_of(mongo, "one")
    check_tracks(reference, STARTS_5FPS)
    assert boxes_of(mongo, "seg") == reference
    status = client.get("/api/processContent/one", headers={"X-Auth-Key": AUTH_KEY}).json
    assert status["shots"] == one["shots"] and status["stillFramesLeftOut"] == 0
    # Replacing the tasks: not progressive, tracked offline before the swap.
    assert post(client, "one", force_write=1).status_code == 202
    run_all(shots_env)
    assert mongo.uploads.get_upload("one")["shots"] == one["shots"]
    assert [b[1:] for b in boxes_of(mongo, "one")] == [b[1:] for b in reference]


def test_tasks_follow_the_shots_and_still_frames_are_left_out(shots_env, mongo, contents):
    """task_split "shots" and skip_still through the API (min_shot_frames 5):
    one pass and segments (a cut on a segment's first frame) make the same
    tasks; a cut 8 samples into a cell splits it (task-2.2), one 3 samples in
    is gathered (its shot is short); still frames (the parked car alone) are
    left out and counted; events number the tasks 1..n."""
    from app import create_app
    from event_receiver import events_env
    from test_events import outbox
    env = {**shots_env, **events_env("http://127.0.0.1:9/hooks")}  # recorded, not sent
    client = create_app(load_config(env=env)).test_client()
    for upload_id, extra in (("one", {}), ("seg", {"PROCESSING_SEGMENT_SECONDS": "2"})):
        assert post(client, upload_id, task_split="shots", skip_still=1).status_code == 202
        run_all({**env, **extra})
        assert mongo.uploads.get_upload(upload_id)["status"] == 1
    one, seg = mongo.uploads.get_upload("one"), mongo.uploads.get_upload("seg")
    assert seg["timings"]["segments"] == 4
    assert (one["task_split"], one["skip_still"], one["taskCount"]) == ("shots", 1, 5)
    tasks = mongo.frames.tasks_of("one")
    assert [t["taskName"].split("-")[1] for t in tasks] == ["1", "2", "2.2", "3", "4"]
    assert [t["shots"] for t in tasks] == [[0], [1], [2], [2, 3], [3]]
    starts = [shot["start"] for shot in one["shots"]]
    assert starts == STARTS_5FPS
    for task in tasks:  # a task spans a cut only after a short piece of a shot
        inside = [f for f in task["original_frames"][1:] if f in starts]
        assert all(task["original_frames"].index(f) < 5 for f in inside)
    kept = sum(t["frameCount"] for t in tasks)
    assert one["stillFramesLeftOut"] == 40 - kept >= 8  # 40 sampled; shot 1: the car alone
    assert described(mongo, "seg") == described(mongo, "one")
    assert (seg["shots"], seg["stillFramesLeftOut"]) == (one["shots"], one["stillFramesLeftOut"])
    check_tracks(boxes_of(mongo, "one"), STARTS_5FPS)
    assert boxes_of(mongo, "seg") == boxes_of(mongo, "one")
    for upload_id in ("one", "seg"):
        ready = [e["data"] for e in outbox(mongo, upload_id) if e["type"] == "upload.task_ready"]
        assert [(e["task_number"], e["task_name"]) for e in ready] == \
            [(n, t["taskName"]) for n, t in enumerate(mongo.frames.tasks_of(upload_id), 1)]
    status = client.get("/api/processContent/seg", headers={"X-Auth-Key": AUTH_KEY}).json
    assert status["stillFramesLeftOut"] == one["stillFramesLeftOut"]
    # Other parameters are another request: refused, then replaced with force_write.
    assert post(client, "one").status_code == 409
    assert post(client, "one", force_write=1).status_code == 202
    run_all(env)
    clips = contents / "tasks" / "p1" / "one"
    assert sorted(p.name for p in clips.iterdir()) == [f"task-{n}-shots.mp4" for n in range(1, 5)]
    assert mongo.uploads.get_upload("one")["stillFramesLeftOut"] == 0


def test_a_built_dataset_has_a_mot_sequence_per_shot(shots_env, mongo, make_config, contents):
    from app import create_app
    from dataset_data import make_version
    from intake.review import review_page
    client = create_app(load_config(env=shots_env)).test_client()
    assert post(client, "u1").status_code == 202
    run_all(shots_env)
    mongo.collections.tasks.update_many({"uploadId": "u1"}, {"$set": {"auditStatus": 1}})
    version = make_version(mongo, labels=["car", "person"], exportFormats=["COCO", "MOT"],
                           splitCount=[{"type": "train", "percentage": 100}])
    assert build_here(make_config(), mongo, version)["status"] == 1
    root = dataset_dir(contents, version)
    lengths = {}
    for k in range(4):
        info = (root / "mot" / f"u1-s{k}" / "seqinfo.ini").read_text()
        lengths[k] = int(info.split("seqLength=")[1].split()[0])
        assert len(list((root / "mot" / f"u1-s{k}" / "img1").iterdir())) == lengths[k]
    assert lengths == {0: 10, 1: 8, 2: 5, 3: 17}
    assert sorted(p.name for p in (root / "mot").iterdir()) == [f"u1-s{k}" for k in range(4)]
    coco = json.loads((root / "annotations" / "train.json").read_text())
    shots = sorted((image["frame_index"], image["shot"]) for image in coco["images"])
    assert [shot for _, shot in shots] == [0] * 10 + [1] * 8 + [2] * 5 + [3] * 17
    # The pictures show them: the version's health report counts the upload's
    # shots, and the upload's review page draws its cuts on the track timeline.
    report = (root / "report" / "index.html").read_text()
    assert re.search(r'id="shots">[^<]*u1: 4\b', report), report[:2000]
    assert "shots at the dashed ones" in review_page(mongo, "u1")


@pytest.mark.parametrize("fields", [{}, {"task_split": "shots", "skip_still": 1}],
                         ids=["fixed", "shots+still"])
def test_a_run_killed_mid_video_resumes_to_the_same_shots_and_tracks(shots_env, mongo, fields):
    """Every frame sampled (24 task clips of fixed tasks, 26 following shots);
    the kill comes after the task with the first cut was staged, so the
    resumed run skips it and must still know."""
    from app import create_app
    client = create_app(load_config(env=shots_env)).test_client()
    assert post(client, "ref", frame_rate=30, **fields).status_code == 202
    run_all(shots_env)
    ref = mongo.uploads.get_upload("ref")
    starts = [shot["start"] for shot in ref["shots"]]
    assert all(abs(a - b) <= 1 for a, b in zip(starts, [0, 60, 105, 135])) and len(starts) == 4
    total = ref["taskCount"]
    assert total == (26 if fields else 24)
    executor = start_executor({**shots_env, "PROCESSING_WORKERS": "1"})
    reader = Reader(mongo, total)  # published tasks and their track ids never change
    kill_job_mid_run(mongo, executor, reader, staged=8, total=total, start=lambda: (
        post(client, "u1", frame_rate=30, **fields).status_code == 202
        or pytest.fail("not accepted")))
    assert mongo.jobs.get_job("processContent:u1")["attempts"] == 2
    resumed = mongo.uploads.get_upload("u1")
    assert (resumed["shots"], resumed["stillFramesLeftOut"]) == \
        (ref["shots"], ref["stillFramesLeftOut"])
    assert (ref["stillFramesLeftOut"] > 0) == bool(fields)
    assert described(mongo, "u1") == described(mongo, "ref")
    check_tracks(boxes_of(mongo, "ref"), starts)
    assert boxes_of(mongo, "u1") == boxes_of(mongo, "ref")
