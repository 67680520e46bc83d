"""Pure functions over frames: orientation, even sizes, letterboxing, JPEG."""
from __future__ import annotations

import av
import cv2
import numpy as np


def normalize(frame: av.VideoFrame, rotation: int, width: int, height: int) -> av.VideoFrame:
    """The frame as the task clip shows it: rotated, ``width`` x ``height``, yuv420p."""
    if rotation == 0 and frame.width == width and frame.height == height:
        # Fast path for the common case: no pixel copy through numpy.
        if frame.format.name == "yuv420p":
            return frame
        return frame.reformat(format="yuv420p")
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round(rotation / 90) % 4
    if quarter_turns:
        # np.rot90 turns counter-clockwise, the direction of the display matrix angle.
        rgb = np.rot90(rgb, k=quarter_turns)
    rgb = letterbox(rgb, width, height)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width`` x ``height`` (aspect kept), centred on black.

    An image already that size is returned as is; one that only lacks a row or
    column (odd sizes padded to even) is padded at the bottom/right, not scaled.
    """
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(image)
    if w <= width and h <= height and width - w <= 1 and height - h <= 1:
        return _paste(image, width, height, 0, 0)
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interpolation)
    return _paste(resized, width, height, (width - new_w) // 2, (height - new_h) // 2)


def _paste(image: np.ndarray, width: int, height: int, left: int, top: int) -> np.ndarray:
    canvas = np.zeros((height, width, image.shape[2]), dtype=image.dtype)
    canvas[top:top + image.shape[0], left:left + image.shape[1]] = image
    return canvas


def encode_jpeg(frame: av.VideoFrame, quality: int) -> bytes:
    """JPEG bytes of a yuv420p frame.

    The colour conversion and the encoding run in OpenCV, which releases the
    GIL, so JPEG writing overlaps decoding and H.264 encoding in other threads.
    """
    i420 = frame.to_ndarray(format="yuv420p")
    bgr = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - imencode fails only on invalid arrays
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()
