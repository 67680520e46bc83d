"""Detectors: RGB frames in, boxes in the frames' own pixels out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from annotation import boxes as box_ops
from annotation.manifest import ModelManifest
from exceptions import ServiceError


class ModelError(ServiceError):
    """A registered model cannot be used (its output does not match its manifest, ...)."""

    code = "model_error"


@dataclass(frozen=True)
class Detection:
    label: str
    x: float  # top-left corner and size, in pixels of the frame given
    y: float
    w: float
    h: float
    score: float


class Detector(Protocol):
    manifest: ModelManifest

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]: ...


def load_detector(manifest: ModelManifest, device: str, threads: int) -> Detector:
    if manifest.format == "mtcnn":
        return FaceDetector(manifest, device, threads)
    from annotation.runtimes import load_runner
    try:
        runner = load_runner(manifest, device, threads)
    except Exception as exc:  # a corrupt or incompatible weights file
        raise ModelError(f"version {manifest.version}: cannot load {manifest.weights_path.name}"
                         f" ({exc})") from exc
    return ExportedDetector(manifest, runner)


def _to_detections(rows: np.ndarray, labels: tuple[str, ...], version: int) -> list[Detection]:
    """[N, 6] x1, y1, x2, y2, score, class -> detections."""
    found = []
    for x1, y1, x2, y2, score, cls in rows.tolist():
        if not 0 <= int(cls) < len(labels):
            raise ModelError(f"version {version}: the model returned class {int(cls)}, but the "
                             f"manifest lists {len(labels)} labels")
        found.append(Detection(labels[int(cls)], x1, y1, x2 - x1, y2 - y1, score))
    return found


class ExportedDetector:
    """A TorchScript / torch.export / ONNX model with the manifest's pre/post-processing."""

    def __init__(self, manifest: ModelManifest, runner) -> None:
        self.manifest = manifest
        self.runner = runner

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        if not frames:
            return []
        m = self.manifest
        inputs, geometry = zip(*(self._prepare(frame) for frame in frames))
        batch = box_ops.to_input_tensor(list(inputs))
        try:
            output = np.asarray(self.runner(batch))
        except Exception as exc:
            raise ModelError(f"version {m.version}: inference failed ({exc})") from exc
        self._check_shape(output, len(frames))
        if m.output == "yolo":
            rows = box_ops.decode(output, m.score_threshold, m.nms_threshold,
                                  letterboxes=list(geometry))
        else:
            rows = box_ops.decode_topk(output, m.score_threshold, m.nms_threshold,
                                       letterboxes=list(geometry))
        return [_to_detections(r, m.labels, m.version) for r in rows]

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, box_ops.Letterbox]:
        m = self.manifest
        size = (m.input_height, m.input_width)
        if m.letterbox:
            image, geometry = box_ops.letterbox(frame, size)
        else:
            image, geometry = box_ops.stretch(frame, size)
        if m.color_order == "bgr":
            image = image[..., ::-1]
        return image, geometry

    def _check_shape(self, output: np.ndarray, count: int) -> None:
        m = self.manifest
        if m.output == "yolo":
            expected = f"[{count}, {4 + len(m.labels)}, anchors]"
            ok = output.ndim == 3 and output.shape[0] == count and \
                output.shape[1] == 4 + len(m.labels)
        else:
            expected = f"[{count}, K, 6]"
            ok = output.ndim == 3 and output.shape[0] == count and output.shape[2] == 6
        if not ok:
            raise ModelError(f"version {m.version}: the model's output shape "
                             f"{list(output.shape)} does not match output '{m.output}' of its "
                             f"manifest (expected {expected})")


class FaceDetector:
    """The built-in version: MTCNN with the weights of the facenet-pytorch wheel (install.sh)."""

    def __init__(self, manifest: ModelManifest, device: str, threads: int) -> None:
        import torch

        from annotation.mtcnn import MTCNNDetector, default_weights_dir
        torch.set_num_threads(threads)
        self.manifest = manifest
        try:
            self.model = MTCNNDetector(default_weights_dir(manifest.folder), device=device)
        except FileNotFoundError as exc:
            raise ModelError(f"version {manifest.version}: {exc}") from exc

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        if not frames:
            return []
        label = self.manifest.labels[0]
        threshold = self.manifest.score_threshold
        return [[Detection(label, x1, y1, x2 - x1, y2 - y1, score)
                 for x1, y1, x2, y2, score in found if score >= threshold]
                for found in self.model.detect(frames)]
