"""Names and messages under hostile input (issue 9, finding 6): file names at
the 255-byte limit or not UTF-8 give valid, unique output names (normal names
are kept as they are), tags that are not UTF-8 do not fail a job, and no
errorMessage shows the server's absolute path."""
from __future__ import annotations

import os
from pathlib import Path

import av
import pytest
from media import cfr_video
from test_bad_input import make_no_moov
from test_hostile_media import assert_no_server_path, job_error, png, run_within


def long_stem(tail: str) -> str:
    """246 bytes of which most are 2-byte characters: cut anywhere else than at a
    character boundary, the name would not be UTF-8."""
    stem = "a" + "é" * 122 + tail
    assert len(stem.encode()) == 246
    return stem


def test_250_byte_file_name_gives_valid_unique_names(contents, post, run_jobs, mongo):
    stems = [long_stem("b"), long_stem("c")]  # the same up to the last byte
    for number, stem in enumerate(stems, start=1):
        cfr_video(contents / "uploads" / f"{stem}.mp4", 12)
        assert post(upload_id=f"u{number}", project_id="p1",
                    content_path=f"uploads/{stem}.mp4").status_code == 202
    assert run_within(run_jobs) == 2
    names = []
    for number in (1, 2):
        upload = mongo.uploads.get_upload(f"u{number}")
        assert upload["status"] == 1, upload["errorMessage"]
        for task in mongo.frames.tasks_of(f"u{number}"):
            clip = Path(task["videoPath"])
            assert clip.is_file() and len(clip.name.encode()) <= 255
            clip.name.encode("utf-8")  # valid UTF-8
            assert task["taskName"].endswith(f"-{task['videoName']}")
            assert clip.name == f"{task['taskName']}.mp4"
            names.append(task["videoName"])
    assert len(set(names)) == 2 and all(n.startswith("aé") for n in names)


def test_normal_names_are_unchanged(contents, post, run_jobs, mongo):
    stem = "x" * 230  # the longest name kept as it is
    cfr_video(contents / "uploads" / f"{stem}.mp4", 12)
    assert post(content_path=f"uploads/{stem}.mp4").status_code == 202
    run_within(run_jobs)
    (task,) = mongo.frames.tasks_of("u1")
    assert task["videoName"] == stem and task["taskName"] == f"task-1-{stem}"


def test_undecodable_entry_name_is_shown_safely(contents, post, run_jobs, mongo):
    folder = contents / "uploads" / "latin1"
    folder.mkdir()
    png(folder / "1.png")
    (folder / os.fsdecode(b"caf\xe9.png")).write_bytes(b"not a png")  # not UTF-8
    error = job_error(post, run_jobs, mongo, "uploads/latin1", 2)
    assert error["code"] == "bad_image" and "latin1/caf?.png" in error["message"]


def test_video_with_tags_that_are_not_utf8_is_cut(contents, post, run_jobs, mongo):
    source_path, path = contents / "plain.mp4", contents / "uploads" / "tags.mp4"
    cfr_video(source_path, 12)
    with av.open(str(source_path)) as source, av.open(str(path), "w") as out:
        out.metadata["title"] = "TITLE-XY"  # written as UTF-8 ...
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = path.read_bytes()
    assert data.count(b"TITLE-XY") == 1
    path.write_bytes(data.replace(b"TITLE-XY", b"TITLE-\xe9\x80"))  # ... now it is not
    assert post(content_path="uploads/tags.mp4").status_code == 202
    run_within(run_jobs)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload["errorMessage"]


def make_garbage(uploads: Path) -> str:
    (uploads / "garbage.mp4").write_bytes(os.urandom(4096))
    return "garbage.mp4"


def make_long_garbage(uploads: Path) -> str:
    name = long_stem("z") + ".mp4"
    (uploads / name).write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(2000))
    return name


def make_fifo(uploads: Path) -> str:
    os.mkfifo(uploads / "fifo.mp4")
    return "fifo.mp4"


@pytest.mark.parametrize("make", [make_no_moov, make_garbage, make_long_garbage, make_fifo])
def test_error_messages_never_show_the_server_path(make, contents, post, run_jobs, mongo):
    name = make(contents / "uploads")
    error = job_error(post, run_jobs, mongo, f"uploads/{name}", 1)
    assert f"uploads/{name}" in error["message"]
    assert_no_server_path(error["message"], contents)
