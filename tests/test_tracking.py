"""Tracks: the auto boxes of one object share a trackId over all sampled frames of
a video upload, across its task clips, whether cut in one pass or in segments;
re-annotating replaces only that version's tracks.

The tracker itself is scored with motmetrics on a generated scene with known
tracks and a noisy detector (tests/tracking_scene.py).
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import AUTH_KEY, service_env, wait_for
from dataset_data import HEIGHT, WIDTH, box, make_task, make_version
from progressive_reader import Reader, kill_job_mid_run
from queue_fixtures import celery_workers, needs_redis, redis_server  # noqa: F401
from test_annotation import (  # noqa: F401
    aa_client,
    model_dirs,
    post_aa,
    run_all,
    square_video,
    versions_env,
)
from test_datasets import build_here
from test_recovery import start_executor
from tracking_scene import (
    astronaut_pan,
    colour_detector,
    detect,
    render_scene,
    sampled,
    score,
    tracked,
)

from annotation.tracking import TrackBox, TrackerSettings, assign_tracks, parse_tracker
from config import load_config
from jobs.dataset import dataset_dir


def test_the_noisy_scene_at_5_fps():
    """Seven objects, two same-class crossings, a one-second occlusion, edges;
    10 % of boxes missed, jitter, false boxes, three detector runs. The issue's
    target for the default tracker: IDF1 >= 0.95 (the figures per tracker and
    rate, over more runs, are in BENCHMARKS.md: bench/bench_tracking.py)."""
    frames = sampled(5)
    runs = [score(frames, *tracked([detect(frame, seed=seed) for frame in frames], 5))[0]
            for seed in range(3)]
    assert sorted(m["idf1"] for m in runs)[1] >= 0.95, runs
    assert all(m["idf1"] >= 0.94 and m["mota"] >= 0.95 for m in runs), runs
    assert sum(m["switches"] for m in runs) == 0, runs


def test_short_gaps_are_filled_and_long_ones_left():
    """A box missed between two is interpolated; an object hidden longer than
    fill_seconds is not given boxes where nobody saw it."""
    def at(i: int) -> TrackBox:
        return TrackBox("car", 10 * i, 5, 20, 10, 0.9 - i / 100)

    frames = [[at(i)] if i not in (3, 7, 8, 9, 10) else [] for i in range(14)]
    boxes, tracks = tracked(frames, 5)  # 0.5 s at 5 fps: gaps of up to 2 samples
    assert [len(row) for row in boxes] == [1] * 7 + [0] * 4 + [1] * 3
    assert boxes[3] == [TrackBox("car", 30, 5, 20, 10, 0.86)] and tracks[3] == [1]
    assert {track for row in tracks for track in row} == {1}


def test_the_same_boxes_give_the_same_tracks():
    """Ids are renumbered by first appearance: the library's process-wide counter
    (advanced by earlier runs in this process) does not leak into them."""
    frames = sampled(5)
    boxes = [detect(frame, seed=3) for frame in frames]
    first = assign_tracks(boxes, 5)
    assign_tracks([detect(frame, seed=4) for frame in frames], 5)  # moves the counter
    assert assign_tracks(boxes, 5) == first
    seen = [track for row in first for track in row if track is not None]
    assert sorted(set(seen)) == list(range(1, len(set(seen)) + 1))
    assert seen[0] == 1


def test_a_track_lost_at_a_turn_is_joined_to_its_continuation():
    """A small box that reverses between two samples overlaps nothing the tracker
    predicts, so a new track starts where the old one ended: they are joined.
    A box of the same label far away is not joined; nor is one with join_reach 0."""
    path = [(100 + 16 * i, 50) for i in range(6)] + [(164 - 16 * i, 50) for i in range(6)]
    frames = [[TrackBox("person", x, y, 20, 40, 0.9)] for x, y in path]
    far = frames[:6] + [[TrackBox("person", 400, 300, 20, 40, 0.9)]] * 6
    assert assign_tracks(frames, 5, TrackerSettings(join_reach=0))[-1] == [2]
    assert {row[0] for row in assign_tracks(frames, 5)} == {1}
    assert assign_tracks(far, 5)[-1] == [2]


def test_a_shot_boundary_ends_every_track():
    """A car parked at one place on both sides of a cut: two tracks; nor is a
    track lost just before the cut joined to one starting after it."""
    frames = [[TrackBox("car", 100, 50, 40, 20, 0.9)] for _ in range(10)]
    cut = [i == 5 for i in range(10)]
    assert {row[0] for row in assign_tracks(frames, 5)} == {1}
    assert [row[0] for row in assign_tracks(frames, 5, new_shots=cut)] == [1] * 5 + [2] * 5
    gap = frames[:4] + [[]] + frames[5:]
    assert [row[0] for row in assign_tracks(gap, 5) if row] == [1] * 9
    assert [row[0] for row in assign_tracks(gap, 5, new_shots=cut) if row] == [1] * 4 + [2] * 5


def test_two_classes_never_share_a_track():
    """A car and a person on the very same spot: two tracks."""
    frames = [[TrackBox("car", 10 + 4 * i, 10, 40, 40, 0.9),
               TrackBox("person", 10 + 4 * i, 10, 40, 40, 0.9)] for i in range(10)]
    tracks = assign_tracks(frames, 5)
    assert all(row == [1, 2] for row in tracks[1:]), tracks
    assert assign_tracks(frames, 5, TrackerSettings(kind="none")) == [[None, None]] * 10


@pytest.mark.parametrize("value, expected", [
    (None, TrackerSettings()),
    ("none", TrackerSettings(kind="none")),
    ("sort", TrackerSettings(kind="sort")),
    ("bytetrack", TrackerSettings(kind="bytetrack")),
    ({"type": "bytetrack", "lost_seconds": 3, "min_iou": 0.2},
     TrackerSettings(kind="bytetrack", lost_seconds=3.0, min_iou=0.2)),
    ({"lost_seconds": 1}, TrackerSettings(lost_seconds=1.0)),
    ("kalman", "must be one of"),
    ({"type": "sort", "speed": 2}, "unknown fields"),
    ({"min_iou": 2}, "between 0 and 1"),
    ({"lost_seconds": -1}, ">= 0"),
    ({"high_score": True}, "must be a number"),
    ({"fill_seconds": 1}, TrackerSettings(fill_seconds=1.0)),
    ({"join_reach": 0}, TrackerSettings(join_reach=0.0)),
    ({"fill_seconds": -0.5}, ">= 0"),
    (7, "must be one of"),
])
def test_tracker_settings_from_model_json(value, expected):
    if isinstance(expected, TrackerSettings):
        assert parse_tracker(value) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_tracker(value)


def auto_boxes(mongo, upload_id: str = "u1") -> list[tuple[int, int, dict]]:
    """(task number, frame id, box) of every auto box, in sample order."""
    found = []
    for number, task in enumerate(mongo.frames.tasks_of(upload_id), 1):
        for frame in mongo.frames.frames_of(task["_id"]):
            found += [(number, frame["frameId"], box) for box in frame["boxes"]
                      if box["source"].startswith("auto:")]
    return found


def test_one_object_keeps_one_track_across_task_clips(aa_client, versions_env, mongo,
                                                       contents):
    square_video(contents / "uploads" / "sq.mp4", 20)  # 2 task clips of 10 frames
    assert post_aa(aa_client).status_code == 202
    run_all(versions_env)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload["errorMessage"]
    boxes = auto_boxes(mongo)
    assert len({number for number, _, _ in boxes}) == 2 and len(boxes) >= 18
    assert {box["trackId"] for _, _, box in boxes} == {1}
    assert upload["tracks"] == {"square": 1}
    assert "tracking" in upload["timings"]["stages"]
    status = aa_client.get("/api/processContent/u1", headers={"X-Auth-Key": AUTH_KEY})
    assert status.json["tracks"] == {"square": 1}


def test_segments_give_the_single_pass_tracks(aa_client, versions_env, mongo, contents):
    """Cut in one pass and in segments by several job runs: the same ids on the
    same boxes (the tracker runs over the staged boxes just before the commit)."""
    square_video(contents / "uploads" / "sq.mp4", 60)
    assert post_aa(aa_client, upload_id="one").status_code == 202
    run_all(versions_env)
    assert post_aa(aa_client, upload_id="seg").status_code == 202
    run_all({**versions_env, "PROCESSING_SEGMENT_SECONDS": "2"})
    assert mongo.uploads.get_upload("seg")["timings"].get("segments", 0) >= 2
    one, seg = auto_boxes(mongo, "one"), auto_boxes(mongo, "seg")
    key = [(n, f, round(b["x"], 1), round(b["y"], 1), b["trackId"]) for n, f, b in one]
    assert key == [(n, f, round(b["x"], 1), round(b["y"], 1), b["trackId"]) for n, f, b in seg]


def test_re_annotating_replaces_that_versions_tracks_only(aa_client, versions_env, mongo,
                                                         contents):
    square_video(contents / "uploads" / "sq.mp4", 20)
    post_aa(aa_client)
    run_all(versions_env)
    task = mongo.frames.tasks_of("u1")[0]
    frame = mongo.frames.frames_of(task["_id"])[0]
    user_box = {"id": "u-1", "label": "square", "x": 1, "y": 2, "w": 3, "h": 4,
                "confidence": 1.0, "source": "user", "trackId": 77}
    mongo.collections.frames.update_one({"_id": frame["_id"]}, {"$push": {"boxes": user_box}})
    before = {box["id"] for _, _, box in auto_boxes(mongo)}
    assert post_aa(aa_client, request_type=2, content_path=None,
                   frame_rate=None).status_code == 202
    run_all(versions_env)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1 and upload["tracks"] == {"square": 1}
    boxes = auto_boxes(mongo)
    assert not {box["id"] for _, _, box in boxes} & before  # the version's boxes replaced
    assert {box["trackId"] for _, _, box in boxes} == {1}
    assert user_box in mongo.collections.frames.find_one({"_id": frame["_id"]})["boxes"]


def test_the_built_in_face_model_tracks_a_pan_across_the_astronaut(env, mongo, contents):
    """A real photo, panned: the face is one track over both task clips."""
    from app import create_app
    astronaut_pan(contents / "uploads" / "pan.mp4")
    client = create_app(load_config(env=env)).test_client()  # version 1 is in config.cfg
    assert post_aa(client, content_path="uploads/pan.mp4", auto_anno_version=1,
                   frame_rate=5).status_code == 202
    run_all(env)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload["errorMessage"]
    boxes = auto_boxes(mongo)
    assert len({number for number, _, _ in boxes}) == 2 and len(boxes) >= 14
    assert {box["label"] for _, _, box in boxes} == {"face"}
    assert {box["trackId"] for _, _, box in boxes} == {1} and upload["tracks"] == {"face": 1}


def test_mot_and_coco_exports_carry_the_stored_tracks(config, mongo, contents):
    """Two task clips of one upload: a car tracked across both, a person in the
    second, a user box with the tool's own trackId, a box with no track."""
    def tracked(label, x, track, source="auto:v2"):
        return {**box(label, x, 4, 10, 8, source=source), "trackId": track}

    first = [[tracked("car", 2 + k, 1)] for k in range(3)]
    second = [[tracked("car", 5 + k, 1), tracked("person", 30, 2),
               tracked("car", 40, 1, source="user"), box("person", 50, 30, 6, 6)]
              for k in range(2)]
    make_task(mongo, contents, "u1", 1, first, first_source=0)
    make_task(mongo, contents, "u1", 2, second, first_source=18)
    mongo.collections.tasks.update_many({"uploadId": "u1"}, {"$set": {"frameRate": 5}})
    version = make_version(mongo, exportFormats=["YOLO", "COCO", "MOT"],
                           splitCount=[{"type": "train", "percentage": 100}])
    assert build_here(config, mongo, version)["status"] == 1
    root = dataset_dir(contents, version) / "mot" / "u1-s0"  # no shots recorded: one
    info = dict(line.split("=", 1) for line in (root / "seqinfo.ini").read_text().splitlines()
                if "=" in line)
    assert info == {"name": "u1-s0", "imDir": "img1", "frameRate": "5", "seqLength": "5",
                    "imWidth": str(WIDTH), "imHeight": str(HEIGHT), "imExt": ".jpg"}
    assert sorted(p.name for p in (root / "img1").iterdir()) == \
        [f"{n:06d}.jpg" for n in range(1, 6)]
    rows = [line.split(",") for line in (root / "gt" / "gt.txt").read_text().splitlines()]
    by_frame = {}
    for frame, track, x, *_rest, cls, _visibility in rows:
        by_frame.setdefault(int(frame), []).append((int(track), float(x), int(cls)))
    assert [len(by_frame[n]) for n in range(1, 6)] == [1, 1, 1, 4, 4]
    car = {track for n in range(1, 6) for track, _, cls in by_frame[n][:1]}
    assert car == {1}  # one id over both task clips, frames in sample order
    assert [x for n in range(1, 6) for _, x, _ in by_frame[n][:1]] == [2, 3, 4, 5, 6]
    person, user_car = {by_frame[n][1][0] for n in (4, 5)}, {by_frame[n][2][0] for n in (4, 5)}
    untracked = [by_frame[n][3][0] for n in (4, 5)]
    assert person == {2} and user_car == {3}  # the user's track 1 is another object
    assert len(set(untracked)) == 2 and not set(untracked) & {1, 2, 3}
    coco = json.loads((dataset_dir(contents, version) / "annotations" / "train.json").read_text())
    assert sorted(image["frame_index"] for image in coco["images"]) == list(range(5))
    assert {image["video"] for image in coco["images"]} == {"u1"}
    assert {image["shot"] for image in coco["images"]} == {0}
    tracks = Counter(a.get("track_id") for a in coco["annotations"])
    assert tracks == Counter({1: 5, 2: 2, 3: 2, None: 2})


def test_a_run_killed_mid_video_resumes_to_the_same_tracks(versions_env, mongo, contents,
                                                           scene_model):
    """kill -9 of the job process while it cuts and annotates the scene: the
    resumed run links the same boxes into the same tracks as a run never killed."""
    from app import create_app
    render_scene(contents / "uploads" / "scene.mp4")
    env = {**versions_env, "ANNOTATION_VERSION_9": str(scene_model)}
    client = create_app(load_config(env=env)).test_client()
    post = {"content_path": "uploads/scene.mp4", "auto_anno_version": 9, "frame_rate": 30}
    assert post_aa(client, upload_id="ref", **post).status_code == 202  # 36 task clips
    run_all(env)
    executor = start_executor({**env, "PROCESSING_WORKERS": "1"})
    reader = Reader(mongo, 36)  # published tasks and their track ids never change
    kill_job_mid_run(mongo, executor, reader, staged=3, total=36, start=lambda: (
        post_aa(client, **post).status_code == 202 or pytest.fail("not accepted")))
    assert sum(1 for _, frames in reader.seen.values() for frame in frames
               for box in frame["boxes"] if "trackId" in box) > 100
    assert mongo.jobs.get_job("processContent:u1")["attempts"] == 2
    ref, resumed = auto_boxes(mongo, "ref"), auto_boxes(mongo, "u1")
    assert len({box["trackId"] for _, _, box in ref}) >= 7
    assert [(n, f, round(b["x"], 1), b["trackId"]) for n, f, b in resumed] == \
        [(n, f, round(b["x"], 1), b["trackId"]) for n, f, b in ref]
    assert mongo.uploads.get_upload("u1")["tracks"] == mongo.uploads.get_upload("ref")["tracks"]


@needs_redis
def test_celery_workers_cutting_segments_give_the_single_pass_tracks(
        versions_env, mongo, contents, redis_server, celery_workers, scene_model):
    """The scene's segments cut and annotated by two real Celery workers (started
    as the README says): the same tracks as one pass in one process."""
    from app import create_app
    render_scene(contents / "uploads" / "scene.mp4")
    env = {**versions_env, "ANNOTATION_VERSION_9": str(scene_model)}
    post = {"content_path": "uploads/scene.mp4", "auto_anno_version": 9, "frame_rate": 5}
    assert post_aa(create_app(load_config(env=env)).test_client(), upload_id="one",
                   **post).status_code == 202
    run_all(env)
    env = {**env, "QUEUE_BROKER_URL": redis_server.url, "PROCESSING_SEGMENT_SECONDS": "3",
           "QUEUE_SWEEP_SECONDS": "0.5"}
    for name in ("a", "b"):
        celery_workers(name, "cut,annotate", service_env(env))
    client = create_app(load_config(env=env)).test_client()
    assert post_aa(client, upload_id="seg", **post).status_code == 202
    wait_for(lambda: (mongo.uploads.get_upload("seg") or {}).get("status") in (1, 2), 120,
             "the segmented upload to end")
    upload = mongo.uploads.get_upload("seg")
    assert upload["status"] == 1 and upload["timings"]["segments"] == 4, upload
    one, seg = auto_boxes(mongo, "one"), auto_boxes(mongo, "seg")
    assert len({box["trackId"] for _, _, box in one}) >= 7
    assert [(n, f, round(b["x"], 1), b["trackId"]) for n, f, b in seg] == \
        [(n, f, round(b["x"], 1), b["trackId"]) for n, f, b in one]
@pytest.fixture(scope="module")
def scene_model(tmp_path_factory):
    return colour_detector(tmp_path_factory.mktemp("colours"))


def stored_tracks(mongo, upload_id: str) -> tuple[list[int], list[list], list[list]]:
    """The upload's sampled source frames, their auto boxes and track ids."""
    frames, boxes, tracks = [], [], []
    for task in mongo.frames.tasks_of(upload_id):
        for frame in mongo.frames.frames_of(task["_id"]):
            auto = [b for b in frame["boxes"] if b["source"].startswith("auto:")]
            frames.append(frame["sourceFrame"])
            boxes.append([TrackBox(b["label"], b["x"], b["y"], b["w"], b["h"], b["confidence"])
                          for b in auto])
            tracks.append([b["trackId"] for b in auto])
    return frames, boxes, tracks


def interpolated_flags(mongo, upload_id: str) -> list[list[bool]]:
    return [[bool(b.get("interpolated")) for b in frame["boxes"]
             if b["source"].startswith("auto:")]
            for task in mongo.frames.tasks_of(upload_id) for frame in mongo.frames.frames_of(task["_id"])]


def test_the_scene_as_a_video_through_the_service(versions_env, mongo, contents, scene_model):
    """The generated scene rendered (noise drawn in), cut into 6 task clips and
    annotated by an exact colour detector, in one pass and in 4 segments: the
    same tracks, the ids of one tracker run over the whole upload (clip edges
    play no part), IDF1 against the truth."""
    from app import create_app
    render_scene(contents / "uploads" / "scene.mp4")
    env = {**versions_env, "ANNOTATION_VERSION_9": str(scene_model)}
    client = create_app(load_config(env=env)).test_client()
    for upload_id, extra in (("one", {}), ("seg", {"PROCESSING_SEGMENT_SECONDS": "3"})):
        assert post_aa(client, upload_id=upload_id, content_path="uploads/scene.mp4",
                       auto_anno_version=9, frame_rate=5).status_code == 202
        run_all({**env, **extra})
        assert mongo.uploads.get_upload(upload_id)["status"] == 1
    assert mongo.uploads.get_upload("seg")["timings"]["segments"] == 4
    one, seg = stored_tracks(mongo, "one"), stored_tracks(mongo, "seg")
    assert [[(round(b.x, 1), t) for b, t in zip(*row)] for row in zip(one[1], one[2])] == \
        [[(round(b.x, 1), t) for b, t in zip(*row)] for row in zip(seg[1], seg[2])]
    metrics, _ = score(*one)
    assert metrics["idf1"] >= 0.85 and metrics["switches"] <= 2, metrics
    # Task clip edges play no part: the stored ids are those of one tracker run
    # over the upload's detected boxes in sample order (then its gaps filled).
    detected = [[(b, t) for b, t, interpolated in zip(*row) if not interpolated]
                for row in zip(one[1], one[2], interpolated_flags(mongo, "one"))]
    again = tracked([[b for b, _ in row] for row in detected], 5)
    assert again[1] == [[t for _, t in row] + fill[len(row):]
                        for row, fill in zip(detected, again[1])]
    assert mongo.uploads.get_upload("one")["tracks"] == {
        label: len({t for row_boxes, row_tracks in zip(one[1], one[2])
                    for b, t in zip(row_boxes, row_tracks) if b.label == label})
        for label in ("car", "person")}
