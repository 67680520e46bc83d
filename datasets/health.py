"""A built dataset version's health, from its files on disk, in one streaming pass.

Reads what ``datasets/export.py`` writes under ``contents/datasets/<id>/``: the
YOLO label files (one per image, an empty one for an image without boxes), or
the COCO files of a version without YOLO, and the MOT ``gt.txt`` files for
tracks. Every box only updates running counters and fixed-size histograms, so
memory does not grow with the number of boxes; what grows with the images is
one small checksum per image (duplicates) and the image size per task (one
JPEG header read per task, as all frames of a task share its size). Pure: no
image decoding (the sample grid is drawn by processors/), no database.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from datasets.image_size import image_size
from datasets.spec import SPLIT_TYPES

SIZE_BINS = 20  # sqrt(w * h) as a fraction of the image's side: 0..1
ASPECT_BINS = 24  # log2 of width / height in pixels: -3..3 (beyond is clamped)
ASPECT_RANGE = 3.0
HEAT_BINS = 24  # box centres on a HEAT_BINS x HEAT_BINS grid over the frame
LENGTH_EDGES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # track length bins (frames)
TOLERANCE = 1e-5  # YOLO coordinates carry 6 decimals: 1.0000005 is still inside
RARE_SHARE = 0.01  # a class under 1 % of the boxes is flagged
EXAMPLES = 5  # names kept per flag, to point at
IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg", ".webp", ".bmp")


@dataclass
class SplitStats:
    """Running counters of one split (or of all of them)."""

    classes: int
    images: int = 0
    empty_images: int = 0
    boxes: list[int] = field(default_factory=list)  # per class
    images_with: list[int] = field(default_factory=list)  # images with >= 1 box of a class
    outside: int = 0  # boxes reaching outside the image
    invalid: int = 0  # label lines that are not "class cx cy w h" with a known class
    size: list[int] = field(default_factory=lambda: [0] * SIZE_BINS)
    aspect: list[int] = field(default_factory=lambda: [0] * ASPECT_BINS)
    heat: list[list[int]] = field(
        default_factory=lambda: [[0] * HEAT_BINS for _ in range(HEAT_BINS)])

    def __post_init__(self) -> None:
        self.boxes = self.boxes or [0] * self.classes
        self.images_with = self.images_with or [0] * self.classes

    def add_image(self, boxes: list[tuple[int, float, float, float, float]],
                  aspect_of_image: float) -> None:
        """One image's boxes: (class, cx, cy, w, h), normalised to 0..1."""
        self.images += 1
        if not boxes:
            self.empty_images += 1
        for cls in {b[0] for b in boxes}:
            self.images_with[cls] += 1
        # Per box: builtins only (min, max, int), no Python calls: the hot loop.
        counts, size, aspect, heat = self.boxes, self.size, self.aspect, self.heat
        low, high, aspect_scale = -TOLERANCE, 1 + TOLERANCE, ASPECT_BINS / (2 * ASPECT_RANGE)
        for cls, cx, cy, w, h in boxes:
            counts[cls] += 1
            if cx - w / 2 < low or cy - h / 2 < low or cx + w / 2 > high or cy + h / 2 > high:
                self.outside += 1
            size[min(max(int(math.sqrt(max(w * h, 0.0)) * SIZE_BINS), 0), SIZE_BINS - 1)] += 1
            if w > 0 and h > 0:
                ratio = (math.log2(w / h * aspect_of_image) + ASPECT_RANGE) * aspect_scale
                aspect[min(max(int(ratio), 0), ASPECT_BINS - 1)] += 1
            heat[min(max(int(cy * HEAT_BINS), 0), HEAT_BINS - 1)][
                min(max(int(cx * HEAT_BINS), 0), HEAT_BINS - 1)] += 1

    def add(self, other: "SplitStats") -> None:
        for name in ("images", "empty_images", "outside", "invalid"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("boxes", "images_with", "size", "aspect"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, [a + b for a, b in zip(mine, theirs)])
        self.heat = [[a + b for a, b in zip(r, s)] for r, s in zip(self.heat, other.heat)]

    def summary(self, names: list[str]) -> dict:
        return {"images": self.images, "imagesWithoutBoxes": self.empty_images,
                "boxes": sum(self.boxes), "outsideBoxes": self.outside,
                "invalidLines": self.invalid,
                "boxesPerClass": dict(zip(names, self.boxes)),
                "imagesPerClass": dict(zip(names, self.images_with))}


@dataclass
class Tracks:
    """MOT tracks: how many per class, and how long (frames with a box)."""

    per_class: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=lambda: [0] * len(LENGTH_EDGES))
    sequences: int = 0
    # Shots per upload: MOT writes one sequence per upload and shot, named
    # "<uploadId>-s<k>" (datasets/export.py), so a tracker never trains across a cut.
    shots: Counter = field(default_factory=Counter)

    def add_sequence(self, gt: Path, names: list[str]) -> None:
        counts: Counter = Counter()  # one sequence's ids at a time: bounded by its tracks
        classes: dict[int, int] = {}
        with open(gt) as lines:
            for line in lines:
                fields = line.split(",")
                if len(fields) >= 8:
                    counts[int(fields[1])] += 1
                    classes[int(fields[1])] = int(fields[7]) - 1
        self.sequences += 1
        self.shots[gt.parent.parent.name.rsplit("-s", 1)[0]] += 1
        for track, length in counts.items():
            cls = classes[track]
            self.per_class[names[cls] if 0 <= cls < len(names) else str(cls + 1)] += 1
            self.lengths[max(i for i, edge in enumerate(LENGTH_EDGES) if length >= edge)] += 1


@dataclass(frozen=True)
class Sample:
    """An image of the stable sample grid and its boxes (normalised cx, cy, w, h)."""

    key: bytes
    split: str
    name: str  # relative to the version folder
    boxes: tuple[tuple[int, float, float, float, float], ...]


@dataclass
class Health:
    names: list[str]
    splits: dict[str, SplitStats]
    overall: SplitStats
    tracks: Tracks | None
    samples: list[Sample]
    duplicates: list[list[str]]  # groups of image names with the same content
    duplicate_images: int  # images beyond the first of their group
    source: str  # "YOLO" or "COCO": which files the boxes were read from
    flags: list[dict] = field(default_factory=list)


def class_names(root: Path) -> list[str]:
    """The version's classes, in index order: data.yaml, else the first COCO file."""
    yaml = root / "data.yaml"
    if yaml.is_file():
        names, inside = [], False
        for line in yaml.read_text().splitlines():
            if line.startswith("names:"):
                inside = True
            elif inside and line.startswith("  "):
                names.append(json.loads(line.split(":", 1)[1].strip()))  # JSON scalars
            else:
                inside = False
        return names
    for coco in sorted((root / "annotations").glob("*.json")):
        categories = json.loads(coco.read_text())["categories"]
        return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    raise FileNotFoundError(f"{root}: neither data.yaml nor annotations/*.json")


def split_order(split: str) -> tuple[int, str]:
    return (SPLIT_TYPES.index(split) if split in SPLIT_TYPES else len(SPLIT_TYPES), split)


Record = tuple[str, str, list, int, "tuple[int, int] | None"]


def _yolo_images(root: Path, names: list[str]) -> Iterator[Record]:
    """(split, image name, boxes, invalid lines, size if known) per label file, as a stream."""
    splits = sorted((p.name for p in (root / "labels").iterdir() if p.is_dir()),
                    key=split_order)
    for split in splits:
        # Directory order, not sorted: nothing here depends on the order (the sample
        # is chosen by a hash of the name), and a sorted listing would hold it whole.
        with os.scandir(root / "labels" / split) as entries:
            for entry in entries:
                boxes, invalid = [], 0
                with open(entry.path) as lines:
                    for line in lines:
                        box = _yolo_box(line, len(names))
                        if box is None:
                            invalid += bool(line.strip())
                        else:
                            boxes.append(box)
                stem = os.path.splitext(entry.name)[0]
                yield split, _image_name(root, split, stem), boxes, invalid, None


def _image_name(root: Path, split: str, stem: str) -> str:
    """The label's image: the exporter keeps the frame's extension (.jpg for video frames)."""
    for ext in IMAGE_EXTENSIONS:
        name = f"images/{split}/{stem}{ext}"
        if os.path.exists(os.path.join(root, name)):
            return name
    return f"images/{split}/{stem}.jpg"


def _yolo_box(line: str, classes: int) -> tuple[int, float, float, float, float] | None:
    fields = line.split()
    if len(fields) != 5:
        return None
    try:
        cls, cx, cy, w, h = int(fields[0]), float(fields[1]), float(fields[2]), \
            float(fields[3]), float(fields[4])
    except ValueError:
        return None
    if not 0 <= cls < classes or not math.isfinite(cx + cy + w + h):
        return None
    return cls, cx, cy, w, h


def _coco_images(root: Path, names: list[str]) -> Iterator[Record]:
    """The same records from annotations/<split>.json (versions without YOLO).

    One split's file is loaded at a time: memory follows the largest split's
    COCO file here, not the label stream of the YOLO path."""
    for path in sorted((root / "annotations").glob("*.json"), key=lambda p: split_order(p.stem)):
        coco = json.loads(path.read_text())
        per_image: dict[int, list] = defaultdict(list)
        invalid: Counter = Counter()
        sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
        for a in coco["annotations"]:
            width, height = sizes[a["image_id"]]
            x, y, w, h = a["bbox"]
            if 1 <= a["category_id"] <= len(names):
                per_image[a["image_id"]].append((a["category_id"] - 1, (x + w / 2) / width,
                                                 (y + h / 2) / height, w / width, h / height))
            else:
                invalid[a["image_id"]] += 1
        for image in coco["images"]:
            yield (path.stem, image["file_name"], per_image.pop(image["id"], []),
                   invalid[image["id"]], sizes[image["id"]])


def scan(root: Path, sample_size: int = 12,
         etag: Callable[[str], str] | None = None) -> Health:
    """One pass over the version's label files (YOLO, else COCO) and MOT files.

    ``etag``: the build's checksum of a file (by name under ``root``), so that
    finding duplicates reads no image; without it each image is hashed here."""
    names = class_names(root)
    source = "YOLO" if (root / "labels").is_dir() else "COCO"
    records = _yolo_images(root, names) if source == "YOLO" else _coco_images(root, names)
    splits: dict[str, SplitStats] = {}
    sizes: dict[str, tuple[int, int] | None] = {}  # per task: its frames share one size
    checksums = _Checksums(root, etag)
    heap: list[tuple[int, Sample]] = []
    for split, name, boxes, invalid, size in records:
        stats = splits.setdefault(split, SplitStats(len(names)))
        size = size or _task_size(root, name, sizes)
        stats.add_image(boxes, size[0] / size[1] if size and size[1] else 1.0)
        stats.invalid += invalid
        checksums.add(name)
        key = hashlib.blake2b(name.encode(), digest_size=8).digest()
        item = (-int.from_bytes(key, "big"), Sample(key, split, name, tuple(boxes)))
        if len(heap) < sample_size:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:  # a smaller key than the largest kept: stable sample
            heapq.heapreplace(heap, item)
    overall = SplitStats(len(names))
    for stats in splits.values():
        overall.add(stats)
    health = Health(names, splits, overall, _tracks(root, names),
                    sorted((s for _, s in heap), key=lambda s: s.key),
                    *checksums.duplicates(), source=source)
    health.flags = flags(health)
    return health


def _task_size(root: Path, name: str, sizes: dict) -> tuple[int, int] | None:
    """The image size, read from one JPEG/PNG header per task (``<upload>__<task>__<frame>``)."""
    stem = os.path.basename(name)
    group = stem.rsplit("__", 1)[0] if "__" in stem else stem
    if group not in sizes:
        try:
            sizes[group] = image_size(root / name)
        except (OSError, ValueError):
            sizes[group] = None
    return sizes[group]


def _tracks(root: Path, names: list[str]) -> Tracks | None:
    gts = sorted((root / "mot").glob("*/gt/gt.txt"))
    if not gts:
        return None
    tracks = Tracks()
    for gt in gts:
        tracks.add_sequence(gt, names)
    return tracks


class _Checksums:
    """Content checksums of the images, for duplicates: the build's own (``etag``,
    its checksum cache, already in memory), else an MD5 of the file read here."""

    def __init__(self, root: Path, etag: Callable[[str], str] | None) -> None:
        self.root, self.etag = root, etag
        # checksum (8 bytes of it, as an int) -> first image with it: the one
        # structure that grows with the images, at about a hundred bytes each.
        self.first: dict[int, str] = {}
        self.groups: dict[int, list[str]] = {}  # checksum -> its images, when several

    def add(self, name: str) -> None:
        path = os.path.join(self.root, name)
        try:
            if self.etag is not None:  # an image is one part: its ETag is its MD5
                checksum = self.etag(name)
            else:
                with open(path, "rb") as handle:
                    checksum = hashlib.file_digest(handle, "md5").hexdigest()
        except OSError:
            return  # a label without its image: nothing to compare
        key = int.from_bytes(hashlib.blake2b(checksum.encode(), digest_size=8).digest(), "big")
        first = self.first.setdefault(key, name)
        if first != name:
            self.groups.setdefault(key, [first]).append(name)

    def duplicates(self) -> tuple[list[list[str]], int]:
        groups = sorted(sorted(group) for group in self.groups.values())
        return groups, sum(len(g) - 1 for g in groups)


def flags(health: Health) -> list[dict]:
    """What a trainer wants to know before training on the version."""
    found: list[dict] = []
    names, overall = health.names, health.overall
    for split, stats in sorted(health.splits.items(), key=lambda kv: split_order(kv[0])):
        missing = [n for n, count in zip(names, stats.boxes) if count == 0]
        for name in missing:
            found.append({"code": "class_missing_in_split", "class": name, "split": split,
                          "message": f"class {name!r} has no boxes in split {split!r}"})
    total = sum(overall.boxes)
    for name, count in zip(names, overall.boxes):
        if total and count / total < RARE_SHARE:
            found.append({"code": "rare_class", "class": name, "boxes": count,
                          "message": f"class {name!r} has {count} of {total} boxes "
                                     f"({count / total:.2%}, under {RARE_SHARE:.0%})"})
    if overall.outside:
        found.append({"code": "boxes_outside", "boxes": overall.outside,
                      "message": f"{overall.outside} box(es) reach outside their image"})
    if overall.invalid:
        found.append({"code": "invalid_lines", "lines": overall.invalid,
                      "message": f"{overall.invalid} label line(s) are not a box of a known "
                                 "class"})
    if health.duplicate_images:
        found.append({"code": "duplicate_images", "images": health.duplicate_images,
                      "examples": health.duplicates[:EXAMPLES],
                      "message": f"{health.duplicate_images} image(s) repeat another's "
                                 f"content ({len(health.duplicates)} group(s))"})
    return found
