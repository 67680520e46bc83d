"""Auto-annotation end to end: a detector trained here, saved in every supported
format, registered as versions and used through the API; the built-in face detector."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from model_export import export_onnx, export_pt2, export_torchscript
from tiny_detector import ExportWrapper, train

from annotation.registry import ModelRegistry
from config import load_config
from exceptions import ConfigError

SIDE = 40  # the square's side in source pixels
# version: (format, output layout, file) -- every format in both layouts
VERSIONS = {2: ("torchscript", "boxes"), 3: ("torchscript", "yolo"),
            4: ("torch_export", "boxes"), 5: ("torch_export", "yolo"),
            6: ("onnx", "boxes"), 7: ("onnx", "yolo")}
EXPORT = {"torchscript": (export_torchscript, "model.torchscript.pt"),
          "torch_export": (export_pt2, "model.pt2"), "onnx": (export_onnx, "model.onnx")}


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[int, Path]:
    """The tiny square detector, trained in seconds, saved as six registered versions."""
    model = train(seed=0, steps=300)
    example = torch.zeros(1, 3, 64, 64)
    folders = {}
    for version, (fmt, output) in VERSIONS.items():
        folder = tmp_path_factory.mktemp(f"v{version}")
        export, name = EXPORT[fmt]
        layout = "yolov8" if output == "yolo" else "decoded"
        export(ExportWrapper(model, layout), example, str(folder / name))
        write_manifest(folder, version=version, format=fmt, weights=name, output=output)
        folders[version] = folder
    return folders


def write_manifest(folder: Path, **fields) -> None:
    manifest = {"name": "squares", "labels": ["square"], "input_size": [64, 64],
                "score_threshold": 0.3, "nms_threshold": 0.5, "color_order": "rgb",
                "letterbox": True, **fields}
    (folder / "model.json").write_text(json.dumps(manifest))


@pytest.fixture
def versions_env(env, model_dirs) -> dict[str, str]:
    return {**env, **{f"ANNOTATION_VERSION_{v}": str(p) for v, p in model_dirs.items()}}


@pytest.fixture
def aa_client(versions_env, mongo):
    from app import create_app
    return create_app(load_config(env=versions_env)).test_client()


def square_position(i: int) -> tuple[int, int]:
    return 8 + 3 * i, 10 + (i % 20) * 2


def square_video(path: Path, frames: int, size=(128, 96), rotation=0, pix_fmt="yuv420p") -> Path:
    """A bright square moving over noise along square_position."""
    width, height = size
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"crf": "18"}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            image = (rng.random((height, width, 3)) * 128).astype(np.uint8)
            x, y = square_position(i)
            image[y:y + SIDE, x:x + SIDE] = 230
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def expected_box(i: int, size: tuple[int, int], rotation: int) -> np.ndarray:
    """The square of source frame i in task-clip pixels (rotation applied), x1 y1 x2 y2."""
    mask = np.zeros((size[1], size[0]), bool)
    x, y = square_position(i)
    mask[y:y + SIDE, x:x + SIDE] = True
    mask = np.rot90(mask, k=rotation // 90)
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def post_aa(client, **fields):
    from conftest import AUTH_KEY
    body = {"auth_key": AUTH_KEY, "upload_id": "u1", "project_id": "p1", "frame_rate": 10,
            "content_path": "uploads/sq.mp4", "request_type": 1, "auto_anno_version": 2,
            "content_type": 1, **fields}
    return client.post("/api/processContent", json={k: v for k, v in body.items()
                                                     if v is not None})


def run_all(versions_env) -> None:
    import threading

    from engines.embedded import worker_loop
    worker_loop(load_config(env=versions_env), threading.Event(), drain=True)


def ious_of_upload(mongo, size, rotation) -> list[float]:
    scores = []
    for task in mongo.frames.tasks_of("u1"):
        for frame in mongo.frames.frames_of(task["_id"]):
            boxes = [b for b in frame["boxes"] if b["source"].startswith("auto:")]
            if not boxes:
                scores.append(0.0)
                continue
            best = max(boxes, key=lambda b: b["confidence"])
            found = np.array([best["x"], best["y"], best["x"] + best["w"], best["y"] + best["h"]])
            scores.append(iou(found, expected_box(frame["sourceFrame"], size, rotation)))
    return scores


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_format_finds_the_square_while_cutting(version, aa_client, versions_env, mongo,
                                                     contents):
    square_video(contents / "uploads" / "sq.mp4", 30)
    assert post_aa(aa_client, auto_anno_version=version).status_code == 202
    run_all(versions_env)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 1, upload["errorMessage"]
    tasks = mongo.frames.tasks_of("u1")
    assert {t["AutoAnnotationVersion"] for t in tasks} == {version}
    scores = ious_of_upload(mongo, (128, 96), 0)
    assert len(scores) == 30
    assert sum(s > 0.5 for s in scores) >= 27, scores  # nearly every frame
    frame = mongo.frames.frames_of(tasks[0]["_id"])[0]
    box = frame["boxes"][0]
    assert box["label"] == "square" and box["source"] == f"auto:v{version}"
    assert 0 < box["confidence"] <= 1 and frame["isEmpty"] is False


@pytest.mark.parametrize("rotation,size,pix_fmt", [(90, (128, 96), "yuv420p"),
                                                   (0, (129, 97), "yuv444p")])
def test_boxes_are_in_clip_pixels(rotation, size, pix_fmt, aa_client, versions_env, mongo,
                                  contents):
    square_video(contents / "uploads" / "sq.mp4", 20, size=size, rotation=rotation,
                 pix_fmt=pix_fmt)
    assert post_aa(aa_client, auto_anno_version=6).status_code == 202
    run_all(versions_env)
    assert mongo.uploads.get_upload("u1")["status"] == 1
    scores = ious_of_upload(mongo, size, rotation)
    assert sum(s > 0.5 for s in scores) >= 18, scores


def test_annotations_only_replace_that_version_and_spare_user_boxes(aa_client, versions_env,
                                                                    mongo, contents):
    square_video(contents / "uploads" / "sq.mp4", 20)
    post_aa(aa_client, auto_anno_version=2)
    run_all(versions_env)
    frames = mongo.frames.frames_of(mongo.frames.tasks_of("u1")[0]["_id"])
    user_box = {"id": "u-1", "label": "square", "x": 1, "y": 2, "w": 3, "h": 4,
                "confidence": 1.0, "source": "user"}
    mongo.collections.frames.update_one({"_id": frames[0]["_id"]}, {"$push": {"boxes": user_box}})
    mongo.collections.frames.update_one({"_id": frames[1]["_id"]},
                                        {"$set": {"isUserAnnotated": True, "boxes": [user_box]}})
    old_ids = {b["id"] for f in mongo.frames.frames_of(frames[0]["taskId"]) for b in f["boxes"]}
    for version in (2, 7):  # the same version again, then another one
        response = post_aa(aa_client, request_type=2, auto_anno_version=version,
                           content_path=None, frame_rate=None)
        assert response.status_code == 202, response.json
        run_all(versions_env)
        assert mongo.uploads.get_upload("u1")["status"] == 1
    after = {f["frameId"]: f for f in mongo.frames.frames_of(frames[0]["taskId"])}
    first = after[1]["boxes"]
    assert user_box in first
    assert sorted(b["source"] for b in first) == ["auto:v2", "auto:v7", "user"]
    assert not {b["id"] for b in first if b["source"] == "auto:v2"} & old_ids  # replaced
    assert after[2]["boxes"] == [user_box]  # a user-annotated frame is never touched
    assert all(len([b for b in f["boxes"] if b["source"] == "auto:v2"]) <= 1
               for f in after.values())
    assert {t["AutoAnnotationVersion"] for t in mongo.frames.tasks_of("u1")} == {7}
    assert mongo.uploads.get_upload("u1")["taskCount"] == 2


def test_annotations_only_from_the_clip_when_frames_were_not_kept(versions_env, mongo,
                                                                  contents):
    from app import create_app
    env = {**versions_env, "PROCESSING_KEEP_FRAMES": "false"}
    client = create_app(load_config(env=env)).test_client()
    square_video(contents / "uploads" / "sq.mp4", 20)
    post_aa(client, request_type=0, auto_anno_version=0)
    run_all(env)
    assert post_aa(client, request_type=2, auto_anno_version=3, content_path=None,
                   frame_rate=None).status_code == 202
    run_all(env)
    assert mongo.uploads.get_upload("u1")["status"] == 1
    scores = ious_of_upload(mongo, (128, 96), 0)
    assert sum(s > 0.5 for s in scores) >= 18, scores


def test_built_in_face_detector_finds_the_astronaut(env, mongo, contents):
    from PIL import Image
    from skimage import data

    from app import create_app
    Image.fromarray(data.astronaut()).save(contents / "uploads" / "astronaut.png")
    client = create_app(load_config(env=env)).test_client()  # version 1 is in config.cfg
    response = post_aa(client, content_path="uploads/astronaut.png", content_type=2,
                       auto_anno_version=1, frame_rate=1)
    assert response.status_code == 202
    run_all(env)
    assert mongo.uploads.get_upload("u1")["status"] == 1
    boxes = mongo.frames.frames_of(mongo.frames.tasks_of("u1")[0]["_id"])[0]["boxes"]
    assert [b["label"] for b in boxes] == ["face"]
    found = np.array([boxes[0]["x"], boxes[0]["y"], boxes[0]["x"] + boxes[0]["w"],
                      boxes[0]["y"] + boxes[0]["h"]])
    assert iou(found, np.array([180, 62, 266, 170])) > 0.5  # hand-checked face position
    assert boxes[0]["confidence"] > 0.95 and boxes[0]["source"] == "auto:v1"


def test_face_weights_are_read_beside_the_manifest(tmp_path):
    """install.sh unpacks the wheel's weights into models/mtcnn; a folder without
    them falls back to an installed facenet_pytorch package, or names install.sh."""
    import importlib.util

    from annotation.mtcnn import default_weights_dir
    built_in = Path(__file__).resolve().parent.parent / "models" / "mtcnn"
    assert default_weights_dir(built_in) == str(built_in)
    for name in ("pnet", "rnet", "onet"):  # what install.sh wrote, unpickled safely
        assert torch.load(built_in / f"{name}.pt", map_location="cpu", weights_only=True)
    if importlib.util.find_spec("facenet_pytorch") is None:
        with pytest.raises(FileNotFoundError, match="install.sh"):
            default_weights_dir(tmp_path)
    else:
        assert default_weights_dir(tmp_path).endswith("facenet_pytorch/data")


def test_wrong_output_shape_ends_with_a_reason(tmp_path, model_dirs, env, mongo, contents):
    from app import create_app
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "model.onnx").write_bytes((model_dirs[7] / "model.onnx").read_bytes())
    # The model has one class; this manifest promises two.
    write_manifest(folder, format="onnx", weights="model.onnx", output="yolo",
                   labels=["square", "circle"])
    bad_env = {**env, "ANNOTATION_VERSION_9": str(folder)}
    client = create_app(load_config(env=bad_env)).test_client()
    square_video(contents / "uploads" / "sq.mp4", 10)
    assert post_aa(client, auto_anno_version=9).status_code == 202
    run_all(bad_env)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 2 and upload["errorMessage"]["code"] == "model_error"
    assert "output shape" in upload["errorMessage"]["message"]
    assert mongo.collections.tasks.count_documents({}) == 0


@pytest.mark.parametrize("change,needle", [
    ({"format": "caffe"}, "format"),
    ({"labels": []}, "labels"),
    ({"weights": "missing.onnx"}, "missing.onnx"),
    ({"output": "masks"}, "output"),
    ({"input_size": [640]}, "input_size"),
    ({"score_threshold": 2}, "score_threshold"),
    ({"version": 5}, "version"),
])
def test_bad_manifests_stop_start_up(tmp_path, model_dirs, change, needle):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.onnx").write_bytes((model_dirs[6] / "model.onnx").read_bytes())
    write_manifest(folder, **{"format": "onnx", "weights": "model.onnx", "output": "boxes",
                              **change})
    config = load_config(env={"SERVER_AUTH_KEY": "k", "ANNOTATION_VERSION_4": str(folder)})
    with pytest.raises(ConfigError) as error:
        ModelRegistry(config.annotation)
    assert needle in str(error.value) and "version_4" in str(error.value)


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_unreadable_manifest_files(tmp_path, content):
    if content is not None:
        (tmp_path / "model.json").write_text(content)
    config = load_config(env={"SERVER_AUTH_KEY": "k", "ANNOTATION_VERSION_3": str(tmp_path)})
    with pytest.raises(ConfigError, match="model.json"):
        ModelRegistry(config.annotation)


def test_missing_frames_end_with_a_reason_not_a_hang(aa_client, versions_env, mongo, contents):
    square_video(contents / "uploads" / "sq.mp4", 20)
    post_aa(aa_client, auto_anno_version=2)
    run_all(versions_env)
    task = mongo.frames.tasks_of("u1")[0]
    for frame in mongo.frames.frames_of(task["_id"])[3:]:
        Path(frame["imagePath"]).unlink()  # frames lost: the clip is decoded instead...
    square_video(Path(task["videoPath"]), 3)  # ...which holds fewer frames than its documents
    assert post_aa(aa_client, request_type=2, auto_anno_version=2, content_path=None,
                   frame_rate=None).status_code == 202
    run_all(versions_env)
    upload = mongo.uploads.get_upload("u1")
    assert upload["status"] == 2 and upload["errorMessage"]["code"] == "frames_missing"
