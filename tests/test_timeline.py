"""Recordings joined end to end lose no frame (SPEC: "Discontinuous timestamps").

Each part is a real recording written by PyAV (MPEG-TS, H.264 with B-frames
and short GOPs) whose frames show their index in the joined file as a
barcode (media.py); the parts are joined with ``cat`` as an operator joins
them. Every upload goes through the real job path (API, job, pipeline,
MongoDB), and what the task clips show is compared, frame by frame, with
what sampling the joined recordings on one continuous timeline keeps.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import pytest
from conftest import AUTH_KEY, ROOT, service_env
from media import clip_barcodes, expected_samples, write_video

from app import create_app
from engines.embedded import worker_loop
from processors.segment_plan import plan_segments
from processors.timeline import MAX_REPAIRS

FPS = 30
SIZE = (160, 120)
FRAMES_PER_TASK = 10  # conftest's PROCESSING_FRAMES_PER_TASK
X264 = {"preset": "veryfast",
        "x264-params": "keyint=15:min-keyint=15:scenecut=0:bframes=3"}


def recording(path: Path, pts: list[int], first_index: int = 0, fmt: str = "mpegts") -> Path:
    """One recording at FPS whose frame i is at ``pts[i]`` frames and shows
    ``first_index + i``."""
    return write_video(path, pts, Fraction(1, FPS), SIZE, rate=FPS, options=X264, fmt=fmt,
                       first_index=first_index)


def first_time(path: Path) -> Fraction:
    """Seconds of a file's first frame, as its container stores it."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.pts * Fraction(frame.time_base)


def joined(path: Path, parts: list[list[int]]) -> tuple[Path, list[Fraction]]:
    """``cat part0.ts part1.ts ... > path``: part k's frames at ``parts[k]``
    (in frames of its own clock), barcodes numbered across the parts. Returns
    the path and the time of each part's first frame in its own file."""
    first, data, times = 0, b"", []
    for number, pts in enumerate(parts):
        part = recording(path.parent / f".part{number}.ts", pts, first)
        data += part.read_bytes()
        times.append(first_time(part))
        part.unlink()
        first += len(pts)
    path.write_bytes(data)
    return path, times


def repairs_of(parts: list[list[int]], firsts: list[Fraction]) -> list[dict]:
    """What the upload records for joined ``parts``: each part after the first
    starts one frame after the one before it on the repaired timeline, moved
    by that time less its own time in the file (from the file's first frame)."""
    starts = [sum(map(len, parts[:k])) for k in range(1, len(parts))]
    return [{"sourceFrame": start, "at": pytest.approx(start / FPS),
             "shift": pytest.approx(float(Fraction(start, FPS) - (own - firsts[0])))}
            for start, own in zip(starts, firsts[1:])]


def run(post, run_jobs, mongo, path: Path, frame_rate: int, upload_id: str = "u1") -> dict:
    response = post(upload_id=upload_id, content_path=f"uploads/{path.name}",
                    frame_rate=frame_rate)
    assert response.status_code == 202, response.json
    run_jobs()
    return mongo.uploads.get_upload(upload_id)


def check_samples(mongo, upload_id: str, times: list[Fraction], rate: int) -> list[dict]:
    """The upload's tasks hold exactly the frames that sampling at ``rate``
    keeps of frames at ``times`` (seconds on the repaired timeline): in order,
    none missing, none twice, as the clips' pixels show; the frame documents
    carry their timestamps on that timeline."""
    expected = expected_samples(times, rate)
    tasks = mongo.frames.tasks_of(upload_id)
    assert [f for t in tasks for f in t["original_frames"]] == expected
    assert [len(t["original_frames"]) for t in tasks][:-1] == \
        [FRAMES_PER_TASK] * (len(tasks) - 1)
    for task in tasks:
        shown = clip_barcodes(Path(task["videoPath"]))
        assert shown == task["original_frames"], task["taskName"]
        docs = mongo.frames.frames_of(task["_id"])
        assert [d["sourceFrame"] for d in docs] == shown
        assert [d["timestamp"] for d in docs] == \
            pytest.approx([float(times[i] - times[0]) for i in shown], abs=1e-6)
        assert [clip_barcodes(Path(d["imagePath"])) for d in docs] == [[i] for i in shown]
        assert task["frameStartTime"] == pytest.approx(docs[0]["timestamp"])
    return tasks


def continuous(frames: int) -> list[Fraction]:
    """Frame times of one recording of ``frames`` frames at FPS."""
    return [Fraction(i, FPS) for i in range(frames)]


JOINS = {
    # name: (the parts' frame times, in frames of each part's own clock)
    # Each recording starts its clock again, as a camera or recorder does.
    "three recordings from 0": [list(range(60)), list(range(75)), list(range(45))],
    # Recordings that start at other times: one 100 s after the first (a leap
    # of more than 10 s), then one back at 10 s.
    "recordings at other offsets": [[300 + i for i in range(50)],
                                    [3300 + i for i in range(70)],
                                    [600 + i for i in range(40)]],
    # A part shorter than a decoder's reordering window, between two others.
    "a part of 5 frames": [list(range(40)), [1800 + i for i in range(5)], list(range(50))],
}


@pytest.mark.parametrize("rate", [5, 30])
@pytest.mark.parametrize("name", sorted(JOINS))
def test_every_part_of_joined_recordings_is_sampled(name, rate, contents, post, run_jobs,
                                                    mongo, client):
    parts = JOINS[name]
    video, firsts = joined(contents / "uploads" / "joined.ts", parts)
    total = sum(map(len, parts))
    upload = run(post, run_jobs, mongo, video, rate)
    assert upload["status"] == 1, upload["errorMessage"]
    # One timeline: each recording follows the one before it by one frame,
    # so the joined file samples as one recording of all their frames would.
    tasks = check_samples(mongo, "u1", continuous(total), rate)
    if rate == FPS:  # every frame of every part, once
        assert [f for t in tasks for f in t["original_frames"]] == list(range(total))
    assert tasks[0]["videoDuration"] == pytest.approx(total / FPS, abs=0.05)
    # Where the timeline was repaired, and by how much: at each part's first frame.
    repairs = repairs_of(parts, firsts)
    assert upload["timelineRepairs"] == repairs
    status = client.get("/api/processContent/u1", headers={"X-Auth-Key": AUTH_KEY}).json
    assert status["status"] == 1 and status["timelineRepairs"] == repairs


def test_gaps_are_kept_or_closed_by_format_family(contents, post, run_jobs, mongo):
    """A leap of more than 10 s in an MPEG-TS stream (a recorder resuming) is
    closed; a shorter gap there is kept, and a gap of any length in an MP4 is
    a pause of a variable-frame-rate video (SPEC), kept as it is."""
    pts = list(range(40)) + [130 + i for i in range(40)] + [2000 + i for i in range(40)]
    ts = recording(contents / "uploads" / "resumed.ts", pts)  # a 3 s gap, then a 62 s one
    mp4 = recording(contents / "uploads" / "paused.mp4", pts, fmt="mp4")
    upload = run(post, run_jobs, mongo, ts, 5, "ts")
    assert upload["status"] == 1, upload["errorMessage"]
    closed = [Fraction(p, FPS) for p in pts[:80]] + [Fraction(130 + 40 + i, FPS)
                                                     for i in range(40)]
    check_samples(mongo, "ts", closed, 5)
    assert upload["timelineRepairs"] == [{"sourceFrame": 80, "at": pytest.approx(170 / FPS),
                                          "shift": pytest.approx((170 - 2000) / FPS)}]
    upload = run(post, run_jobs, mongo, mp4, 5, "mp4")
    assert upload["status"] == 1, upload["errorMessage"]
    check_samples(mongo, "mp4", [Fraction(p, FPS) for p in pts], 5)
    assert upload["timelineRepairs"] == []


TASK_FIELDS = ("taskName", "frameStart", "frameEnd", "frameStartTime", "frameCount",
               "original_frames", "videoDuration")


def test_a_joined_file_cut_in_segments_equals_the_single_pass(make_config, mongo, contents,
                                                               caplog):
    parts = [list(range(120)), list(range(150)), [900 + i for i in range(120)]]
    video, firsts = joined(contents / "uploads" / "joined.ts", parts)
    total = sum(map(len, parts))
    plan = plan_segments(video, 5, FRAMES_PER_TASK, 4)
    assert len(plan) == 1 and "restart or jump" in plan[0].reason
    caplog.set_level(logging.INFO, logger="jobs.segments")
    uploads = {}
    for upload_id, seconds in (("single", "0"), ("segmented", "1")):
        config = make_config(PROCESSING_SEGMENT_SECONDS=seconds)
        answer = create_app(config).test_client().post("/api/processContent", json={
            "auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "p1",
            "frame_rate": 5, "content_path": str(video)})
        assert answer.status_code == 202, answer.json
        worker_loop(config, threading.Event(), drain=True)
        uploads[upload_id] = mongo.uploads.get_upload(upload_id)
        assert uploads[upload_id]["status"] == 1, uploads[upload_id]["errorMessage"]
    assert any("cut in one pass: the timestamps restart or jump" in r.getMessage()
               for r in caplog.records)
    single = check_samples(mongo, "single", continuous(total), 5)
    segmented = check_samples(mongo, "segmented", continuous(total), 5)
    assert [{k: t[k] for k in TASK_FIELDS} for t in single] == \
        [{k: t[k] for k in TASK_FIELDS} for t in segmented]
    assert uploads["single"]["timelineRepairs"] == uploads["segmented"]["timelineRepairs"] \
        == repairs_of(parts, firsts)


def test_timestamps_that_cannot_be_put_on_one_timeline_end_the_upload(contents, post, run_jobs,
                                                                       mongo):
    one = recording(contents / ".one.ts", [0])
    video = contents / "uploads" / "shredded.ts"
    video.write_bytes(one.read_bytes() * (MAX_REPAIRS + 2))  # a restart at every frame
    upload = run(post, run_jobs, mongo, video, 5)
    assert upload["status"] == 2 and upload["stage"] == "error"
    error = upload["errorMessage"]
    assert error["code"] == "broken_timeline"
    assert error["message"].startswith("uploads/shredded.ts: the timestamps restart or jump "
                                       f"more than {MAX_REPAIRS} times")
    assert "cannot be put on one timeline" in error["message"]
    assert not mongo.frames.tasks_of("u1")  # refused before anything was cut


def test_mp4_files_joined_with_cat_are_refused_not_cut_short(contents, post, run_jobs, mongo):
    """An MP4 is read through its own index: of MP4 files joined with cat,
    FFmpeg reads the first one's frames only. Refused, never cut short."""
    parts = [recording(contents / f".part{n}.mp4", list(range(30)), 30 * n, fmt="mp4")
             for n in range(2)]
    video = contents / "uploads" / "joined.mp4"
    video.write_bytes(b"".join(part.read_bytes() for part in parts))
    upload = run(post, run_jobs, mongo, video, 5)
    assert upload["status"] == 2
    assert upload["errorMessage"]["code"] == "joined_mp4"
    assert upload["errorMessage"]["message"].startswith(
        "uploads/joined.mp4: the file is 2 MP4 files joined end to end")
    assert not mongo.frames.tasks_of("u1")
    # One of them alone is an MP4 like any other.
    video.write_bytes(parts[0].read_bytes())
    upload = run(post, run_jobs, mongo, video, 5, "u2")
    assert upload["status"] == 1, upload["errorMessage"]
    check_samples(mongo, "u2", continuous(30), 5)


def test_the_command_line_says_where_the_timeline_was_repaired(env, contents, mongo):
    parts = [list(range(30)), list(range(30))]
    video, _ = joined(contents / "uploads" / "cam.ts", parts)
    result = subprocess.run([sys.executable, "app.py", "process", str(video), "--frame-rate",
                             "5", "--upload-id", "cli1"], env=service_env(env), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "timeline repaired at 1 place(s): frame 30 at 1.000 s (+1.000 s)" in result.stdout
    check_samples(mongo, "cli1", continuous(60), 5)
