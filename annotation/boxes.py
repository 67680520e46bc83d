"""Model input geometry and box post-processing, numpy only.

Letterboxing as Ultralytics does it; decoding of YOLOv8-family raw outputs
([B, 4 + C, A]: cx, cy, w, h, per-class scores) and of decoded top-K outputs
([B, K, 6]) with class-aware NMS; boxes mapped back to the frame's pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_WH = 7680.0  # class offset for class-aware NMS; > any box coordinate (as Ultralytics)


# --------------------------------------------------------------------------- letterbox
@dataclass(frozen=True)
class Letterbox:
    """How a frame was mapped into the model input: x_in = x_orig * rx + left (same for y)."""
    rx: float
    ry: float
    left: int
    top: int
    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]


def letterbox_params(orig_hw: tuple[int, int], input_hw: tuple[int, int] = (640, 640),
                     scaleup: bool = True) -> Letterbox:
    """Ultralytics LetterBox(auto=False, center=True) geometry without touching pixels."""
    h, w = orig_hw
    r = min(input_hw[0] / h, input_hw[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = (input_hw[1] - new_w) / 2, (input_hw[0] - new_h) / 2
    # Per-axis ratios from the *rounded* resized size: exact inverse of what cv2.resize did.
    return Letterbox(new_w / w, new_h / h, int(round(dw - 0.1)), int(round(dh - 0.1)),
                     (h, w), tuple(input_hw))


def letterbox(image: np.ndarray, input_hw: tuple[int, int] = (640, 640), scaleup: bool = True,
              color: int = 114) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to input_hw (grey 114, like Ultralytics)."""
    lb = letterbox_params(image.shape[:2], input_hw, scaleup)
    new_w = int(round(image.shape[1] * lb.rx))
    new_h = int(round(image.shape[0] * lb.ry))
    if (new_h, new_w) != image.shape[:2]:
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.full((*input_hw, image.shape[2]), color, dtype=image.dtype)
    out[lb.top:lb.top + new_h, lb.left:lb.left + new_w] = image
    return out, lb


def stretch(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize to input_hw ignoring the aspect ratio (models trained without letterbox)."""
    h, w = image.shape[:2]
    out = image if (h, w) == tuple(input_hw) else cv2.resize(
        image, (input_hw[1], input_hw[0]), interpolation=cv2.INTER_LINEAR)
    return out, Letterbox(input_hw[1] / w, input_hw[0] / h, 0, 0, (h, w), tuple(input_hw))


def to_input_tensor(images: list[np.ndarray]) -> np.ndarray:
    """RGB uint8 HWC frames (already letterboxed) -> float32 NCHW in [0, 1]."""
    x = np.stack(images).astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def unletterbox_boxes(boxes: np.ndarray, lb: Letterbox, clip: bool = True) -> np.ndarray:
    """Map xyxy boxes [N, >=4] from model-input pixels back to original frame pixels."""
    out = boxes.astype(np.float64, copy=True)
    out[:, [0, 2]] = (out[:, [0, 2]] - lb.left) / lb.rx
    out[:, [1, 3]] = (out[:, [1, 3]] - lb.top) / lb.ry
    if clip:
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.orig_hw[1])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.orig_hw[0])
    return out


# --------------------------------------------------------------------------- NMS
def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against boxes [N, 4] (continuous coords, no +1)."""
    w = (np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])).clip(0)
    h = (np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])).clip(0)
    inter = w * h
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(a + b - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thres: float) -> np.ndarray:
    """Greedy NMS; returns kept indices by descending score (stable on ties)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou_one_to_many(boxes[i], boxes[rest]) <= iou_thres]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                iou_thres: float) -> np.ndarray:
    """Class-aware NMS: shift each class into its own coordinate range, then one NMS."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    offset = classes.astype(np.float64)[:, None] * MAX_WH
    return nms(boxes.astype(np.float64) + offset, scores, iou_thres)


# --------------------------------------------------------------------------- decode
def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def decode_one(pred: np.ndarray, conf_thres: float = 0.25, iou_thres: float = 0.45,
               max_det: int = 300, class_agnostic: bool = False,
               max_nms: int = 30000) -> np.ndarray:
    """One image's [4 + C, A] prediction -> [N, 6] x1,y1,x2,y2,score,class (input px)."""
    pred = np.asarray(pred, dtype=np.float32).T  # [A, 4 + C]
    cls_scores = pred[:, 4:]
    if cls_scores.shape[1] == 0:
        raise ValueError("prediction has no class rows (expected 4 + C rows)")
    cls = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(cls)), cls]
    m = score > conf_thres
    boxes, score, cls = cxcywh_to_xyxy(pred[m, :4]), score[m], cls[m]
    if len(score) > max_nms:  # bound NMS cost on garbage-heavy outputs
        top = np.argsort(-score, kind="stable")[:max_nms]
        boxes, score, cls = boxes[top], score[top], cls[top]
    keep = batched_nms(boxes, score, np.zeros_like(cls) if class_agnostic else cls, iou_thres)
    keep = keep[:max_det]
    return np.concatenate([boxes[keep], score[keep, None], cls[keep, None].astype(np.float32)],
                          axis=1).astype(np.float32)


def decode(output: np.ndarray, conf_thres: float = 0.25, iou_thres: float = 0.45,
           max_det: int = 300, class_agnostic: bool = False,
           letterboxes: list[Letterbox] | None = None) -> list[np.ndarray]:
    """Batch [B, 4 + C, A] (or a single [4 + C, A]) -> per image [N, 6] boxes.

    With `letterboxes` (one per image) boxes are mapped back to original frame pixels
    and clipped; otherwise they stay in model-input pixels.
    """
    output = np.asarray(output)
    if output.ndim == 2:
        output = output[None]
    if output.ndim != 3:
        raise ValueError(f"expected [B, 4+C, A], got shape {output.shape}")
    if letterboxes is not None and len(letterboxes) != len(output):
        raise ValueError("need one Letterbox per image")
    results = []
    for i, pred in enumerate(output):
        det = decode_one(pred, conf_thres, iou_thres, max_det, class_agnostic)
        if letterboxes is not None:
            det[:, :4] = unletterbox_boxes(det[:, :4], letterboxes[i])
        results.append(det)
    return results


def decode_topk(output: np.ndarray, conf_thres: float = 0.25, iou_thres: float = 0.45,
                class_agnostic: bool = False,
                letterboxes: list[Letterbox] | None = None) -> list[np.ndarray]:
    """The other export layout: [B, K, 6] = x1,y1,x2,y2,score,class (top-K, no NMS inside)
    -> per image [N, 6] after threshold + class-aware NMS (+ optional letterbox undo)."""
    output = np.asarray(output, dtype=np.float32)
    if output.ndim != 3 or output.shape[2] != 6:
        raise ValueError(f"expected [B, K, 6], got shape {output.shape}")
    results = []
    for i, det in enumerate(output):
        det = det[det[:, 4] > conf_thres]
        cls = np.zeros(len(det)) if class_agnostic else det[:, 5]
        det = det[batched_nms(det[:, :4], det[:, 4], cls, iou_thres)]
        if letterboxes is not None:
            det[:, :4] = unletterbox_boxes(det[:, :4], letterboxes[i])
        results.append(det)
    return results
