"""``python app.py process PATH``: the API's code path, run here with a progress bar."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from config import Config
from engines.engine import get_notifier
from exceptions import ServiceError
from intake import uploads
from intake.review import review_page
from intake.schemas import parse_process_request
from job_states import RequestType, UploadStatus, upload_job_id
from jobs.claims import claim
from jobs.context import JobContext
from jobs.runner import run_claimed
from mongo_manager import MongoManager, get_mongo, new_id
from processes import owner_id
from processors.readers import guess_content_type


def process_local(config: Config, args: argparse.Namespace) -> int:
    source = Path(args.path)
    if not source.exists():
        print(f"{source}: not found", file=sys.stderr)
        return 2
    content_path = _inside_contents(config, source)
    form = {"upload_id": args.upload_id or new_id(), "project_id": args.project_id,
            "frame_rate": args.frame_rate, "content_path": str(content_path),
            "force_write": args.force_write,
            "request_type": RequestType.CUT_AND_ANNOTATE if args.model else RequestType.CUT,
            "auto_anno_version": args.model,
            "content_type": args.content_type or guess_content_type(source)}
    mongo = get_mongo(config)
    try:
        req = parse_process_request(form, config.contents_dir, config.annotation.versions)
        code, body = uploads.accept(req, mongo, config, get_notifier(config))
    except ServiceError as exc:
        print(f"error: {exc.message} {getattr(exc, 'errors', '')}", file=sys.stderr)
        return 1
    if code == 202:
        _run_with_progress(config, req.upload_id)
    upload = uploads.status(mongo, req.upload_id)
    if upload["status"] != UploadStatus.COMPLETED:
        print(f"error: {(upload['errorMessage'] or {}).get('message')}", file=sys.stderr)
        return 1
    print(f"upload {req.upload_id}: {upload['taskCount']} task clips")
    repairs = upload.get("timelineRepairs") or []
    if repairs:  # recordings joined end to end (README "Joined recordings")
        shown = ", ".join(f"frame {r['sourceFrame']} at {r['at']:.3f} s ({r['shift']:+.3f} s)"
                          for r in repairs[:5])
        print(f"  timeline repaired at {len(repairs)} place(s): {shown}"
              + (", ..." if len(repairs) > 5 else ""))
    for task in mongo.frames.tasks_of(req.upload_id):
        print(f"  {task['videoPath']}  ({task['frameCount']} frames)")
    if args.review:
        write_review(mongo, req.upload_id, Path(args.review))
    return 0


def write_review(mongo: MongoManager, upload_id: str, out: Path) -> None:
    """The review page the API serves, as a file (self-contained: it opens offline)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(review_page(mongo, upload_id), encoding="utf-8")
    print(f"review page: {out}")


def _run_with_progress(config: Config, upload_id: str) -> None:
    mongo = get_mongo(config)
    with tqdm(total=100, unit="%", desc=f"upload {upload_id}", file=sys.stderr) as bar:
        def show(fraction: float) -> None:
            bar.update(max(0, int(fraction * 100) - bar.n))

        job = claim(mongo, owner_id(), config.processing.lease_seconds, upload_job_id(upload_id))
        if job is not None:
            run_claimed(job, JobContext(mongo, config, owner_id(), on_progress=show))
            return
        # A running executor took the job first: follow its progress instead.
        while (upload := mongo.uploads.get_upload(upload_id)) \
                and upload.get("status") == UploadStatus.IN_PROGRESS:
            show((upload.get("progress") or 0) / 100)
            time.sleep(0.5)


def _inside_contents(config: Config, source: Path) -> Path:
    """The path itself when inside contents_dir, else a link (or copy) under uploads/."""
    root = config.contents_dir.resolve()
    resolved = source.resolve()
    if root in resolved.parents:
        return resolved
    target = root / "uploads" / "local" / resolved.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        if resolved.is_dir():
            shutil.copytree(resolved, target)
        else:
            try:
                os.link(resolved, target)
            except OSError:  # another file system: copy instead
                shutil.copy2(resolved, target)
    return target
