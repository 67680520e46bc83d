"""The dataset health report as one self-contained HTML page.

Plots are drawn with matplotlib (its object API, no pyplot global state, so it
is safe in a job's threads) as SVG and embedded as data: URIs, sample images
come in as JPEG bytes (drawn by processors/sample_grid.py): the page loads
nothing from the network. The same version gives the same bytes (no dates in
the SVGs, a fixed SVG id salt), so a rebuild with nothing changed re-uploads
nothing.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Sequence

import jinja2
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from datasets.health import (
    ASPECT_BINS,
    ASPECT_RANGE,
    LENGTH_EDGES,
    SIZE_BINS,
    Health,
    split_order,
)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True, trim_blocks=True, lstrip_blocks=True)
_STYLE = {"svg.hashsalt": "dataset-report", "svg.fonttype": "none", "font.size": 9}


def summary(health: Health) -> dict:
    """The report's numbers, as the build can store them in the version document."""
    splits = sorted(health.splits, key=split_order)
    result = {"source": health.source, "classes": list(health.names),
              "splits": {s: health.splits[s].summary(health.names) for s in splits},
              "overall": health.overall.summary(health.names),
              "duplicateImages": health.duplicate_images,
              "duplicates": health.duplicates[:20],
              "samples": [s.name for s in health.samples],
              "flags": health.flags}
    if health.tracks is not None:
        result["tracks"] = {"sequences": health.tracks.sequences,
                            "perClass": dict(sorted(health.tracks.per_class.items())),
                            "lengths": dict(zip(_length_labels(), health.tracks.lengths)),
                            "shotsPerUpload": dict(sorted(health.tracks.shots.items()))}
    return result


def render(health: Health, samples: Sequence[tuple[str, str, bytes | None]],
           title: str) -> str:
    """The page: ``samples`` are (image name, split, JPEG bytes or None)."""
    numbers = summary(health)
    plots = {"boxes": _per_class(health, "boxes", "boxes per class"),
             "images": _per_class(health, "images_with", "images with the class"),
             "size": _histogram(health, "size", _size_labels(), "box size (√(w·h) / side)"),
             "aspect": _histogram(health, "aspect", _aspect_labels(),
                                  "aspect ratio w : h (pixels)"),
             "heat": _heat(health)}
    if health.tracks is not None:
        plots["tracks"] = _bars(list(health.tracks.per_class),
                                {"tracks": list(health.tracks.per_class.values())},
                                "tracks per class")
        plots["lengths"] = _bars(_length_labels(), {"tracks": health.tracks.lengths},
                                 "track length (frames)")
    grid = [{"name": name, "split": split,
             "src": _uri("image/jpeg", jpeg) if jpeg is not None else None}
            for name, split, jpeg in samples]
    return _TEMPLATES.get_template("dataset_report.html.j2").render(
        title=title, numbers=numbers, plots=plots, grid=grid)


def _uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _svg(figure: Figure) -> str:
    out = io.BytesIO()
    with matplotlib.rc_context(_STYLE):
        figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    return _uri("image/svg+xml", out.getvalue())


def _bars(labels: Sequence[str], series: dict[str, Sequence[int]], title: str,
          every: int = 1) -> str:
    """Grouped bars: one group per label, one bar per series (split); with
    ``every`` > 1 only every that many labels is written (histogram bins)."""
    with matplotlib.rc_context(_STYLE):
        width_in = 0.45 * len(labels) * max(1, len(series)) / every
        figure = Figure(figsize=(min(7.5, max(4.0, width_in)), 2.8))
        axes = figure.subplots()
        width = 0.8 / max(1, len(series))
        x = np.arange(len(labels))
        for i, (name, values) in enumerate(series.items()):
            axes.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
        slanted = len(labels) / every > 6
        axes.set_xticks(x[::every], list(labels)[::every], rotation=30 if slanted else 0,
                        ha="right" if slanted else "center")
        axes.set_title(title)
        if len(series) > 1:
            axes.legend()
        return _svg(figure)


def _per_class(health: Health, counter: str, title: str) -> str:
    series = {split: getattr(health.splits[split], counter)
              for split in sorted(health.splits, key=split_order)}
    return _bars(health.names, series, title)


def _histogram(health: Health, counter: str, labels: list[str], title: str) -> str:
    series = {split: getattr(health.splits[split], counter)
              for split in sorted(health.splits, key=split_order)}
    return _bars(labels, series, title, every=4)


def _heat(health: Health) -> str:
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(3.6, 3.2))
        axes = figure.subplots()
        shown = axes.imshow(np.array(health.overall.heat), extent=(0, 1, 1, 0),
                            cmap="viridis", interpolation="nearest")
        figure.colorbar(shown, ax=axes, label="boxes")
        axes.set_title("box centres (all splits)")
        axes.set_xlabel("x / width")
        axes.set_ylabel("y / height")
        return _svg(figure)


def _size_labels() -> list[str]:
    return [f"{i / SIZE_BINS:.2f}" for i in range(SIZE_BINS)]


def _aspect_labels() -> list[str]:
    step = 2 * ASPECT_RANGE / ASPECT_BINS
    return [_ratio(2 ** (-ASPECT_RANGE + i * step)) for i in range(ASPECT_BINS)]


def _ratio(value: float) -> str:
    return f"{value:.2g}" if value >= 1 else f"1/{1 / value:.2g}"


def _length_labels() -> list[str]:
    edges = list(LENGTH_EDGES) + [math.inf]
    return [str(a) if b == a + 1 else f"{a}-{b - 1}" if b != math.inf else f"{a}+"
            for a, b in zip(edges, edges[1:])]
