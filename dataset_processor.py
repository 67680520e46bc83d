"""Build a dataset version: ``python dataset_processor.py -v <dataset-version-id>``.

Exports the version's accepted frames as YOLO and COCO under
``contents/datasets/<id>/`` and uploads them to ``s3://<bucket>/<s3Prefix>/``
(``[s3]`` in config.cfg; credentials from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY; no SERVER_AUTH_KEY: nothing here serves HTTP). Safe to
re-run: what the store already holds is not sent again, and what the version
no longer holds (a rejected task's frames) is deleted after the new manifest.
Exit status: 0 built, 1 the build failed (the version document says why),
2 bad input or setup, 3 another process is building it now.
"""
from __future__ import annotations

import argparse
import logging
import sys

from tqdm import tqdm

from config import load_config
from exceptions import ServiceError
from intake import dataset_builds
from job_states import UploadStatus
from logging_setup import configure_logging
from mongo_manager import get_mongo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--version", required=True, dest="version_id",
                        help="the AnnotationDatasetVersion id")
    args = parser.parse_args(argv)
    configure_logging(logging.WARNING)
    try:
        config = load_config(require_auth_key=False)  # no HTTP here: no server key
        mongo = get_mongo(config)
        with tqdm(total=100, unit="%", desc=f"dataset {args.version_id}", file=sys.stderr,
                  disable=None) as bar:  # disable=None: a bar on a terminal only
            built = dataset_builds.build_here(
                mongo, config, args.version_id,
                on_progress=lambda f: bar.update(max(0, int(f * 100) - bar.n)))
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if not built:
        print(f"error: dataset version {args.version_id} is being built by another process "
              f"now; try again when it has finished", file=sys.stderr)
        return 3
    return _report(dataset_builds.status(mongo, args.version_id))


def _report(state: dict) -> int:
    if state["status"] != UploadStatus.COMPLETED:
        error = state.get("error") or {}
        print(f"error: {error.get('message', 'the build did not finish')}", file=sys.stderr)
        return 1
    counts, stats = state.get("counts") or {}, state.get("uploadStats")
    print(f"dataset version {state['version_id']}: {counts.get('images', 0)} images "
          f"in {len(state['taskStatus']['tasks'])} tasks")
    for split, split_counts in (counts.get("splits") or {}).items():
        print(f"  {split}: {split_counts['images']} images, boxes {split_counts['boxes']}")
    if counts.get("skippedBoxes"):
        print(f"  skipped boxes (label not in the version): {counts['skippedBoxes']}")
    if stats:
        print(f"  uploaded {stats['sent']} objects ({stats['bytes_sent']} bytes), "
              f"{stats['skipped']} already there; {stats['requests']} PUT requests")
        if stats.get("deleted"):
            print(f"  deleted {stats['deleted']} objects the version no longer holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
