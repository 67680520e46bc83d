"""The dataset health report (jobs/dataset_report.py) on versions written by the
real exporter (datasets/export.py) from generated frames: its numbers equal
counts taken independently from the YOLO, COCO and MOT files, and its flags
fire on a version made to deserve them, and only there."""
from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.export import TaskFrames, export_version
from datasets.health import ASPECT_BINS, ASPECT_RANGE, HEAT_BINS, SIZE_BINS, scan
from datasets.spec import VersionSpec
from jobs.dataset_report import write_report
from storage.s3_store import ChecksumCache

LABELS = ("car", "person", "bike")
WIDTH, HEIGHT = 320, 180
FRAMES = 40  # per upload


def spec(labels=LABELS, formats=("YOLO", "COCO", "MOT")) -> VersionSpec:
    return VersionSpec("v1", "v1", ("p",), (), tuple(labels), (("train", 50.0), ("val", 50.0)),
                       (1, 5), tuple(formats), "datasets/v1")


def frame_image(path: Path, seed: int) -> str:
    """A distinct JPEG per seed: noise over a gradient."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, :, 0] = np.linspace(0, 255, WIDTH, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=80)
    return str(path)


def selection(frames_dir: Path, rare: bool = False) -> list[TaskFrames]:
    """Two uploads, one task each; every frame has 0-4 boxes of the three classes
    (tracked across frames), and with ``rare`` one frame carries a fourth class."""
    rng = np.random.default_rng(7)
    items = []
    for u, upload in enumerate(("upA", "upB")):
        task = {"_id": f"t{u}", "uploadId": upload, "taskName": f"task-1-{upload}",
                "videoResolutionWidth": WIDTH, "videoResolutionHeight": HEIGHT, "frameRate": 5}
        frames = []
        for i in range(FRAMES):
            boxes = []
            for track in range(int(rng.integers(0, 5))):
                w, h = float(rng.uniform(8, 120)), float(rng.uniform(8, 90))
                boxes.append({"label": LABELS[track % 3], "x": float(rng.uniform(0, WIDTH - w)),
                              "y": float(rng.uniform(0, HEIGHT - h)), "w": w, "h": h,
                              "source": "auto:v1", "trackId": track})
            if rare and u == 0 and i == 3:
                boxes.append({"label": "kite", "x": 10, "y": 10, "w": 20, "h": 20})
            frames.append({"frameId": i + 1, "sourceFrame": i * 6, "boxes": boxes,
                           "imagePath": frame_image(frames_dir / upload / f"{i}.jpg",
                                                    u * 1000 + i)})
        items.append(TaskFrames(task, frames))
    return items


@pytest.fixture
def clean(tmp_path) -> Path:
    root = tmp_path / "datasets" / "clean"
    export_version(spec(), root, selection(tmp_path / "frames"))
    return root


@pytest.fixture
def flawed(tmp_path) -> Path:
    """A class in one frame only (missing from a split, under 1 %), a box
    reaching outside its image, an image repeated under another name."""
    items = selection(tmp_path / "frames-flawed", rare=True)
    frames = items[1].frames
    shutil.copyfile(frames[0]["imagePath"], frames[5]["imagePath"])
    root = tmp_path / "datasets" / "flawed"
    export_version(spec(LABELS + ("kite",)), root, items)
    label = sorted((root / "labels").glob("*/*.txt"))[0]  # the exporter clips: edit a file
    label.write_text(label.read_text() + "1 0.950000 0.500000 0.200000 0.100000\n")
    return root


def yolo_counts(root: Path) -> dict:
    """Per split: images, images without boxes, boxes per class, straight from the files."""
    counts: dict = {}
    for path in sorted(root.glob("labels/*/*.txt")):
        split = counts.setdefault(path.parent.name, {"images": 0, "empty": 0,
                                                     "boxes": Counter(), "with": Counter()})
        rows = [line.split() for line in path.read_text().splitlines()]
        split["images"] += 1
        split["empty"] += not rows
        split["boxes"].update(int(r[0]) for r in rows)
        split["with"].update({int(r[0]) for r in rows})
    return counts


def coco_counts(root: Path) -> dict:
    counts = {}
    for path in sorted(root.glob("annotations/*.json")):
        coco = json.loads(path.read_text())
        boxed = {a["image_id"] for a in coco["annotations"]}
        with_class = {(a["image_id"], a["category_id"]) for a in coco["annotations"]}
        counts[path.stem] = {
            "images": len(coco["images"]), "empty": len(coco["images"]) - len(boxed),
            "boxes": Counter(a["category_id"] - 1 for a in coco["annotations"]),
            "with": Counter(c - 1 for _, c in with_class)}
    return counts


def as_counts(summary: dict, names) -> dict:
    return {split: {"images": s["images"], "empty": s["imagesWithoutBoxes"],
                    "boxes": Counter({names.index(n): c for n, c in s["boxesPerClass"].items()
                                      if c}),
                    "with": Counter({names.index(n): c for n, c in s["imagesPerClass"].items()
                                     if c})}
            for split, s in summary["splits"].items()}


def test_numbers_equal_the_yolo_coco_and_mot_files(clean, tmp_path):
    summary = write_report(clean, tmp_path / "report.html")
    assert summary["source"] == "YOLO" and summary["classes"] == list(LABELS)
    assert as_counts(summary, LABELS) == yolo_counts(clean) == coco_counts(clean)
    assert summary["overall"]["images"] == 2 * FRAMES
    assert summary["overall"]["boxes"] == sum(sum(c["boxes"].values())
                                              for c in coco_counts(clean).values()) > 100
    assert summary["flags"] == []
    # Tracks: one MOT id per (upload, trackId), counted from gt.txt directly.
    ids = defaultdict(set)
    lengths = Counter()
    for gt in clean.glob("mot/*/gt/gt.txt"):
        for line in gt.read_text().splitlines():
            frame, track, *_, cls, _ = line.split(",")
            ids[LABELS[int(cls) - 1]].add((gt.parent.parent.name, track))
            lengths[(gt.parent.parent.name, track)] += 1
    assert summary["tracks"]["perClass"] == {k: len(v) for k, v in sorted(ids.items())}
    assert sum(summary["tracks"]["lengths"].values()) == len(lengths)
    sequences = Counter(p.name.rsplit("-s", 1)[0] for p in clean.glob("mot/*") if p.is_dir())
    assert summary["tracks"]["shotsPerUpload"] == dict(sorted(sequences.items())) != {}
    # The COCO files alone (a version exported without YOLO) give the same numbers.
    coco_only = tmp_path / "coco-only"
    shutil.copytree(clean, coco_only, ignore=shutil.ignore_patterns("labels", "data.yaml"))
    again = scan(coco_only)
    assert again.source == "COCO"
    assert again.overall.boxes == scan(clean).overall.boxes


def test_histograms_match_the_coco_boxes(clean):
    health = scan(clean)
    size, aspect, heat = Counter(), Counter(), Counter()
    for path in clean.glob("annotations/*.json"):
        for a in json.loads(path.read_text())["annotations"]:
            x, y, w, h = a["bbox"]
            size[min(int(math.sqrt(w * h / (WIDTH * HEIGHT)) * SIZE_BINS), SIZE_BINS - 1)] += 1
            ratio = (math.log2(w / h) + ASPECT_RANGE) / (2 * ASPECT_RANGE) * ASPECT_BINS
            aspect[min(max(int(ratio), 0), ASPECT_BINS - 1)] += 1
            heat[(min(int((y + h / 2) / HEIGHT * HEAT_BINS), HEAT_BINS - 1),
                  min(int((x + w / 2) / WIDTH * HEAT_BINS), HEAT_BINS - 1))] += 1
    overall = health.overall
    # COCO rounds to 1/1000 px, YOLO to 1e-6 of the side: a box on a bin edge may differ.
    assert sum(abs(overall.size[i] - size[i]) for i in range(SIZE_BINS)) <= 2
    assert sum(abs(overall.aspect[i] - aspect[i]) for i in range(ASPECT_BINS)) <= 2
    assert sum(abs(overall.heat[r][c] - heat[(r, c)])
               for r in range(HEAT_BINS) for c in range(HEAT_BINS)) <= 4
    assert sum(overall.size) == sum(overall.aspect) == sum(size.values())


def test_flags_fire_on_a_version_made_to_deserve_them(flawed, tmp_path):
    summary = write_report(flawed, tmp_path / "report.html")
    codes = Counter(flag["code"] for flag in summary["flags"])
    missing = {(f["class"], f["split"]) for f in summary["flags"]
               if f["code"] == "class_missing_in_split"}
    kite_split = next(s for s, c in yolo_counts(flawed).items() if c["boxes"][3])
    assert missing == {("kite", split) for split in summary["splits"] if split != kite_split}
    assert [f["class"] for f in summary["flags"] if f["code"] == "rare_class"] == ["kite"]
    assert summary["overall"]["outsideBoxes"] == 1 and codes["boxes_outside"] == 1
    assert summary["duplicateImages"] == 1
    [group] = summary["duplicates"]
    assert len(group) == 2 and all("upB__task-1-upB__" in name for name in group)
    # The same from the build's checksum cache (its ETags), reading no image.
    cache = ChecksumCache(flawed, 8 * 1024 * 1024)
    assert scan(flawed, etag=cache.etag).duplicates == [group]
    page = (tmp_path / "report.html").read_text()
    assert "reach outside their image" in page and "kite" in page


def test_the_page_is_self_contained_and_stable(clean, tmp_path):
    first = write_report(clean, tmp_path / "a.html")
    second = write_report(clean, tmp_path / "b.html")
    page = (tmp_path / "a.html").read_text()
    assert page == (tmp_path / "b.html").read_text()  # a rebuild re-uploads nothing
    assert first["samples"] == second["samples"] and len(first["samples"]) == 12
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r"<(script|link)\b", page) and "http" not in page.replace(
        "http-equiv", "")
    jpegs = [s for s in sources if s.startswith("data:image/jpeg")]
    assert len(jpegs) == 12
    # Each sample is its frame with its boxes drawn: along a box's top edge the
    # picture differs from the plain frame (the line), away from boxes it does not.
    samples = {s.name: s for s in scan(clean).samples}
    for name, src in zip(first["samples"], jpegs):
        drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))
        plain = np.asarray(Image.open(clean / name).convert("RGB"))
        assert drawn.shape == plain.shape
        diff = np.abs(drawn.astype(int) - plain.astype(int)).mean(axis=2)
        if not samples[name].boxes:
            assert diff.mean() < 12, name  # JPEG re-encoding only
            continue
        cls, cx, cy, w, h = max(samples[name].boxes, key=lambda b: b[3])  # the widest
        top, left, right = round((cy - h / 2) * HEIGHT), round((cx - w / 2) * WIDTH), \
            round((cx + w / 2) * WIDTH)
        assert diff[max(top, 1), left + 2:right - 2].mean() > 40, name
    # The counts the page shows are the summary's.
    assert f"{first['overall']['images']} images, {first['overall']['boxes']} boxes" in page


@pytest.mark.parametrize("format_, options", [("JPEG", {}), ("JPEG", {"progressive": True}),
                                              ("JPEG", {"exif": b"Exif\x00\x00" + b"\x00" * 64}),
                                              ("PNG", {})])
def test_image_size_from_the_header(tmp_path, format_, options):
    from datasets.image_size import image_size
    path = tmp_path / f"x.{format_.lower()}"
    Image.new("RGB", (123, 45), (10, 20, 30)).save(path, format_, **options)
    assert image_size(path) == (123, 45)
    (tmp_path / "not-an-image").write_bytes(b"GIF89a" + b"\x00" * 40)
    with pytest.raises(ValueError):
        image_size(tmp_path / "not-an-image")
