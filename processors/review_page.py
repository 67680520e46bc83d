"""The review page of an upload's pre-labels, as one self-contained HTML page.

Per task clip a contact sheet of its frames with the auto boxes drawn
(processors/review_sheet.py), a track timeline per label over the whole upload
(matplotlib, object API: no pyplot global state in a web worker), and the
stage timings. Everything is inline (data: URIs), nothing is fetched: the page
opens from a file as well as from the API. Its size is bounded for a long
upload: at most ``per_task`` thumbnails per task and ``total`` in all (the
page says so), and the timeline is a PNG whose size does not grow with the
number of boxes.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import jinja2
import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from processors.review_model import Limits, ReviewTask, ReviewUpload
from processors.review_sheet import pick, thumbnails, track_colour

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True, trim_blocks=True, lstrip_blocks=True)
_STYLE = {"font.size": 8}


def render(upload: ReviewUpload, limits: Limits = Limits()) -> str:
    """The page's HTML."""
    per_task = max(1, min(limits.per_task, limits.total // max(1, len(upload.tasks))))
    # More task clips than thumbnails allowed: one thumbnail for each of
    # ``total`` clips spread evenly, the others listed with their counts only.
    with_thumbnails = set(pick(len(upload.tasks), limits.total))
    sheets = [_sheet(task, per_task if i in with_thumbnails else 0, limits.max_side)
              for i, task in enumerate(upload.tasks)]
    counts = {"tasks": len(upload.tasks),
              "frames": sum(len(t.frames) for t in upload.tasks),
              "boxes": sum(s["boxes"] for s in sheets),
              "thumbnails": sum(len(s["thumbs"]) for s in sheets),
              "tracks": len({(b.label, b.track_id) for t in upload.tasks for f in t.frames
                             for b in f.boxes if b.track_id is not None})}
    return _TEMPLATES.get_template("upload_review.html.j2").render(
        upload=upload, counts=counts, sheets=sheets, per_task=per_task, limits=limits,
        all_tasks_shown=len(with_thumbnails) == len(upload.tasks),
        timeline=_timeline(upload), stages=_stages(upload.timings))


def _sheet(task: ReviewTask, per_task: int, max_side: int) -> dict:
    chosen = pick(len(task.frames), per_task)
    images = thumbnails(task.frames, chosen, task.clip, max_side=max_side)
    thumbs = [{"frame": task.frames[i], "src": _uri("image/jpeg", jpeg) if jpeg else None,
               "boxes": len(task.frames[i].boxes)} for i, jpeg in zip(chosen, images)]
    return {"task": task, "thumbs": thumbs, "boxes": sum(len(f.boxes) for f in task.frames)}


def _stages(timings: dict | None) -> list[tuple[str, float]]:
    stages = (timings or {}).get("stages") or {}
    return [(name, seconds) for name, seconds in stages.items()
            if isinstance(seconds, (int, float))]


def _timeline(upload: ReviewUpload) -> str | None:
    """One row of axes per label: each track a line from its first to its last
    box, a dot per box, in the colour the sheets draw it; task starts dotted,
    shot boundaries dashed."""
    points: dict[str, dict[int, list[float]]] = {}
    for task in upload.tasks:
        for frame in task.frames:
            for box in frame.boxes:
                if box.track_id is not None:
                    points.setdefault(box.label, {}).setdefault(box.track_id, []).append(
                        frame.timestamp)
    if not points:
        return None
    starts = [t.frames[0].timestamp for t in upload.tasks[1:] if t.frames]
    times = [f.timestamp for t in upload.tasks for f in t.frames]
    span = (min(times), max(times))
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(9, 0.6 + 1.8 * len(points)), layout="constrained")
        for axes, label in zip(figure.subplots(len(points), 1, squeeze=False)[:, 0],
                               sorted(points)):
            _draw_tracks(axes, label, points[label], span)
            # One call each (a call per line costs seconds for thousands of tasks).
            axes.vlines(starts, 0, 1, transform=axes.get_xaxis_transform(), colors="#888",
                        linestyles=":", linewidth=0.8)
            axes.vlines(list(upload.shots), 0, 1, transform=axes.get_xaxis_transform(),
                        colors="#c00", linestyles="--", linewidth=0.8)
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=100)
    return _uri("image/png", out.getvalue())


def _draw_tracks(axes: Axes, label: str, tracks: dict[int, list[float]],
                 span: tuple[float, float]) -> None:
    # One call each for all tracks: a call per track costs seconds for hundreds.
    ids = sorted(tracks)
    colours = [track_colour(track) for track in ids]
    axes.hlines(ids, [min(tracks[t]) for t in ids], [max(tracks[t]) for t in ids],
                colors=colours, linewidth=1)
    # A dot per box, but no more than one per track and pixel column: drawing a
    # long upload's every box would take Agg seconds and show nothing more.
    dots = [_thinned(tracks[t], span) for t in ids]
    counts = [len(d) for d in dots]
    rgb = np.array([to_rgb(colour) for colour in colours])  # parsed once a track, not a box
    axes.scatter(np.concatenate(dots), np.repeat(ids, counts), s=6,
                 c=np.repeat(rgb, counts, axis=0))
    count = len(tracks)
    axes.set_title(f"{label}: {count} track{'s' if count != 1 else ''}", loc="left")
    axes.set_ylabel("trackId")
    axes.set_xlabel("time in the upload (s)")
    if len(ids) <= 20:
        axes.set_yticks(ids)
    else:
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    # Tracks are numbered by first appearance: the first on top.
    axes.set_ylim(ids[-1] + 0.7, ids[0] - 0.7)
    axes.margins(x=0.02)


def _thinned(times: list[float], span: tuple[float, float], columns: int = 900) -> np.ndarray:
    values = np.asarray(times)
    width = max(span[1] - span[0], 1e-9)
    _, first = np.unique(np.round((values - span[0]) / width * columns), return_index=True)
    return values[first]


def _uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"
