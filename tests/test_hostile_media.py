"""Hostile media (issue 9): symlinks out of contents_dir, FIFOs, devices,
sockets, zip bombs, huge frames (names: test_hostile_names.py). Each ends its
job with status 2 and a clear code, never hangs, never reads a file outside
contents_dir, never shows the server's absolute path, and the bombs stay
within bounded memory (the peak of the process that runs the job, measured
from the kernel, not guessed)."""
from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import ROOT, service_env
from media import barcode_image, cfr_video
from PIL import Image
from test_bad_input import assert_nothing_left, assert_still_serving

from exceptions import ConfigError

MIB = 1024 * 1024
JOB_SECONDS = 30  # far more than any of these jobs takes; a hang fails instead of blocking


def run_within(run_jobs, seconds: float = JOB_SECONDS) -> int:
    """run_jobs in a thread: a job that blocks (a FIFO opened) fails the test."""
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(run_jobs()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert done, f"the job did not end within {seconds} s"
    return done[0]


def job_error(post, run_jobs, mongo, path: str, content_type: int, upload_id: str = "u1"
              ) -> dict:
    """The errorMessage of a job over ``path`` that must fail (status 2)."""
    assert post(upload_id=upload_id, content_path=path,
                content_type=content_type).status_code == 202
    assert run_within(run_jobs) == 1
    upload = mongo.uploads.get_upload(upload_id)
    assert upload["status"] == 2, upload
    return upload["errorMessage"]


def assert_no_server_path(message: str, contents: Path) -> None:
    for absolute in {str(contents), str(contents.resolve()), str(contents.parent)}:
        assert absolute not in message, message


def png(path: Path, index: int = 1, size=(64, 48)) -> Path:
    Image.fromarray(barcode_image(index, *size)).save(path)
    return path


@pytest.fixture
def outside(contents: Path) -> Path:
    """A folder next to contents_dir holding a valid image and a video."""
    folder = contents.parent / "secret"
    folder.mkdir()
    png(folder / "secret.png", 9)
    cfr_video(folder / "secret.mp4", 12)
    return folder


# --- symlinks (finding 3) ----------------------------------------------------------

def test_folder_symlink_to_outside_image_is_refused(contents, outside, post, run_jobs, mongo):
    folder = contents / "uploads" / "shots"
    folder.mkdir()
    png(folder / "1.png")
    (folder / "2.png").symlink_to(outside / "secret.png")
    error = job_error(post, run_jobs, mongo, "uploads/shots", 2)
    assert error["code"] == "outside_contents"
    assert "shots/2.png" in error["message"]
    assert_no_server_path(error["message"], contents)
    assert_nothing_left(mongo, contents)


def test_link_to_link_out_is_refused(contents, outside, post, run_jobs, mongo):
    folder = contents / "uploads" / "chain"
    folder.mkdir()
    (contents / "uploads" / "hop.png").symlink_to(outside / "secret.png")  # inside, points out
    (folder / "a.png").symlink_to(contents / "uploads" / "hop.png")
    assert job_error(post, run_jobs, mongo, "uploads/chain", 2)["code"] == "outside_contents"


def test_links_to_folders_and_subfolders_are_not_entered(contents, outside, post, run_jobs,
                                                         mongo):
    folder = contents / "uploads" / "nested"
    (folder / "sub").mkdir(parents=True)
    png(folder / "1.png", 1)
    (folder / "sub" / "2.png").symlink_to(outside / "secret.png")
    (folder / "out.png").symlink_to(outside, target_is_directory=True)  # a folder, named .png
    (folder / "dir").symlink_to(outside, target_is_directory=True)
    assert post(content_path="uploads/nested", content_type=2).status_code == 202
    assert run_within(run_jobs) == 1
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload["errorMessage"]
    (task,) = mongo.frames.tasks_of("u1")
    assert task["frameCount"] == 1  # only 1.png: nothing under sub/ or behind the links


def test_link_inside_contents_is_followed(contents, post, run_jobs, mongo):
    folder = contents / "uploads" / "shared"
    folder.mkdir()
    png(folder / "1.png", 1)
    (folder / "2.png").symlink_to(png(contents / "uploads" / "elsewhere.png", 2))
    assert post(content_path="uploads/shared", content_type=2).status_code == 202
    run_within(run_jobs)
    assert mongo.uploads.get_upload("u1")["status"] == 1
    assert mongo.frames.tasks_of("u1")[0]["frameCount"] == 2


@pytest.mark.parametrize("name, content_type", [("late.mp4", 1), ("late.png", 2),
                                                ("late.zip", 2)])
def test_content_path_swapped_for_a_link_after_the_request(name, content_type, contents,
                                                           outside, post, run_jobs, mongo):
    """The request checked the path; the job checks it again when it opens it."""
    path = contents / "uploads" / name
    path.write_bytes(b"placeholder")
    assert post(content_path=f"uploads/{name}", content_type=content_type).status_code == 202
    path.unlink()
    target = outside / "secret.zip" if name.endswith(".zip") else \
        outside / ("secret.mp4" if content_type == 1 else "secret.png")
    if name.endswith(".zip"):
        with zipfile.ZipFile(target, "w") as archive:
            archive.write(outside / "secret.png", "1.png")
    path.symlink_to(target)
    assert run_within(run_jobs) == 1
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 2 and upload["errorMessage"]["code"] == "outside_contents"
    assert_no_server_path(upload["errorMessage"]["message"], contents)


# --- only regular files are opened (finding 4, first half) -------------------------

@pytest.mark.parametrize("where", ["video", "image", "folder entry"])
def test_fifo_is_never_opened(where, contents, post, run_jobs, mongo):
    uploads = contents / "uploads"
    if where == "folder entry":
        (uploads / "pipes").mkdir()
        png(uploads / "pipes" / "1.png")
        os.mkfifo(uploads / "pipes" / "2.png")
        path, content_type = "uploads/pipes", 2
    else:
        name = "pipe.mp4" if where == "video" else "pipe.png"
        os.mkfifo(uploads / name)
        path, content_type = f"uploads/{name}", 1 if where == "video" else 2
    error = job_error(post, run_jobs, mongo, path, content_type)
    assert error["code"] == "not_a_regular_file"
    assert_no_server_path(error["message"], contents)
    assert_still_serving(post, run_jobs, mongo, contents)


def test_device_is_never_opened(contents, post, run_jobs, mongo):
    device = contents / "uploads" / "zero.mp4"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    assert job_error(post, run_jobs, mongo, "uploads/zero.mp4", 1)["code"] == \
        "not_a_regular_file"


def test_socket_is_never_opened(contents, post, run_jobs, mongo):
    path = contents / "uploads" / "sock.mp4"
    if len(os.fsencode(path)) >= 108:  # AF_UNIX's sun_path
        pytest.skip("the test folder's path is too long for a socket")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        assert job_error(post, run_jobs, mongo, "uploads/sock.mp4", 1)["code"] == \
            "not_a_regular_file"


# --- zip members (finding 5) --------------------------------------------------------

def zip_of(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_zip_member_with_a_high_ratio_is_refused_before_reading(contents, post, run_jobs,
                                                                 mongo):
    zip_of(contents / "uploads" / "flat.zip", {"1.bmp": bytes(4 * MIB)})  # ~1000:1
    error = job_error(post, run_jobs, mongo, "uploads/flat.zip", 2)
    assert error["code"] == "zip_bomb" and "flat.zip/1.bmp" in error["message"]


def test_zip_total_over_the_limit_is_refused(contents, make_config, post, run_jobs, mongo):
    members = {f"{n}.png": os.urandom(MIB) for n in range(3)}  # 3 MiB, stored
    zip_of(contents / "uploads" / "many.zip", members, zipfile.ZIP_STORED)
    limited = make_config(PROCESSING_MAX_ZIP_MB="2")
    assert post(content_path="uploads/many.zip", content_type=2).status_code == 202
    assert run_within(lambda: run_jobs(limited)) == 1
    assert mongo.uploads.get_upload("u1")["errorMessage"]["code"] == "zip_too_large"


def test_zip_member_over_the_image_limit_is_refused(contents, make_config, post, run_jobs,
                                                     mongo):
    zip_of(contents / "uploads" / "big.zip", {"1.png": os.urandom(2 * MIB)},
           zipfile.ZIP_STORED)
    limited = make_config(PROCESSING_MAX_IMAGE_MB="1")
    assert post(content_path="uploads/big.zip", content_type=2).status_code == 202
    assert run_within(lambda: run_jobs(limited)) == 1
    assert mongo.uploads.get_upload("u1")["errorMessage"]["code"] == "image_too_large"


def lie_about_size(path: Path, declared: int) -> Path:
    """Rewrite the (single) member's uncompressed size in both of its headers."""
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, declared)
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))
    return path


def test_zip_member_that_lies_about_its_size_reads_no_more(contents, post, run_jobs, mongo):
    """Declared 1 KiB, inflates to 64 MiB: only the declared bytes come out."""
    lie_about_size(zip_of(contents / "uploads" / "liar.zip", {"1.png": bytes(64 * MIB)}), 1024)
    error = job_error(post, run_jobs, mongo, "uploads/liar.zip", 2)
    assert error["code"] == "bad_image"


def big_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header declares ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes(width + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [10000, 30000])  # over our limit; over PIL's own too
def test_image_with_too_many_pixels_is_refused_from_its_header(side, contents, post, run_jobs,
                                                               mongo):
    big_png(contents / "uploads" / "huge.png", side, side)
    error = job_error(post, run_jobs, mongo, "uploads/huge.png", 2)
    assert error["code"] == "frame_too_large"


# --- frame size (finding 5, second half) --------------------------------------------

@pytest.mark.parametrize("key, value", [("max_frame_pixels", "0"), ("max_image_mb", "-1"),
                                        ("max_zip_mb", "lots"), ("max_zip_ratio", "1")])
def test_limits_are_validated(key, value, make_config):
    with pytest.raises(ConfigError, match=f"processing.{key}"):
        make_config(**{f"PROCESSING_{key.upper()}": value})


def test_frame_size_limit_is_configurable(contents, make_config, post, run_jobs, mongo):
    cfr_video(contents / "uploads" / "small.mp4", 12)  # 320x240 = 76800 pixels
    assert post(content_path="uploads/small.mp4").status_code == 202
    run_within(lambda: run_jobs(make_config(PROCESSING_MAX_FRAME_PIXELS="76799")))
    error = mongo.uploads.get_upload("u1")["errorMessage"]
    assert error["code"] == "frame_too_large" and "320x240" in error["message"]
    assert post(upload_id="u2", content_path="uploads/small.mp4").status_code == 202
    run_within(lambda: run_jobs(make_config(PROCESSING_MAX_FRAME_PIXELS="76800")))
    assert mongo.uploads.get_upload("u2")["status"] == 1


@pytest.fixture(scope="module")
def huge_video(tmp_path_factory) -> Path:
    """Three 8192x8192 frames (the size that once took ~1.5 GB to refuse)."""
    path = tmp_path_factory.mktemp("huge") / "huge.mp4"
    cfr_video(path, 3, size=(8192, 8192), options={"preset": "ultrafast"})
    return path


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A 1 GiB member of zeros in a ~5 MB zip (deflate level 1: made in seconds)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("1.png", "w", force_zip64=True) as member:
            block = bytes(16 * MIB)
            for _ in range(64):
                member.write(block)
    return path


# Runs its arguments and writes the child's peak RSS (KiB, ru_maxrss from
# wait4) to the file named first. The child is forked from this small
# launcher, not from pytest: the kernel carries the RSS a process had when it
# exec'd into ru_maxrss, so a child forked from a big pytest would report
# pytest's size (measured: 1.2 GB instead of 255 MB).
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def job_peak(env: dict[str, str], path: Path, **overrides: str) -> tuple[int, float, str]:
    """``python app.py process PATH`` in a child, as a person runs it: (exit code,
    the child's peak RSS in MiB (the kernel's VmHWM at its exit), its stderr)."""
    report = path.with_name(f"{path.name}.peak")
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(report), sys.executable,
                           "app.py", "process", str(path), "--frame-rate", "5"],
                          cwd=ROOT, env=service_env({**env, **overrides}),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    return proc.returncode, int(report.read_text()) / 1024, proc.stderr.decode(errors="replace")


def test_huge_frames_refused_from_the_header(huge_video, contents, env, post, run_jobs, mongo):
    os.link(huge_video, contents / "uploads" / "huge.mp4")
    error = job_error(post, run_jobs, mongo, "uploads/huge.mp4", 1)
    assert error["code"] == "frame_too_large" and "8192x8192" in error["message"]
    assert_no_server_path(error["message"], contents)
    code, peak, stderr = job_peak(env, contents / "uploads" / "huge.mp4")
    assert code == 1 and "8192x8192" in stderr
    print(f"8192x8192 video refused: peak {peak:.0f} MiB")
    assert peak < 300, f"refusing an 8192x8192 video took {peak:.0f} MiB"


def test_zip_bomb_memory_is_bounded(zip_bomb, contents, env, post, run_jobs, mongo):
    os.link(zip_bomb, contents / "uploads" / "bomb.zip")
    assert zip_bomb.stat().st_size < 8 * MIB
    error = job_error(post, run_jobs, mongo, "uploads/bomb.zip", 2)
    assert error["code"] in ("image_too_large", "zip_bomb")
    code, peak, stderr = job_peak(env, contents / "uploads" / "bomb.zip")
    assert code == 1 and "bomb.zip/1.png" in stderr
    print(f"zip bomb (1 GiB member) refused: peak {peak:.0f} MiB")
    assert peak < 400, f"the zip bomb took {peak:.0f} MiB"
    # Declared sizes may lie: declared under every limit, the member is read
    # (streamed) and only its declared bytes come out.
    liar = lie_about_size(Path(shutil.copy(zip_bomb, contents / "uploads" / "liar.zip")), 1024)
    code, peak, stderr = job_peak(env, liar)
    assert code == 1 and "liar.zip/1.png" in stderr
    print(f"zip bomb declaring 1 KiB: peak {peak:.0f} MiB")
    assert peak < 400, f"the lying zip bomb took {peak:.0f} MiB"
