"""Pure functions over frames: orientation, even sizes, letterboxing, JPEG."""
from __future__ import annotations

import av
import cv2
import numpy as np
import simplejpeg


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


# A video's yuv420p is limited range (luma 16-235, chroma 16-240, BT.601 as
# OpenCV reads it); a JPEG's YCbCr is full range. These tables stretch the
# planes, so a JPEG made from them shows what converting to RGB showed.
_LUMA = np.clip((np.arange(256) - 16) * 255 / 219 + 0.5, 0, 255).astype(np.uint8)
_CHROMA = np.clip((np.arange(256) - 128) * 255 / 224 + 128.5, 0, 255).astype(np.uint8)


def encode_jpeg(frame: av.VideoFrame, quality: int) -> bytes:
    """JPEG bytes of a yuv420p frame (even width and height), from its planes.

    PERFORMANCE: libjpeg-turbo (simplejpeg) compresses the Y, U and V planes
    as they are: no conversion to RGB and back, no chroma resampling. At
    1080p that is about a third less CPU per frame than OpenCV's
    cvtColor + imencode, and a JPEG is written for every sampled frame (see
    BENCHMARKS.md). It releases the GIL, so JPEG writing overlaps decoding
    and H.264 encoding in other threads.
    """
    planes = [cv2.LUT(_plane(frame, i), _LUMA if i == 0 else _CHROMA) for i in range(3)]
    return simplejpeg.encode_jpeg_yuv_planes(*planes, quality=quality)


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    """Plane ``index`` of a yuv420p frame, without its row padding."""
    plane = frame.planes[index]
    width, height = (frame.width, frame.height) if index == 0 else \
        (frame.width // 2, frame.height // 2)
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]
