"""What every source checks before it reads a file, and names safe to show and write.

Uploads are hostile input: a folder may hold a symlink to ``/etc`` or to a
FIFO (``av.open`` on a FIFO blocks forever), a zip may hold a 1 GiB member
in 1 MB, a video may declare 8192x8192 frames. So every file a source opens
goes through ``open_regular`` / ``regular_file`` here: it must resolve (links
followed) inside ``InputLimits.root`` and be a regular file, or the job fails
with a ``ContentError`` (status 2) before anything is read. The limits come
from the configuration (the job builds them, see jobs.staging.input_limits);
this module knows nothing of the configuration itself.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from exceptions import ContentError
from naming import task_clip_name

MIB = 1024 * 1024
# NAME_MAX of the file systems the service writes to.
MAX_NAME_BYTES = 255
# A clip is named by naming.task_clip_name, written as "<that>.part" first
# (processors/clip_writer.py): room for a 10-digit task number around the stem.
MAX_STEM_BYTES = MAX_NAME_BYTES - len(task_clip_name(9_999_999_999, "") + ".part")
_HASH_CHARS = 10


@dataclass(frozen=True)
class InputLimits:
    """Where a source may read, and how much; the defaults are the configuration's."""

    # Every file read must resolve inside this folder (None: the upload's own
    # folder: a video's parent, or the image folder itself).
    root: Path | None = None
    max_frame_pixels: int = 4096 * 4096  # width x height of a video frame or an image
    max_image_bytes: int = 256 * MIB  # one image file or zip member, uncompressed
    max_zip_bytes: int = 16384 * MIB  # all image members of a zip, uncompressed
    max_zip_ratio: float = 200.0  # uncompressed / compressed size of a member over 1 MiB

    def root_for(self, path: Path) -> Path:
        if self.root is not None:
            return self.root
        return path if path.is_dir() else path.parent


def shown(path: str | os.PathLike, root: Path | None) -> str:
    """``path`` as messages show it: relative to ``root`` (never the server's
    absolute path), printable as UTF-8."""
    path = Path(path)
    text = path.name
    if root is not None:
        for base in (Path(os.path.abspath(root)), Path(os.path.realpath(root))):
            absolute = Path(os.path.abspath(path))
            if absolute == base or base in absolute.parents:
                text = str(absolute.relative_to(base)) or "."
                break
    return utf8(text)


def redact(text: str, root: Path | None) -> str:
    """``text`` (e.g. an FFmpeg error, which names the file it opened) with
    ``root``'s absolute path taken out of every path in it."""
    if root is not None:
        for base in {os.path.realpath(root), os.path.abspath(root)}:
            if base != "/":
                text = text.replace(base.rstrip("/") + "/", "")
    return utf8(text)


def utf8(text: str) -> str:
    """``text`` with anything UTF-8 cannot hold (undecodable file-name bytes) as '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def output_stem(stem: str) -> str:
    """The name a source's outputs are named after (``naming.task_clip_name``).

    Unchanged for a normal name; one too long for a file name, or not valid
    UTF-8, is cut at a character boundary and given a short hash of the full
    name, so that outputs of different uploads never share a name.
    """
    safe = utf8(stem)
    if safe == stem and len(stem.encode("utf-8")) <= MAX_STEM_BYTES:
        return stem
    digest = hashlib.sha1(stem.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    head = safe.encode("utf-8")[:MAX_STEM_BYTES - _HASH_CHARS - 1].decode("utf-8", "ignore")
    return f"{head}~{digest}"


def confined(path: Path, root: Path) -> Path:
    """``path`` with every link resolved; ContentError when that is outside ``root``."""
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if real != base and base not in real.parents:
        raise ContentError(f"{shown(path, root)}: points outside the contents folder",
                           code="outside_contents")
    return real


def regular_file(path: Path, root: Path) -> Path:
    """The resolved path of ``path``, a regular file inside ``root`` (for openers
    that take a path, e.g. ``av.open``); ContentError otherwise."""
    real = confined(path, root)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise ContentError(f"{shown(path, root)}: file not found", code="missing_file") from None
    except OSError as exc:
        raise ContentError(f"{shown(path, root)}: cannot be read ({exc.strerror})",
                           code="unreadable") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(path, root)
    return real


def open_regular(path: Path, root: Path) -> BinaryIO:
    """``path`` opened for reading, checked as ``regular_file`` does.

    The check is made again on the open descriptor (opened non-blocking, so
    that a FIFO put in its place in between cannot block), so a file swapped
    after the first check is refused too.
    """
    real = regular_file(path, root)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # became a link or a socket
            raise _not_regular(path, root) from None
        raise ContentError(f"{shown(path, root)}: cannot be read ({exc.strerror})",
                           code="unreadable") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_regular(path, root)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def _not_regular(path: Path, root: Path) -> ContentError:
    return ContentError(f"{shown(path, root)}: not a regular file (a FIFO, device, socket "
                        "or folder is never opened)", code="not_a_regular_file")


def check_pixels(width: int, height: int, limits: InputLimits, name: str) -> None:
    """ContentError when a ``width`` x ``height`` picture is over the frame size limit."""
    if width * height > limits.max_frame_pixels:
        raise ContentError(f"{name}: {width}x{height} pixels is more than the "
                           f"{limits.max_frame_pixels} allowed (processing.max_frame_pixels)",
                           code="frame_too_large")
