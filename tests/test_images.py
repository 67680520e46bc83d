"""Image uploads (content_type 2): one image, a folder, a zip; EXIF; mixed sizes."""
from __future__ import annotations

import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from media import barcode_image, clip_barcodes, decode_gray, read_barcode
from PIL import Image

from processors.frame_ops import encode_jpeg

EXIF_ORIENTATION = 0x0112


def save(path: Path, index: int, size=(320, 240), orientation: int | None = None) -> Path:
    image = Image.fromarray(barcode_image(index, *size))
    if orientation:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        image.save(path, exif=exif, quality=95)
    else:
        image.save(path)
    return path


def process_images(post, run_jobs, mongo, name: str, frame_rate: int = 2,
                   **fields) -> list[dict]:
    assert post(content_path=f"uploads/{name}", content_type=2,
                frame_rate=frame_rate, **fields).status_code == 202
    assert run_jobs() == 1
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload["errorMessage"]
    return mongo.frames.tasks_of("u1")


def test_folder_in_natural_order(contents, post, run_jobs, mongo):
    folder = contents / "uploads" / "shots"
    folder.mkdir()
    # img10 after img2: natural, not lexical, order. Each shows its expected position.
    for position, name in enumerate(["img1.png", "img2.png", "img10.png"] +
                                    [f"img{n}.png" for n in range(11, 23)]):
        save(folder / name, position)
    (folder / "notes.txt").write_text("ignored")
    tasks = process_images(post, run_jobs, mongo, "shots", frame_rate=3)
    assert [t["frameCount"] for t in tasks] == [10, 5]
    assert [clip_barcodes(Path(t["videoPath"])) for t in tasks] == [list(range(10)),
                                                                  list(range(10, 15))]
    assert tasks[0]["original_frames"] == list(range(10))
    with av.open(tasks[0]["videoPath"]) as clip:
        assert clip.streams.video[0].average_rate == 3


def test_zip_members_read_in_order(contents, post, run_jobs, mongo):
    with zipfile.ZipFile(contents / "uploads" / "set.zip", "w") as archive:
        for position, name in enumerate(["a/1.png", "a/2.png", "a/10.png"]):
            path = save(contents / f"tmp{position}.png", position)
            archive.write(path, name)
        archive.writestr("__MACOSX/a/._1.png", b"junk")
        archive.writestr("readme.txt", "ignored")
    tasks = process_images(post, run_jobs, mongo, "set.zip")
    assert clip_barcodes(Path(tasks[0]["videoPath"])) == [0, 1, 2]
    frames = mongo.frames.frames_of(tasks[0]["_id"])
    assert [clip_barcodes(Path(f["imagePath"]))[0] for f in frames] == [0, 1, 2]


def test_single_image(contents, post, run_jobs, mongo):
    save(contents / "uploads" / "one.png", 7)
    tasks = process_images(post, run_jobs, mongo, "one.png")
    assert len(tasks) == 1 and tasks[0]["frameCount"] == 1
    assert tasks[0]["taskName"] == "task-1-one"
    assert clip_barcodes(Path(tasks[0]["videoPath"])) == [7]


def test_shots_and_still_frames_are_for_videos_only(contents, post, run_jobs, mongo):
    """task_split and skip_still are ignored for images: three copies of one
    image are three frames of one fixed task."""
    folder = contents / "uploads" / "same"
    folder.mkdir()
    for n in range(3):
        save(folder / f"{n}.png", 5)
    tasks = process_images(post, run_jobs, mongo, "same", task_split="shots", skip_still=1)
    assert [t["frameCount"] for t in tasks] == [3]
    upload = mongo.uploads.get_upload("u1")
    assert (upload["shots"], upload["stillFramesLeftOut"]) == (None, 0)


def test_exif_orientation_applied(contents, post, run_jobs, mongo):
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to display.
    save(contents / "uploads" / "phone.jpg", 5, size=(320, 240), orientation=6)
    tasks = process_images(post, run_jobs, mongo, "phone.jpg")
    assert (tasks[0]["videoResolutionWidth"], tasks[0]["videoResolutionHeight"]) == (240, 320)
    # Turning the upright clip frame back counter-clockwise shows the stored barcode.
    assert clip_barcodes(Path(tasks[0]["videoPath"]), unrotate=-1) == [5]


def test_mixed_sizes_letterboxed_onto_first(contents, post, run_jobs, mongo):
    folder = contents / "uploads" / "mixed"
    folder.mkdir()
    save(folder / "1.png", 1, size=(320, 240))
    save(folder / "2.png", 2, size=(160, 240))  # narrower: centred, black bars left/right
    save(folder / "3.png", 3, size=(640, 480))  # larger: scaled down to fit
    save(folder / "4.png", 4, size=(321, 241))  # a pixel too big each way: scaled to fit
    tasks = process_images(post, run_jobs, mongo, "mixed")
    assert (tasks[0]["videoResolutionWidth"], tasks[0]["videoResolutionHeight"]) == (320, 240)
    grays = list(decode_gray(Path(tasks[0]["videoPath"])))
    assert all(g.shape == (240, 320) for g in grays)
    assert read_barcode(grays[0]) == 1
    assert read_barcode(grays[1][:, 80:240]) == 2
    assert grays[1][:, :70].mean() < 20 and grays[1][:, 250:].mean() < 20  # the bars
    assert read_barcode(grays[2]) == 3
    assert read_barcode(grays[3]) == 4


def test_odd_sized_first_image_padded(contents, post, run_jobs, mongo):
    save(contents / "uploads" / "odd.png", 9, size=(321, 241))
    tasks = process_images(post, run_jobs, mongo, "odd.png")
    assert (tasks[0]["videoResolutionWidth"], tasks[0]["videoResolutionHeight"]) == (322, 242)
    assert clip_barcodes(Path(tasks[0]["videoPath"]), crop=(321, 241)) == [9]


@pytest.mark.parametrize("width, height", [(1920, 1080), (322, 242), (64, 2)])
def test_a_frames_jpeg_shows_what_its_rgb_conversion_shows(width, height):
    """encode_jpeg compresses the YUV planes as they are (rows padded or not):
    decoded, the JPEG matches OpenCV's BT.601 conversion of the frame to within
    JPEG's own loss."""
    rng = np.random.default_rng(width)
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    rgb = np.clip(gradient + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    shown = cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    jpeg = cv2.imdecode(np.frombuffer(encode_jpeg(frame, 95), np.uint8), cv2.IMREAD_COLOR)
    assert jpeg.shape == shown.shape
    assert np.abs(jpeg.astype(int) - shown.astype(int)).mean() < 4


def test_a_floating_point_image_is_refused_not_turned_black(contents, post, run_jobs, mongo):
    values = barcode_image(5, 320, 240)[..., 0].astype(np.float32) / 255  # 0.0-1.0
    Image.fromarray(values, "F").save(contents / "uploads" / "x.tif")
    assert post(content_path="uploads/x.tif", frame_rate=2, content_type=2).status_code == 202
    run_jobs()
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 2 and upload["errorMessage"]["code"] == "bad_image"
    assert "floating-point" in upload["errorMessage"]["message"]


def test_a_multi_frame_image_gives_its_first_frame(contents, post, run_jobs, mongo):
    """As the README says: send the frames as images to get them all."""
    pages = [Image.fromarray(barcode_image(i, 320, 240)) for i in (4, 5, 6)]
    pages[0].save(contents / "uploads" / "pages.tiff", save_all=True, append_images=pages[1:])
    tasks = process_images(post, run_jobs, mongo, "pages.tiff")
    assert [clip_barcodes(Path(t["videoPath"])) for t in tasks] == [[4]]
