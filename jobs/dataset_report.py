"""The health report of a built dataset version: one call for the build.

Joins the two halves that live in separate layers: the streaming scan and the
HTML (datasets/health.py, datasets/report.py: files and numbers, no media) and
the sample grid (processors/sample_grid.py: decodes and draws the few sample
images). Not yet called by the build (jobs/dataset.py): when it is, the
report's name must be among the files the export keeps, or the export's
pruning of unknown files would delete it on the next rebuild.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from datasets.health import scan
from datasets.report import render, summary
from processors.sample_grid import draw_samples


def write_report(version_dir: Path, out_path: Path, title: str | None = None,
                 sample_size: int = 12, etag: Callable[[str], str] | None = None) -> dict:
    """Scan ``version_dir`` (as datasets/export.py wrote it), write the page to
    ``out_path`` atomically, and return the report's numbers and flags.

    ``etag``: the build's checksum cache (``ChecksumCache.etag``), so that
    duplicate images are found without reading them again."""
    version_dir, out_path = Path(version_dir), Path(out_path)
    health = scan(version_dir, sample_size=sample_size, etag=etag)
    drawn = draw_samples(version_dir, [(s.name, s.boxes) for s in health.samples],
                         health.names)
    page = render(health, [(s.name, s.split, d.jpeg) for s, d in zip(health.samples, drawn)],
                  title or f"Dataset health: {version_dir.name}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out_path)  # a reader never finds half a page
    return summary(health)
