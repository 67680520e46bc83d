"""The contents store's free space: the floor new work must leave it
(``processing.min_free_mb``), and what running out of it looks like.

Asking costs one statvfs (microseconds), so every request that would start
work asks. Running out under a job (ENOSPC, or EDQUOT on a quota) is told
apart here, once, for every kind of job and wherever it happened: a clip, a
JPEG, a staging move, a dataset's files (``jobs/failure.py``).
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

from config import Config
from exceptions import DiskFull, InsufficientStorage

MIB = 1 << 20
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def free_bytes(contents: Path) -> int:
    """Bytes the service may still write in the store (statvfs: what a writer
    that is not root gets). A store not made yet: where it will be made."""
    path = Path(contents)
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def floor_bytes(config: Config) -> int:
    return config.processing.min_free_mb * MIB


def below_floor(config: Config) -> str | None:
    """Why the store cannot take new work now, or None when it can."""
    free = free_bytes(config.contents_dir)
    if free >= floor_bytes(config):
        return None
    return (f"the contents store has {mib(free)} free, below processing.min_free_mb = "
            f"{config.processing.min_free_mb}")


def check_room(config: Config) -> None:
    """Refuse new work (507) while the store is below the floor: called before
    anything of it is written."""
    why = below_floor(config)
    if why:
        raise InsufficientStorage(f"{why}; nothing was accepted: free space there, then "
                                  "send the request again")


def disk_full(exc: BaseException, config: Config) -> DiskFull | None:
    """``exc`` as the store running out of space (it is, or was raised from, an
    ENOSPC), with what the store has left; None for any other error."""
    cause = _full_error(exc)
    if cause is None:
        return None
    try:
        free = mib(free_bytes(config.contents_dir))
    except OSError:
        free = "unknown space"
    return DiskFull(f"contents store full (paths.contents_dir: {free} free, "
                    f"processing.min_free_mb = {config.processing.min_free_mb}): {cause}")


def _full_error(exc: BaseException | None) -> OSError | None:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def mib(size: int) -> str:
    """A free space as people read it: "40 KiB", "3.2 MiB", "812 MiB"."""
    if size < MIB:
        return f"{size >> 10} KiB"
    return f"{size / MIB:.1f} MiB" if size < 10 * MIB else f"{size // MIB} MiB"
