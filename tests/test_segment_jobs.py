"""A long upload cut by segment jobs ends exactly as a single pass cuts it."""
from __future__ import annotations

import threading
from fractions import Fraction

import pytest
from conftest import AUTH_KEY
from media import clip_barcodes
from test_segments import VFR_MS, encode

from app import create_app
from engines.embedded import worker_loop
from storage.contents import RunPaths

VIDEOS = {
    "cfr 30fps, B-frames": (list(range(300)), Fraction(1, 30), {"gop": 15}),
    "29.97fps": ([i * 1001 for i in range(240)], Fraction(1, 30000), {"gop": 12}),
    "vfr with gaps": (VFR_MS, Fraction(1, 1000), {"gop": 8, "bframes": 2}),
}
TASK_FIELDS = ("taskName", "frameStart", "frameEnd", "frameStartTime", "frameCount",
               "original_frames", "videoResolutionWidth", "videoResolutionHeight")


def cut(make_config, mongo, video, upload_id: str, segment_seconds: float) -> list[dict]:
    config = make_config(PROCESSING_SEGMENT_SECONDS=str(segment_seconds))
    client = create_app(config).test_client()
    answer = client.post("/api/processContent", json={
        "auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "p1", "frame_rate": 5,
        "content_path": str(video)})
    assert answer.status_code == 202, answer.json
    worker_loop(config, threading.Event(), drain=True)
    upload = mongo.uploads.get_upload(upload_id)
    assert upload["status"] == 1 and upload["progress"] == 100, upload
    return mongo.frames.tasks_of(upload_id)


@pytest.mark.parametrize("name", VIDEOS)
@pytest.mark.parametrize("segment_seconds", [1, 2])
def test_segments_give_the_single_pass_tasks(make_config, mongo, contents, name,
                                             segment_seconds):
    pts, time_base, options = VIDEOS[name]
    video = encode(contents / "uploads" / "clip.mp4", pts, time_base, **options)
    single = cut(make_config, mongo, video, "single", 0)
    parallel = cut(make_config, mongo, video, "segmented", segment_seconds)
    segments = mongo.collections.jobs.count_documents({"parent": "processContent:segmented",
                                                       "state": "done"})
    assert segments >= 2 and not mongo.collections.jobs.count_documents({"parent": "processContent:single"})
    assert len(parallel) == len(single) >= 2
    for a, b in zip(single, parallel):
        assert {k: a[k] for k in TASK_FIELDS} == {k: b[k] for k in TASK_FIELDS}
        assert clip_barcodes(a["videoPath"]) == clip_barcodes(b["videoPath"]) \
            == a["original_frames"]
        frames_a, frames_b = mongo.frames.frames_of(a["_id"]), mongo.frames.frames_of(b["_id"])
        assert [(f["frameId"], f["sourceFrame"]) for f in frames_a] == \
            [(f["frameId"], f["sourceFrame"]) for f in frames_b]
    assert not list((contents / "tasks" / "p1").glob(".staging-*"))
    assert not mongo.collections.staging.count_documents({})
    # The same timings as a single pass (what /metrics reads), plus the segment count.
    one, many = (mongo.uploads.get_upload(u)["timings"] for u in ("single", "segmented"))
    assert set(many["stages"]) == set(one["stages"]) == {"queued", "cutting"}
    assert many["segments"] == segments and many["frames"] == one["frames"]
    assert many["stages"]["cutting"] == many["processingSeconds"] > 0


def accept_in_segments(make_config, contents):
    """A 10 s upload accepted with 1 s segments: (config, client, its body)."""
    pts, time_base, options = VIDEOS["cfr 30fps, B-frames"]
    video = encode(contents / "uploads" / "clip.mp4", pts, time_base, **options)
    config = make_config(PROCESSING_SEGMENT_SECONDS="1")
    client = create_app(config).test_client()
    body = {"auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": 5,
            "content_path": str(video)}
    assert client.post("/api/processContent", json=body).status_code == 202
    return config, client, body


def test_force_write_during_segments_replaces_the_run(make_config, mongo, contents):
    config, client, body = accept_in_segments(make_config, contents)
    # Run only the parent: it fans out and parks the run as "waiting".
    from jobs.claims import claim
    from jobs.context import JobContext
    from jobs.runner import run_claimed
    from mongo_manager import owner_id
    parent = claim(mongo, owner_id(), 30, "processContent:u1")
    run_claimed(parent, JobContext(mongo, config, owner_id()))
    assert mongo.jobs.get_job("processContent:u1")["state"] == "waiting"
    assert client.post("/api/processContent", json=body).status_code == 409
    answer = client.post("/api/processContent", json={**body, "force_write": 1,
                                                      "frame_rate": 10})
    assert answer.status_code == 202
    worker_loop(config, threading.Event(), drain=True)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1 and upload["frame_rate"] == 10
    tasks = mongo.frames.tasks_of("u1")
    assert sum(t["frameCount"] for t in tasks) == 100  # 10 s at 10 fps, none of the old run
    # The new run re-used the segment job ids: no segment of the old run is left.
    run_id = mongo.jobs.get_job("processContent:u1")["runId"]
    children = list(mongo.collections.jobs.find({"parent": "processContent:u1"}))
    assert children and {(j["runId"], j["state"]) for j in children} == {(run_id, "done")}


def test_a_run_whose_last_segment_died_before_the_commit_is_finished(make_config, mongo,
                                                                    contents):
    from jobs import segments as segment_jobs
    from jobs.claims import claim, release_orphans
    from jobs.context import JobContext
    from jobs.runner import run_claimed
    from mongo_manager import owner_id

    pts, time_base, options = VIDEOS["cfr 30fps, B-frames"]
    video = encode(contents / "uploads" / "clip.mp4", pts, time_base, **options)
    config = make_config(PROCESSING_SEGMENT_SECONDS="2")
    client = create_app(config).test_client()
    assert client.post("/api/processContent", json={
        "auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": 5,
        "content_path": str(video)}).status_code == 202
    ctx = JobContext(mongo, config, owner_id())
    run_claimed(claim(mongo, owner_id(), 30, "processContent:u1"), ctx)
    for child in mongo.collections.jobs.find({"parent": "processContent:u1"}):
        job = claim(mongo, owner_id(), 30, child["_id"])
        paths = RunPaths(contents, "p1", "u1", job.run_id)
        segment_jobs._cut_segment(job, ctx, paths)  # cut, then "die" before the commit
        mongo.jobs.end_job(job.id, job.run_id, "done")
    assert mongo.jobs.get_job("processContent:u1")["state"] == "waiting"
    assert worker_loop(config, threading.Event(), drain=True) == 0  # nothing takes it...
    assert release_orphans(mongo) == 1  # ...until the orphan scan queues its commit
    assert worker_loop(config, threading.Event(), drain=True) == 1
    assert mongo.uploads.get_upload("u1")["status"] == 1 and len(mongo.frames.tasks_of("u1")) == 5


def test_a_segment_failing_after_its_run_was_replaced_just_stops(make_config, mongo, contents,
                                                                 monkeypatch, caplog):
    """force_write removes the old run's staging folder under a segment still
    cutting; the error that follows is the run's end (INFO), not a failure
    logged with a traceback, and the new run ends exact."""
    from jobs import segments as segment_jobs
    from jobs.claims import claim
    from jobs.context import JobContext
    from jobs.runner import run_claimed
    from mongo_manager import owner_id

    config, client, body = accept_in_segments(make_config, contents)
    ctx = JobContext(mongo, config, owner_id())
    run_claimed(claim(mongo, owner_id(), 30, "processContent:u1"), ctx)  # fans out
    segment = claim(mongo, owner_id(), 30)
    assert segment.kind == "contentSegment"

    def replaced_under_it(*_):
        assert client.post("/api/processContent", json={**body, "force_write": 1}).status_code \
            == 202
        raise FileNotFoundError("the staging folder went")
    monkeypatch.setattr(segment_jobs, "_cut_segment", replaced_under_it)
    caplog.set_level("INFO")
    assert segment_jobs.run_segment_job(segment, ctx) is None
    assert "stopped: its run ended" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    monkeypatch.undo()
    worker_loop(config, threading.Event(), drain=True)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1 and sum(t["frameCount"] for t in mongo.frames.tasks_of("u1")) == 50
