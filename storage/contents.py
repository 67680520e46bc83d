"""The contents folder's layout for one run of one upload: its final and staging
folders, moving a finished run's folders into place, and removing leftovers."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from naming import task_frames_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    """Final and staging folders of one run of one upload."""

    contents: Path
    project_id: str
    upload_id: str
    run_id: str

    @property
    def clips(self) -> Path:
        return self.contents / "tasks" / self.project_id / self.upload_id

    @property
    def frames(self) -> Path:
        return self.contents / "frames" / self.upload_id

    def staging(self, final: Path) -> Path:
        return final.with_name(f".staging-{final.name}-{self.run_id}")

    def trash(self, final: Path) -> Path:
        return final.with_name(f".trash-{final.name}-{self.run_id}")

    def pairs(self) -> list[tuple[Path, Path]]:
        return [(self.staging(self.clips), self.clips), (self.staging(self.frames), self.frames)]


def move_into_place(paths: RunPaths) -> None:
    """Rename the staging folders to their final names; the old ones go to trash.

    Idempotent, so a run that died half-way through here redoes it safely.
    """
    for staging, final in paths.pairs():
        if not staging.exists():
            continue
        if final.exists():
            final.rename(paths.trash(final))
        staging.rename(final)


def publish_task_files(paths: RunPaths, clip_name: str, number: int | str) -> None:
    """Move one staged task's clip and JPEGs to their final places (a task
    published while its run goes on).

    File by file, each rename atomic and replacing what is there: two
    processes publishing the same task (segments of one run) each move what
    the other has not, a process that died half-way is finished by the next,
    and a file a replaced run left under the same name is overwritten.
    """
    frames = paths.staging(paths.frames) / task_frames_folder(number)
    moves = [(paths.staging(paths.clips) / clip_name, paths.clips / clip_name)]
    try:
        moves += [(image, paths.frames / task_frames_folder(number) / image.name)
                  for image in sorted(frames.iterdir())]
    except FileNotFoundError:
        pass  # no JPEGs (keep_frames off), or all moved already
    for staged, final in moves:
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            staged.rename(final)
        except FileNotFoundError:
            pass  # moved already (by another process, or before a crash)
    try:
        frames.rmdir()
    except OSError:
        pass  # gone already, or another process is still moving from it


def remove_replaced(paths: RunPaths) -> None:
    """After the commit: drop the folders the run replaced (of any earlier run),
    including the clips of runs made under another project (force_write moved
    the upload: one run at a time per upload, so they are all earlier ones)."""
    for _, final in paths.pairs():
        for leftover in final.parent.glob(f".trash-{final.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    upload = paths.upload_id
    for pattern in (upload, f".staging-{upload}-*", f".trash-{upload}-*"):
        for leftover in (paths.contents / "tasks").glob(f"*/{pattern}"):
            if leftover.parent.name != paths.project_id:
                shutil.rmtree(leftover, ignore_errors=True)


def remove_staging(paths: RunPaths) -> None:
    """Remove a run's staging folders (its partial outputs)."""
    for staging, _ in paths.pairs():
        remove_tree(staging)


def remove_tree(path: Path, tries: int = 5) -> None:
    """Remove a folder that a pipeline stage may still be writing into (a
    stalled run's other stages go on until its process ends): a file added
    while rmtree runs leaves the folder behind, so it is removed again. Once
    it is gone it stays gone (run_pipeline's stages never make its root)."""
    for _ in range(tries):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
    log.warning("could not remove %s", path.name)
