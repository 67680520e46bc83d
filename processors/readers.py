"""Choosing a reader for an upload's content, and reading an existing task's
frames back (its kept JPEGs, or its clip when frames were not kept)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from exceptions import ContentError
from processors.image_source import IMAGE_SUFFIXES, ImageSource
from processors.input_guard import InputLimits
from processors.source import Source
from processors.video_source import VideoSource, container_seconds, open_video

VIDEO, IMAGES = 1, 2  # the API's content_type values


def open_source(content_type: int, path: str, frame_rate: int, limits: InputLimits) -> Source:
    """The reader of an upload: a video, or images (one, a folder or a .zip)."""
    if content_type == IMAGES:
        return ImageSource(path, frame_rate, limits)
    return VideoSource(path, limits)


def guess_content_type(path: Path) -> int:
    """What a local path holds, for a command line that did not say."""
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES | {".zip"}:
        return IMAGES
    return VIDEO


def video_duration(path: str, limits: InputLimits) -> float:
    """Seconds, from the container's header; 0 when it does not say or cannot be
    opened (the cutting pass then reports what is wrong with the file)."""
    try:
        with open_video(Path(path), limits) as container:  # never a FIFO: it would block
            return container_seconds(container)
    except (ContentError, av.FFmpegError):
        return 0.0


def task_images(task_name: str, image_paths: list[str | None], clip: str) -> Iterator[np.ndarray]:
    """An existing task's frames as RGB arrays: from its JPEGs when all are kept,
    else decoded from its clip."""
    paths = [Path(p) if p else None for p in image_paths]
    if paths and all(p is not None and p.is_file() for p in paths):
        for path in paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ContentError(f"{path}: frame image cannot be read", code="bad_image")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    clip_path = Path(clip)
    if not clip_path.is_file():
        raise ContentError(f"{task_name}: neither frame images nor the clip "
                           f"{clip_path.name} exist", code="missing_file")
    with av.open(str(clip_path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
