"""End to end through the API: which source frames each task clip holds, and how."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from media import barcode_image, clip_barcodes, expected_samples, top_level_atoms, write_video


def process(post, run_jobs, mongo, path: Path, frame_rate: int, **fields) -> list[dict]:
    response = post(content_path=f"uploads/{path.name}", frame_rate=frame_rate, **fields)
    assert response.status_code == 202, response.json
    assert run_jobs() == 1
    upload = mongo.uploads.get_upload(fields.get("upload_id", "u1"))
    assert upload["status"] == 1, upload["errorMessage"]
    return mongo.frames.tasks_of(fields.get("upload_id", "u1"))


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


VIDEOS = {
    # name: (pts, time_base, frame rate asked)
    "cfr 30fps at 5": (list(range(95)), Fraction(1, 30), 5),
    "cfr 30fps at 7": (list(range(64)), Fraction(1, 30), 7),
    "29.97fps at 5": ([i * 1001 for i in range(75)], Fraction(1, 30000), 5),
    "10fps at 30 (above source)": (list(range(23)), Fraction(1, 10), 30),
    "vfr with gaps at 5": ([0, 33, 66, 100, 400, 410, 420, 1500, 1533, 1566, 2000, 2010, 2400,
                            2433, 2466, 3900, 3950, 4000], Fraction(1, 1000), 5),
    "vfr at 10": ([i * 40 for i in range(30)] + [1200 + i * 15 for i in range(40)],
                  Fraction(1, 1000), 10),
}


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_task_clips_hold_exactly_the_sampled_frames(name, contents, post, run_jobs, mongo):
    pts, time_base, rate = VIDEOS[name]
    video = write_video(contents / "uploads" / "v.mp4", pts, time_base)
    tasks = process(post, run_jobs, mongo, video, rate)
    expected = expected_samples([p * time_base for p in pts], rate)
    per_task = chunks(expected, 10)  # PROCESSING_FRAMES_PER_TASK=10 in tests
    assert [t["original_frames"] for t in tasks] == per_task
    for number, (task, frames) in enumerate(zip(tasks, per_task), start=1):
        assert task["taskName"] == f"task-{number}-v"
        assert (task["frameStart"], task["frameEnd"], task["frameCount"]) == \
            (frames[0], frames[-1], len(frames))
        assert task["frameStartTime"] == pytest.approx(float((pts[frames[0]] - pts[0]) * time_base))
        # The pixels agree with the documents: each clip frame shows its source index.
        assert clip_barcodes(Path(task["videoPath"])) == frames
        docs = mongo.frames.frames_of(task["_id"])
        assert [d["frameId"] for d in docs] == list(range(1, len(frames) + 1))
        assert [d["sourceFrame"] for d in docs] == frames
        for doc in docs:
            assert doc["boxes"] == [] and doc["isEmpty"] is True
            assert doc["isUserAnnotated"] is False
            assert clip_barcodes(Path(doc["imagePath"])) == [doc["sourceFrame"]]


def test_task_documents_have_every_field(contents, post, run_jobs, mongo):
    video = write_video(contents / "uploads" / "cam.mp4", list(range(60)))
    tasks = process(post, run_jobs, mongo, video, 5, upload_id="5f0c6b2e9d3e4a1b2c3d4e5f",
                    project_id="5f0c6b2e9d3e4a1b2c3d4e60")
    from bson import ObjectId
    task = tasks[0]
    assert task["projectId"] == ObjectId("5f0c6b2e9d3e4a1b2c3d4e60")
    assert task["uploadId"] == ObjectId("5f0c6b2e9d3e4a1b2c3d4e5f")
    assert task["videoName"] == "cam"
    assert task["videoPath"].endswith(
        "tasks/5f0c6b2e9d3e4a1b2c3d4e60/5f0c6b2e9d3e4a1b2c3d4e5f/task-1-cam.mp4")
    assert task["frameRate"] == 5 and task["Originalframerate"] == pytest.approx(30)
    assert (task["videoResolutionWidth"], task["videoResolutionHeight"]) == (320, 240)
    assert task["videoDuration"] == pytest.approx(2.0, abs=0.05)
    assert (task["taskStatus"], task["auditStatus"], task["AutoAnnotationVersion"]) == (0, 0, 0)
    assert task["datasetVersions"] == [] and task["createdAt"] is not None
    frame = mongo.frames.frames_of(task["_id"])[0]
    assert frame["imagePath"].endswith("frames/5f0c6b2e9d3e4a1b2c3d4e5f/task-1/1.jpg")
    assert Path(frame["imagePath"]).is_file()


def test_clip_properties(contents, post, run_jobs, mongo):
    video = write_video(contents / "uploads" / "v.mp4", list(range(90)))
    tasks = process(post, run_jobs, mongo, video, 5)
    assert [t["frameCount"] for t in tasks] == [10, 5]
    for task in tasks:
        path = Path(task["videoPath"])
        atoms = top_level_atoms(path)
        assert atoms.index("moov") < atoms.index("mdat"), atoms  # faststart
        with av.open(str(path)) as clip:
            stream = clip.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            assert stream.average_rate == 5
            frames = list(clip.decode(stream))
            assert len(frames) == task["frameCount"]
            assert all(f.rotation == 0 for f in frames)
            assert stream.width % 2 == 0 and stream.height % 2 == 0
        assert not list(path.parent.glob("*.part"))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_applied_to_pixels(contents, post, run_jobs, mongo, rotation):
    video = write_video(contents / "uploads" / "r.mp4", list(range(12)), size=(320, 240),
                        rotation=rotation)
    tasks = process(post, run_jobs, mongo, video, 30)
    turns = rotation // 90
    size = (240, 320) if turns % 2 else (320, 240)
    assert (tasks[0]["videoResolutionWidth"], tasks[0]["videoResolutionHeight"]) == size
    path = Path(tasks[0]["videoPath"])
    with av.open(str(path)) as clip:
        frame = next(clip.decode(video=0))
        assert (frame.width, frame.height) == size and frame.rotation == 0
    # Turning the clip back by the same angle shows the original barcodes.
    assert clip_barcodes(path, unrotate=turns) == list(range(10))


def test_odd_sizes_are_padded_to_even(contents, post, run_jobs, mongo):
    video = write_video(contents / "uploads" / "odd.mp4", list(range(12)), size=(321, 241),
                        pix_fmt="yuv444p")
    tasks = process(post, run_jobs, mongo, video, 30)
    assert (tasks[0]["videoResolutionWidth"], tasks[0]["videoResolutionHeight"]) == (322, 242)
    assert clip_barcodes(Path(tasks[0]["videoPath"]), crop=(321, 241)) == list(range(10))


def test_frames_not_kept(contents, post, run_jobs, mongo, make_config):
    video = write_video(contents / "uploads" / "v.mp4", list(range(30)))
    post(content_path="uploads/v.mp4")
    assert run_jobs(make_config(PROCESSING_KEEP_FRAMES="false")) == 1
    task = mongo.frames.tasks_of("u1")[0]
    assert all(f["imagePath"] is None for f in mongo.frames.frames_of(task["_id"]))
    assert not (contents / "frames" / "u1").exists() or not any((contents / "frames" / "u1").iterdir())


def test_progress_rises_during_a_long_job(contents, post, mongo, config):
    """Progress is written at least once a second while a job runs."""
    import threading
    import time

    from engines.embedded import worker_loop
    video = write_video(contents / "uploads" / "long.mp4", list(range(900)), size=(640, 480))
    post(content_path="uploads/long.mp4", frame_rate=30)
    stop = threading.Event()
    worker = threading.Thread(target=worker_loop, args=(config, stop, True))
    seen = []
    worker.start()
    while worker.is_alive():
        upload = mongo.uploads.get_upload("u1")
        seen.append((time.monotonic(), upload["progress"]))
        time.sleep(0.2)
    worker.join()
    assert mongo.uploads.get_upload("u1")["status"] == 1
    values = [p for _, p in seen]
    assert values == sorted(values)  # never goes back
    assert len(set(values)) >= 4  # several distinct steps on the way to 100
    changes = [t for (t, p), (_, before) in zip(seen[1:], seen) if p != before]
    assert max(b - a for a, b in zip(changes, changes[1:])) < 1.5


# WebM and MKV store whole milliseconds: frame 1 of a 30 fps video is at 33 ms.
MATROSKA = [("mkv", "libx264"), ("webm", "libvpx-vp9")]


@pytest.mark.parametrize("rate", [30, 5])
@pytest.mark.parametrize("suffix, codec", MATROSKA)
def test_millisecond_time_bases_sample_as_the_frames_were_made(suffix, codec, rate, contents,
                                                                post, run_jobs, mongo):
    """At the source's own rate every frame is kept (20 of 30 were); at 5 fps
    the frames a millisecond clock puts just before their targets are kept."""
    video = write_video(contents / "uploads" / f"v.{suffix}", list(range(30)), codec=codec,
                        size=(160, 120))
    tasks = process(post, run_jobs, mongo, video, rate)
    made = [Fraction(round(i * 1000 / 30), 1000) for i in range(30)]  # what the file stores
    expected = expected_samples(made, rate, slack=Fraction(1, 2000))
    assert expected == (list(range(30)) if rate == 30 else [0, 6, 12, 18, 24])
    assert sum((clip_barcodes(Path(t["videoPath"])) for t in tasks), []) == expected


@pytest.mark.parametrize("suffix, codec", MATROSKA)
def test_a_video_starting_late_is_read_whole(suffix, codec, contents, post, run_jobs, mongo):
    """Its first frame at 10 s: Matroska's duration runs to its end, so the
    3 s video used to be judged truncated ("only 3.0 s of 13.0 s")."""
    video = write_video(contents / "uploads" / f"late.{suffix}", [300 + i for i in range(90)],
                        codec=codec, size=(160, 120))
    tasks = process(post, run_jobs, mongo, video, 10)
    assert sum((clip_barcodes(Path(t["videoPath"])) for t in tasks), []) == list(range(0, 90, 3))


def test_the_video_is_not_a_still_that_comes_first(contents, post, run_jobs, mongo):
    path = contents / "uploads" / "cover.mkv"
    with av.open(str(path), "w") as out:
        still = out.add_stream("mjpeg", rate=1)
        video = out.add_stream("libx264", rate=30)
        for stream, pix_fmt in ((still, "yuvj420p"), (video, "yuv420p")):
            stream.width, stream.height, stream.pix_fmt = 160, 120, pix_fmt
        frame = av.VideoFrame.from_ndarray(barcode_image(999, 160, 120), "rgb24")
        out.mux(still.encode(frame))
        out.mux(still.encode(None))
        for i in range(60):
            frame = av.VideoFrame.from_ndarray(barcode_image(i, 160, 120), "rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    tasks = process(post, run_jobs, mongo, path, 10)
    assert sum((clip_barcodes(Path(t["videoPath"])) for t in tasks), []) == list(range(0, 60, 3))
