"""``model.json``: what a model version is, validated at start-up."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotation.tracking import TrackerSettings, parse_tracker
from exceptions import ConfigError

FORMATS = ("torchscript", "torch_export", "onnx", "mtcnn")
OUTPUTS = ("boxes", "yolo")  # decoded [N, K, 6] boxes, or YOLOv8 raw [N, 4 + C, anchors]
COLOR_ORDERS = ("rgb", "bgr")


@dataclass(frozen=True)
class ModelManifest:
    folder: Path
    name: str
    version: int
    labels: tuple[str, ...]
    format: str
    weights: str  # file name inside the folder ("" for the built-in MTCNN)
    output: str
    input_width: int
    input_height: int
    score_threshold: float
    nms_threshold: float
    color_order: str
    letterbox: bool
    # How the version's boxes of a video become tracks (annotation/tracking.py).
    tracker: TrackerSettings = field(default_factory=TrackerSettings)

    @property
    def weights_path(self) -> Path:
        return self.folder / self.weights


def load_manifest(folder: Path, version: int) -> ModelManifest:
    """The manifest of ``folder``, or ConfigError naming the file and the field."""
    path = folder / "model.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"annotation.version_{version}: {path} not found") from None
    except ValueError as exc:
        raise ConfigError(f"annotation.version_{version}: {path} is not valid JSON ({exc})") \
            from None
    if not isinstance(data, dict):
        raise ConfigError(f"annotation.version_{version}: {path} must hold a JSON object")
    return _validate(data, folder, version, path)


def _validate(data: dict[str, Any], folder: Path, version: int, path: Path) -> ModelManifest:
    def fail(field: str, reason: str) -> ConfigError:
        return ConfigError(f"annotation.version_{version}: {path}: {field} {reason}")

    fmt = data.get("format")
    if fmt not in FORMATS:
        raise fail("format", f"must be one of {', '.join(FORMATS)}")
    labels = data.get("labels")
    if not isinstance(labels, list) or not labels or \
            not all(isinstance(x, str) and x for x in labels):
        raise fail("labels", "must be a non-empty list of names")
    size = data.get("input_size", [640, 640])
    if not (isinstance(size, list) and len(size) == 2 and
            all(isinstance(x, int) and 8 <= x <= 8192 for x in size)):
        raise fail("input_size", "must be [width, height] in pixels")
    weights = data.get("weights", "")
    if fmt != "mtcnn":
        if not isinstance(weights, str) or not weights:
            raise fail("weights", "must name the weights file")
        if not (folder / weights).is_file():
            raise fail("weights", f"file {folder / weights} not found")
    output = data.get("output", "boxes")
    if output not in OUTPUTS:
        raise fail("output", f"must be one of {', '.join(OUTPUTS)}")
    manifest = ModelManifest(
        folder=folder, name=str(data.get("name") or folder.name), version=version,
        labels=tuple(labels), format=fmt, weights=weights or "", output=output,
        input_width=size[0], input_height=size[1],
        score_threshold=_fraction(data, "score_threshold", 0.25, fail),
        nms_threshold=_fraction(data, "nms_threshold", 0.45, fail),
        color_order=_choice(data, "color_order", "rgb", COLOR_ORDERS, fail),
        letterbox=_flag(data, "letterbox", True, fail), tracker=_tracker(data, fail))
    declared = data.get("version")
    if declared is not None and declared != version:
        raise fail("version", f"is {declared!r} but the folder is registered as version {version}")
    return manifest


def _fraction(data: dict, field: str, default: float, fail) -> float:
    value = data.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise fail(field, "must be a number between 0 and 1")
    return float(value)


def _choice(data: dict, field: str, default: str, choices: tuple[str, ...], fail) -> str:
    value = data.get(field, default)
    if value not in choices:
        raise fail(field, f"must be one of {', '.join(choices)}")
    return value


def _flag(data: dict, field: str, default: bool, fail) -> bool:
    value = data.get(field, default)
    if not isinstance(value, bool):
        raise fail(field, "must be true or false")
    return value


def _tracker(data: dict, fail) -> TrackerSettings:
    try:
        return parse_tracker(data.get("tracker"))
    except ValueError as exc:
        raise fail("tracker", str(exc)) from None

