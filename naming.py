"""The names the service gives what it writes: task names, task clips, frame
files and their folders, and the source of auto-annotation boxes.

One module, so that the pipeline that writes the files, the documents that
point at them, the storage that moves them and the jobs that read boxes back
all agree; a basic, so every layer (the media stages included) may import it.
"""
from __future__ import annotations

CLIP_SUFFIX = ".mp4"
FRAME_SUFFIX = ".jpg"
_AUTO_PREFIX = "auto:v"


def task_name(number: int | str, video_name: str) -> str:
    """An AnnotationTask's ``taskName``, and the stem of its clip."""
    return f"task-{number}-{video_name}"


def task_clip_name(number: int | str, video_name: str) -> str:
    """The file name of task ``number``'s clip (in the upload's clips folder)."""
    return task_name(number, video_name) + CLIP_SUFFIX


def task_frames_folder(number: int | str) -> str:
    """The folder of task ``number``'s JPEGs (in the upload's frames folder)."""
    return f"task-{number}"


def frame_file_name(frame_id: int) -> str:
    """The JPEG of frame ``frame_id`` (1-based within its task)."""
    return f"{frame_id}{FRAME_SUFFIX}"


def auto_box_source(version: int | None) -> str:
    """The ``source`` of boxes found by auto-annotation model ``version``."""
    return f"{_AUTO_PREFIX}{version}"
