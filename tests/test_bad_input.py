"""Bad content ends with status 2 and a clear errorMessage; nothing partial is left."""
from __future__ import annotations

import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from media import barcode_image, cfr_video


def faststart_video(path: Path, frames: int) -> Path:
    """moov before mdat, so cutting the file loses frames but keeps the index."""
    with av.open(str(path), "w", container_options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(barcode_image(i, 320, 240), "rgb24")))
        out.mux(stream.encode(None))
    return path


def cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def make_not_a_video(uploads: Path) -> str:
    (uploads / "notes.mp4").write_text("this is not a video\n" * 50)
    return "notes.mp4"


def make_empty(uploads: Path) -> str:
    (uploads / "empty.mp4").write_bytes(b"")
    return "empty.mp4"


def make_truncated(uploads: Path, frames: int = 600) -> str:
    # Long enough that tasks are published before the truncation is met (at 300
    # frames the decoder could meet it while the first task was still encoding).
    cut(faststart_video(uploads / "trunc.mp4", frames), 0.5)
    return "trunc.mp4"


def make_no_moov(uploads: Path) -> str:
    cut(cfr_video(uploads / "nomoov.mp4", 120), 0.6)  # moov is written last
    return "nomoov.mp4"


def make_unsupported_codec(uploads: Path) -> str:
    path = cfr_video(uploads / "codec.mp4", 30)
    path.write_bytes(path.read_bytes().replace(b"avc1", b"xxxx"))  # no decoder for 'xxxx'
    return "codec.mp4"


def make_audio_only(uploads: Path) -> str:
    with av.open(str(uploads / "audio.mp4"), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 8000
        for i in range(10):
            frame.pts = i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return "audio.mp4"


VIDEO_CASES = {
    "not a video": (make_not_a_video, "not_a_video"),
    "empty file": (make_empty, "empty_file"),
    "truncated mid-stream": (make_truncated, ("truncated", "corrupt")),
    "no moov atom": (make_no_moov, "no_moov"),
    "unsupported codec": (make_unsupported_codec, "unsupported_codec"),
    "no video stream": (make_audio_only, "no_video_stream"),
}


def assert_nothing_left(mongo, contents: Path) -> None:
    """Nothing of the failed run is left but the tasks it had published before
    the bad part of the file (final: people may be annotating them), each one
    whole: its clip, frames and JPEGs."""
    tasks = mongo.frames.tasks_of("u1")
    assert (mongo.uploads.get_upload("u1") or {}).get("readyTaskCount", 0) == len(tasks)
    kept = {Path(t["videoPath"]) for t in tasks}
    frames = [f for t in tasks for f in mongo.frames.frames_of(t["_id"])]
    assert len(frames) == sum(t["frameCount"] for t in tasks) == mongo.collections.frames.count_documents({})
    kept |= {Path(f["imagePath"]) for f in frames}
    assert all(path.is_file() for path in kept)
    assert mongo.collections.staging.count_documents({}) == 0
    files = [p for folder in ("tasks", "frames") if (contents / folder).exists()
             for p in (contents / folder).rglob("*") if p.is_file()]
    assert set(files) == kept, set(files) ^ kept


def assert_still_serving(post, run_jobs, mongo, contents: Path) -> None:
    cfr_video(contents / "uploads" / "good.mp4", 30)
    assert post(upload_id="good", content_path="uploads/good.mp4").status_code == 202
    run_jobs()
    assert mongo.uploads.get_upload("good")["status"] == 1


@pytest.mark.parametrize("case", sorted(VIDEO_CASES))
def test_bad_video(case, contents, post, run_jobs, mongo):
    make, codes = VIDEO_CASES[case]
    name = make(contents / "uploads")
    response = post(content_path=f"uploads/{name}")
    assert response.status_code == 202  # the file exists: its content is judged by the job
    run_jobs()
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 2 and upload["stage"] == "error"
    error = upload["errorMessage"]
    assert error["code"] in (codes if isinstance(codes, tuple) else (codes,))
    assert name in error["message"]
    assert mongo.jobs.get_job("processContent:u1")["state"] == "failed"
    assert_nothing_left(mongo, contents)
    if case == "truncated mid-stream":  # cut before the bad part: published, and kept
        assert mongo.frames.tasks_of("u1"), "no task was published before the truncation"
    assert_still_serving(post, run_jobs, mongo, contents)


def test_truncated_message_says_how_much(contents, post, run_jobs, mongo):
    name = make_truncated(contents / "uploads")
    post(content_path=f"uploads/{name}")
    run_jobs()
    message = mongo.uploads.get_upload("u1")["errorMessage"]["message"]
    assert "truncated" in message or "corrupt" in message


def test_file_removed_after_accept(contents, post, run_jobs, mongo):
    video = cfr_video(contents / "uploads" / "gone.mp4", 30)
    assert post(content_path="uploads/gone.mp4").status_code == 202
    video.unlink()
    run_jobs()
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 2 and upload["errorMessage"]["code"] == "missing_file"


def write_png(path: Path, index: int, size=(320, 240)) -> Path:
    from PIL import Image
    Image.fromarray(barcode_image(index, *size)).save(path)
    return path


def make_bad_image_folder(uploads: Path) -> str:
    folder = uploads / "imgs"
    folder.mkdir()
    write_png(folder / "1.png", 1)
    (folder / "2.png").write_bytes(b"not a png")
    return "imgs"


def make_empty_folder(uploads: Path) -> str:
    (uploads / "nothing").mkdir()
    return "nothing"


def make_bad_zip(uploads: Path) -> str:
    (uploads / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    return "broken.zip"


def make_zip_without_images(uploads: Path) -> str:
    with zipfile.ZipFile(uploads / "text.zip", "w") as archive:
        archive.writestr("readme.txt", "no images here")
    return "text.zip"


IMAGE_CASES = {
    "unreadable image": (make_bad_image_folder, "bad_image"),
    "empty folder": (make_empty_folder, "no_images"),
    "bad zip": (make_bad_zip, "bad_zip"),
    "zip without images": (make_zip_without_images, "no_images"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_bad_images(case, contents, post, run_jobs, mongo):
    make, code = IMAGE_CASES[case]
    name = make(contents / "uploads")
    assert post(content_path=f"uploads/{name}", content_type=2).status_code == 202
    run_jobs()
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 2 and upload["errorMessage"]["code"] == code
    assert_nothing_left(mongo, contents)
