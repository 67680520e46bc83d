"""Build one dataset version: select -> export locally -> upload -> manifest -> prune.

A build is a job (kind ``datasetBuild``) like a processContent run, so the
API, the CLI, the executor and the warm start share its lease: one process
builds a version at a time. Each task of the version is recorded ``pending``,
then ``complete`` once every object of it is in the store (or ``error`` with
the reason). Re-running skips what the store already holds.

``manifest.json`` (local folder and store alike) is true whenever it exists:
every object it lists is there with the listed checksum. So an old manifest
that will not stay goes first, the new one goes up after every object it
lists, and objects that no longer belong (a rejected task's frames) are
deleted only after it. A crash between any two steps leaves at most extra,
unlisted objects (or no manifest); the next run or warm start removes them.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import events
from datasets.export import Export, TaskFrames, export_version
from datasets.formats import BoxStats
from datasets.spec import VersionSpec, parse_version
from events import dataset_stream
from exceptions import DatasetError, DiskFull
from job_states import JobKind, JobState, UploadStatus, completed_version, failed_version
from job_types import DatasetJob
from jobs import watchdog
from jobs.context import Heartbeat, JobContext
from jobs.failure import run_guarded
from mongo_manager import MongoManager, now, to_id
from storage.contents import remove_tree
from storage.s3_store import ChecksumCache, S3Store, UploadItem

log = logging.getLogger(__name__)

KIND = JobKind.DATASET
EXPORT_SHARE = 0.2  # of the progress bar; the upload is the rest
MANIFEST = "manifest.json"
# The health report (jobs/dataset_report.py): written beside the version and
# uploaded with its files; the manifest lists it like any other object.
REPORT = "report/index.html"
# What a build writes under its prefix: nothing else there is ever deleted.
OWN_FOLDERS = ("images/", "labels/", "annotations/", "report/")
OWN_FILES = ("data.yaml", MANIFEST)


def dataset_dir(contents: Path, version_id: str) -> Path:
    return contents / "datasets" / str(version_id)


def run_dataset_job(job: DatasetJob, ctx: JobContext) -> None:
    version_id = job.params.version_id
    if run_guarded(lambda: _build(job, ctx, version_id) or True, config=ctx.config,
                   doing="build",
                   fail=lambda error: _fail(job, ctx, {"retryable": False, **error}),
                   cancelled=lambda: log.info("dataset version %s: another process took the "
                                              "build over", version_id)):
        ctx.mongo.jobs.end_job(job.id, job.run_id, JobState.DONE)


def fail_dataset_job(job: DatasetJob, ctx: JobContext, error: dict) -> None:
    _fail(job, ctx, {**error, "retryable": False})


def _fail(job: DatasetJob, ctx: JobContext, error: dict) -> None:
    version_id = job.params.version_id
    log.warning("dataset version %s: %s", version_id, error["message"])
    # Out of space: its partial output goes, and the space it took, unless
    # another process holds the build now (the folder is the version's, not the run's).
    if error.get("code") == DiskFull.code and ctx.mongo.jobs.renew_lease(
            job.id, job.run_id, ctx.owner, ctx.config.processing.lease_seconds):
        remove_tree(dataset_dir(ctx.config.contents_dir, version_id))
    if ctx.mongo.datasets.get_version(version_id) is None:
        ctx.mongo.jobs.end_job(job.id, job.run_id, JobState.FAILED, error)
        return
    ctx.mongo.jobs.end_run(job.id, job.run_id, JobState.FAILED, error,
                           ("version", version_id, failed_version(error)),
                           dataset_stream(version_id),
                           [events.dataset_failed(version_id, error)])


def _build(job: DatasetJob, ctx: JobContext, version_id: str) -> None:
    mongo = ctx.mongo
    doc = mongo.datasets.get_version(version_id)
    if doc is None:
        raise DatasetError(f"no dataset version {version_id}", code="version_not_found")
    spec = parse_version(doc)
    tasks = mongo.datasets.dataset_tasks(spec.project_ids, spec.task_ids, spec.audit_statuses)
    if not tasks:
        raise DatasetError(f"no task of the version's projects/taskList has an audit status "
                           f"in {list(spec.audit_statuses)}", code="no_matching_tasks")
    store = S3Store(ctx.config.s3) if ctx.config.s3.bucket else None
    watchdog.progressed("exporting (checking the bucket)")
    if store:
        store.check()  # a missing bucket or bad credentials: fail before any work
        store.start_listing(spec.s3_prefix)
    mongo.datasets.update_version(version_id, status=UploadStatus.IN_PROGRESS, progress=0,
                                  stage="exporting", error=None,
                                  s3Prefix=spec.s3_prefix, startedAt=now(), finishedAt=None,
                                  taskStatus={"state": "pending", "tasks": [
                             {"task": t["_id"], "state": "pending", "error": None,
                              "imageCount": 0} for t in tasks]})
    heartbeat = Heartbeat(job, ctx,
                          lambda p: mongo.datasets.update_version(version_id, progress=p))
    watchdog.progressed("exporting")
    started = time.monotonic()
    root = dataset_dir(ctx.config.contents_dir, version_id)
    (root / MANIFEST).unlink(missing_ok=True)  # the folder is about to change
    exported_tasks = itertools.count(1)
    starts = _ShotStarts(mongo)
    exported = export_version(
        spec, root, (TaskFrames(t, mongo.frames.frames_of(t["_id"]), starts.of(t["uploadId"]))
                     for t in tasks),
        lambda: heartbeat.beat(EXPORT_SHARE * next(exported_tasks) / len(tasks)))
    for index, task in enumerate(exported.tasks):
        if task.error:
            mongo.datasets.set_version_task(version_id, index, state="error", error=task.error)
    mongo.datasets.update_version(version_id, stage="uploading" if store else "writing")
    watchdog.progressed("uploading" if store else "writing")
    exported_at = time.monotonic()
    cache = ChecksumCache(root, ctx.config.s3.part_mb << 20)
    try:
        _report(spec, exported, cache, store, ctx, version_id)
        manifest = _write_manifest(spec, exported, cache)
        if store:
            _drop_outdated_manifest(spec, store, cache.etag(MANIFEST) if manifest else None)
        _upload_tasks(spec, exported, cache, store, _TaskRecorder(mongo, version_id,
                      exported, heartbeat))
        _finish(spec, exported, manifest, cache, store, ctx, version_id)
    finally:
        cache.save()
    mongo.datasets.update_version(version_id, timings={  # upload: checksums, listing, sending
        "exportSeconds": round(exported_at - started, 3),
        "uploadSeconds": round(time.monotonic() - exported_at, 3)})


class _ShotStarts:
    """Each upload's shot starts (its ``shots``), read once per build: the MOT
    sequence and COCO ``shot`` of a frame (datasets/export.py)."""

    def __init__(self, mongo: MongoManager) -> None:
        self.mongo = mongo
        self.known: dict[str, tuple[int, ...]] = {}

    def of(self, upload_id: Any) -> tuple[int, ...]:
        key = str(upload_id)
        if key not in self.known:
            upload = self.mongo.uploads.get_upload(upload_id) or {}
            self.known[key] = tuple(shot["start"] for shot in upload.get("shots") or [])
        return self.known[key]


class _TaskRecorder:
    """Marks a task ``complete`` when its last object is in the store."""

    def __init__(self, mongo: MongoManager, version_id: str, exported: Export,
                 heartbeat: Heartbeat) -> None:
        self.mongo, self.version_id, self.heartbeat = mongo, version_id, heartbeat
        self.tasks = exported.tasks
        self.left = {i: len(t.files) for i, t in enumerate(exported.tasks) if not t.error}
        self.total = max(1, sum(self.left.values()))
        self.done = 0

    def object_done(self, index: int) -> None:
        self.done += 1
        self.left[index] -= 1
        if self.left[index] == 0:
            self.task_done(index)
        self.heartbeat.beat(EXPORT_SHARE + (1 - EXPORT_SHARE) * self.done / self.total)

    def task_done(self, index: int) -> None:
        self.mongo.datasets.set_version_task(self.version_id, index, state="complete",
                                             imageCount=self.tasks[index].image_count)


def _report(spec: VersionSpec, exported: Export, cache: ChecksumCache, store: S3Store | None,
            ctx: JobContext, version_id: str) -> None:
    """Write the health report of a complete version (one pass over its labels;
    duplicates found through the checksums the upload needs anyway) and record
    where it is and what it flags on the version document."""
    if any(task.error for task in exported.tasks):
        return  # an incomplete version fails; its report would mislead
    # Imported here: the report loads matplotlib and supervision (~80 MiB),
    # which every job process (most of them cut videos) should not carry.
    from jobs.dataset_report import write_report

    watchdog.progressed("writing the health report")
    for task in exported.tasks:  # the manifest needs every checksum anyway: the report
        for name in task.files:  # finds duplicates with them, and its time is its own
            cache.etag(name)
    started = time.monotonic()
    numbers = write_report(cache.root, cache.root / REPORT, title=f"Dataset health: {spec.name}",
                           etag=cache.etag)
    exported.version_files.append(REPORT)
    ctx.mongo.datasets.update_version(version_id, report={
        "path": str(cache.root / REPORT),
        "s3Key": f"{spec.s3_prefix}/{REPORT}" if store else None,
        "flags": numbers["flags"], "images": numbers["overall"].get("images"),
        "seconds": round(time.monotonic() - started, 3)})


def _item(spec: VersionSpec, cache: ChecksumCache, name: str) -> UploadItem:
    return UploadItem(cache.root / name, f"{spec.s3_prefix}/{name}", cache.etag(name))


def _upload_tasks(spec: VersionSpec, exported: Export, cache: ChecksumCache,
                  store: S3Store | None, recorder: _TaskRecorder) -> None:
    for index in [i for i, left in recorder.left.items() if left == 0]:
        recorder.task_done(index)  # a task with no frames has nothing to send
    items = [(index, _item(spec, cache, name)) for index, task in enumerate(exported.tasks)
             if not task.error for name in task.files]
    if store is None:  # written locally only
        for index, _ in items:
            recorder.object_done(index)
        return
    owner = {item.key: index for index, item in items}
    store.upload((item for _, item in items), lambda item: recorder.object_done(owner[item.key]),
                 recorder.heartbeat.alive)


def _write_manifest(spec: VersionSpec, exported: Export, cache: ChecksumCache) -> dict | None:
    """The local folder's manifest; None (and no file) when a task failed."""
    if any(task.error for task in exported.tasks):
        return None
    names = sorted(exported.version_files + [n for t in exported.tasks for n in t.files])
    manifest = _manifest(spec, exported, names, cache)
    tmp = cache.root / f".{MANIFEST}.tmp"  # never a half-written manifest
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, cache.root / MANIFEST)
    return manifest


def _drop_outdated_manifest(spec: VersionSpec, store: S3Store, etag: str | None) -> None:
    """Delete the store's manifest before any object it lists may change: a
    manifest that is there is always true. One that stays as it is stays."""
    key = f"{spec.s3_prefix}/{MANIFEST}"
    held = store.listed().get(key)
    if held is not None and held != etag:
        store.delete([key])


def _stale(spec: VersionSpec, store: S3Store, manifest: dict) -> list[str]:
    """Objects of our layout under the prefix that the version no longer holds."""
    keep = {entry["key"] for entry in manifest["objects"]} | {f"{spec.s3_prefix}/{MANIFEST}"}
    start = len(spec.s3_prefix) + 1
    return sorted(key for key in store.listed() if key not in keep
                  and (key[start:].startswith(OWN_FOLDERS) or key[start:] in OWN_FILES))


def _finish(spec: VersionSpec, exported: Export, manifest: dict | None, cache: ChecksumCache,
            store: S3Store | None, ctx: JobContext, version_id: str) -> None:
    failed = [t for t in exported.tasks if t.error]
    if manifest is None:  # no manifest: the version is not complete
        raise DatasetError(f"{len(failed)} of {len(exported.tasks)} task(s) could not be "
                           f"exported: {failed[0].error}", code="task_errors")
    if store:  # the version's own files, the manifest, then what no longer belongs
        for group in (exported.version_files, [MANIFEST]):
            store.upload([_item(spec, cache, n) for n in group], lambda _: None)
        stale = _stale(spec, store, manifest)
        store.delete(stale)
        store.stats.deleted += len(stale)
    mongo = ctx.mongo
    mongo.datasets.set_dataset_version([to_id(t.task_id) for t in exported.tasks], version_id)
    fields = completed_version(manifest["counts"], asdict(store.stats) if store else None)
    mongo.datasets.finish_version(version_id, fields, dataset_stream(version_id), [
        events.dataset_completed(version_id, manifest["counts"]["images"],
                                 spec.s3_prefix if store else None)])
    if ctx.on_progress:
        ctx.on_progress(1.0)


def _manifest(spec: VersionSpec, exported: Export, names: list[str],
              cache: ChecksumCache) -> dict:
    """Every object with its checksum, and the counts per split and class.

    Deterministic (no timestamps), so a re-run with nothing changed sends nothing.
    """
    splits = {kind: {"images": exported.images_per_split[kind],
                     "boxes": dict(sorted(exported.boxes[kind].written.items()))}
              for kind, _ in spec.splits}
    total = BoxStats()
    for stats in exported.boxes.values():
        total.add(stats)
    return {"version": spec.version_id, "name": spec.name, "labels": list(spec.labels),
            "formats": list(spec.formats), "counts": {
                "splits": splits, "images": sum(exported.images_per_split.values()),
                "skippedBoxes": dict(sorted(total.skipped.items())),
                "degenerateBoxes": total.degenerate},
            "objects": [{"key": f"{spec.s3_prefix}/{name}", "etag": cache.etag(name),
                         "size": cache.size(name)} for name in names]}

