"""Shots on two real Celery workers (issue 19): a generated video of five shots
(three hard cuts, then a fade through black), auto-annotated by the exact
colour detector (tests/tracking_scene.py) at 5 fps with task_split "shots"
and skip_still 1, cut in five 2-second segments shared by two workers. The
upload's shots and left-out frames, each task's shots and frames, and every
box's trackId are those of a one-pass run of the same video and of the
ground truth; no trackId holds boxes on both sides of a boundary. The fade is one boundary inside it, at the first sample back above
the black level (processors/shots.py), and that sample is the first frame of
segment 5: only the black sample of its warm-up lets the segment see it."""
from __future__ import annotations

from conftest import AUTH_KEY, service_env
from queue_fixtures import celery_workers, needs_redis, redis_server, wait_for  # noqa: F401
from shot_scenes import Mover, Shot, encode
from test_annotation import post_aa, run_all
from test_celery import env, segment_claims  # noqa: F401  (env: conftest's with the broker)
from test_shot_tracks import boxes_of, scene_model, shot_index  # noqa: F401
from tracking_scene import COLOURS

from app import create_app
from config import load_config

pytestmark = needs_redis

CAR, PERSON = COLOURS[0], COLOURS[4]  # the colour detector's "car" and "person"
PARKED = Mover(CAR, (40, 24), (140, 120))  # at one place in four shots, the fade's two sides too
WALKER = Mover(PERSON, (16, 32), (20, 40), (3.0, 0.5))
FADE = 12  # frames to black, and as many back
SHOTS = [Shot(60, 31, movers=(PARKED, WALKER), muted=True),
         Shot(45, 32, movers=(PARKED,), muted=True),
         Shot(30, 33, movers=(Mover(PERSON, (16, 32), (200, 60)),), muted=True),
         Shot(99, 34, movers=(PARKED, WALKER), muted=True, fade_out=FADE),
         Shot(66, 35, movers=(PARKED,), muted=True, fade_in=FADE)]
# 300 frames at 30 fps, sampled every 6th: hard cuts at 60 (a task's and a
# segment's first frame), 105 and 135 are first sampled at 60, 108 and 138.
# Frames 233 and 234 are black; sample 234 is the only black one (228 and 240
# are at 5/12 and 6/12 of full light), so the fade's boundary is sample 240.
SHOTS_5FPS = [{"start": 0, "end": 54, "startTime": 0.0},
              {"start": 60, "end": 102, "startTime": 2.0},
              {"start": 108, "end": 132, "startTime": 3.6},
              {"start": 138, "end": 234, "startTime": 4.6},
              {"start": 240, "end": 294, "startTime": 8.0}]
# task_split "shots", skip_still 1, tasks of 10 samples (60 frames), min_shot_frames 5:
# (name, frameStart, frameEnd, original_frames, shots). The cut at 108 (8 samples
# into task 2) splits it; the one at 138 (3 into task 3) is gathered. Still
# frames (the parked car or the person alone) are left out: 18 of 50.
TASKS = [("1", 0, 54, list(range(0, 60, 6)), [0]),
         ("2", 60, 60, [60], [1]),
         ("2.2", 108, 108, [108], [2]),
         ("3", 120, 174, [120] + list(range(138, 180, 6)), [2, 3]),
         ("4", 180, 234, list(range(180, 240, 6)), [3]),
         ("5", 240, 246, [240, 246], [4])]


def tasks_of(mongo, upload_id: str) -> list[tuple]:
    return [(t["taskName"].split("-")[1], t["frameStart"], t["frameEnd"], t["original_frames"],
             t["shots"]) for t in mongo.frames.tasks_of(upload_id)]


def check_tracks(boxes: list[tuple], starts: list[int]) -> None:
    """No trackId on both sides of a boundary; the parked car (standing at one
    place on both sides of two cuts and of the fade) is one track per shot.
    In the fade the colour detector misses it for 3 samples (0.8 s), under the
    tracker's lost_seconds (2 s): only the boundary keeps it from one track."""
    shots_of: dict[int, set[int]] = {}
    for _, source, _, _, track in boxes:
        shots_of.setdefault(track, set()).add(shot_index(starts, source))
    assert all(len(shots) == 1 for shots in shots_of.values()), shots_of
    parked = {track for _, _, label, x, track in boxes if label == "car" and 130 <= x <= 150}
    assert sorted(shots_of[t].pop() for t in parked) == [0, 1, 3, 4], boxes


def test_two_celery_workers_cut_a_video_in_segments_to_the_one_pass_shots_and_tracks(
        env, mongo, contents, celery_workers, scene_model):
    truth = encode(contents / "uploads" / "shots.mp4", SHOTS)
    assert truth.hard_cuts == [60, 105, 135] and truth.fades == [(222, 246)]
    env = {**env, "ANNOTATION_VERSION_9": str(scene_model)}
    post = lambda client, upload_id: post_aa(  # noqa: E731
        client, upload_id=upload_id, content_path="uploads/shots.mp4", auto_anno_version=9,
        frame_rate=5, task_split="shots", skip_still=1)
    # One pass, in this process, before any worker runs: no broker, no segments.
    one_pass = {k: v for k, v in env.items() if not k.startswith("QUEUE_")}
    assert post(create_app(load_config(env=one_pass)).test_client(), "one").status_code == 202
    run_all(one_pass)
    one = mongo.uploads.get_upload("one")
    assert one["status"] == 1 and "segments" not in one["timings"], one["timings"]
    workers = [celery_workers(name, "cut,annotate",
                              service_env({**env, "PROCESSING_SEGMENT_SECONDS": "2"}))
               for name in ("a", "b")]
    client = create_app(load_config(env=env)).test_client()
    assert post(client, "seg").status_code == 202
    wait_for(lambda: mongo.jobs.get_job("processContent:seg")["state"] in ("done", "failed"),
             240, "the upload's job to end")
    seg = mongo.uploads.get_upload("seg")
    assert seg["status"] == 1, seg["errorMessage"]
    by_worker = segment_claims(workers, "seg")
    assert seg["timings"]["segments"] == 5 and sorted(sum(by_worker.values(), [])) == \
        [f"processContent:seg#{n}" for n in range(1, 6)]  # each segment ran once
    assert all(by_worker.values()), f"one worker cut every segment: {by_worker}"
    # The ground truth: every hard cut exact, the fade one boundary inside it.
    assert one["shots"] == SHOTS_5FPS, one["shots"]
    assert seg["shots"] == SHOTS_5FPS, seg["shots"]
    starts = [shot["start"] for shot in SHOTS_5FPS]
    (fade_start, fade_end), = truth.fades
    assert [s for s in starts if fade_start <= s < fade_end] == [240]
    assert tasks_of(mongo, "one") == TASKS and tasks_of(mongo, "seg") == TASKS
    assert one["stillFramesLeftOut"] == seg["stillFramesLeftOut"] == 18
    reference = boxes_of(mongo, "one")
    check_tracks(reference, starts)
    assert boxes_of(mongo, "seg") == reference
    status = client.get("/api/processContent/seg", headers={"X-Auth-Key": AUTH_KEY}).json
    assert status["shots"] == SHOTS_5FPS and status["stillFramesLeftOut"] == 18
