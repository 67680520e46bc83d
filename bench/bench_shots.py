"""Shots and still frames (issue 19): detector accuracy, still-frame filter, speed.

    python bench/bench_shots.py [--videos 6] [--frames 60]

1. Hard cuts: precision, recall and F1 of each ShotDetector method over
   ``--videos`` generated edits (tests/shot_scenes.varied_scene: 10 shots of
   4-60 frames, 640x360 30 fps, libx264 crf 23; fast movers, pans, flashes,
   dark shots, other views of one place, a fade), sampling every frame (a cut
   found within +-1 source frame) and at 5 fps (every 6th frame: the first
   sampled frame of the new shot, exactly). Cuts found inside a fade are
   counted apart (a fade is found when one falls inside it). Every method
   runs on grey frames, as the pipeline's does (adaptive ones on BGR: the
   library's AdaptiveDetector needs it); "(colour)": the default on BGR, its
   content member on HSV planes as PySceneDetect's ContentDetector.
2. Still frames: for each distance of processors/still.py, the largest
   distance between truly still frames and the smallest between frames where
   something changed (against the last changed frame, as the filter compares),
   on still scenes (noise sigma 2-4, 320x180 and 640x360) and the edits' shots;
   then StillFilter at its default threshold: share of truly still frames
   left out, share of changed frames kept.
3. Speed at 1080p on one core (``--frames`` yuv420p frames): ShotDetector.push
   per method and StillFilter.keep, downscale included, frames per second.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, table  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from shot_scenes import Shot, decode, encode, still_scene, varied_scene  # noqa: E402

from processors.shots import DEFAULT_METHOD, METHODS, ShotDetector  # noqa: E402
from processors.still import DISTANCES, THRESHOLD, StillFilter, prepare  # noqa: E402


def score(found: list[int], expected: list[int], fades: list[tuple[int, int]],
          slack: int) -> tuple[int, int, int, int, int]:
    """(true, false, missed, fades found, cuts inside fades) of ``found``."""
    in_fade = [f for f in found if any(a <= f < b for a, b in fades)]
    hard = [f for f in found if f not in in_fade]
    left = list(expected)
    true = 0
    for f in hard:
        match = next((e for e in left if abs(e - f) <= slack), None)
        if match is not None:
            left.remove(match)
            true += 1
    fades_found = sum(any(a <= f < b for f in in_fade) for a, b in fades)
    return true, len(hard) - true, len(left), fades_found, len(in_fade)


def cut_figures(videos: list[tuple[Path, object]]) -> list[list[object]]:
    rows = []
    # (method, camera-motion test, colour): the pipeline's detector compares grey
    # frames; "(colour)" is the same detector with ContentDetector's HSV planes.
    contenders = [(m, True, False) for m in METHODS] + [(DEFAULT_METHOD, False, False),
                                                        (DEFAULT_METHOD, True, True)]
    for step, slack, label in ((1, 1, "every frame, +-1"), (6, 0, "5 fps, exact")):
        totals = {c: np.zeros(5, int) for c in contenders}
        fades = 0
        for path, truth in videos:
            # One decode feeds every contender.
            detectors = {c: ShotDetector(c[0], motion=c[1], colour=c[2]) for c in contenders}
            found = {c: [] for c in contenders}
            sampled = []
            for i, frame in decode(path):
                if i % step == 0:
                    sampled.append(i)
                    for c, detector in detectors.items():
                        found[c] += detector.push(i, frame)
            expected_fades = truth.expected_fades(sampled)
            fades += len(expected_fades)
            for c, detector in detectors.items():
                totals[c] += score(found[c] + detector.flush(), truth.expected_cuts(sampled),
                                   expected_fades, slack)
        for (method, motion, colour), (tp, fp, fn, fade_found, in_fade) in totals.items():
            p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
            name = method + ("" if motion else " (no motion test)") + (" (colour)" if colour else "")
            rows.append([label, name, tp + fn, tp, fp,
                         fn, f"{p:.3f}", f"{r:.3f}", f"{2 * p * r / max(1e-9, p + r):.3f}",
                         f"{fade_found}/{fades}", in_fade])
    return rows


def still_sets(folder: Path, videos: list[tuple[Path, object]]) -> list[tuple[str, Path, object]]:
    sets = [(f"edit {p.stem}", p, t) for p, t in videos]
    for noise in (2.0, 3.0, 4.0):
        for size in ((320, 180), (640, 360)):
            shots = [Shot(s.frames, s.texture, movers=s.movers, noise=noise) for s in still_scene()]
            path = folder / f"still-{noise}-{size[0]}.mp4"
            sets.append((f"still sigma {noise} {size[0]}x{size[1]}", path, encode(path, shots, size)))
    return sets


def distance_figures(sets) -> list[list[object]]:
    """Still-vs-changed distances of each metric, against the last changed frame."""
    values = {m: ([], []) for m in DISTANCES}
    for _, path, truth in sets:
        for step in (1, 6):
            ref = None
            for i, frame in decode(path):
                if i % step:
                    continue
                image = prepare(frame)
                if ref is None or truth.shot_of[ref[0]] != truth.shot_of[i]:
                    ref = (i, image)
                    continue
                change = truth.change(i, ref[0])
                if change != "subtle":
                    for metric, distance in DISTANCES.items():
                        values[metric][change == "changed"].append(distance(image, ref[1]))
                if change != "still":
                    ref = (i, image)
    rows = []
    for metric, (still, changed) in values.items():
        still_max, changed_min = max(still), min(changed)
        # The most a threshold just under the smallest change leaves out.
        best = np.mean(np.array(still) < changed_min)
        rows.append([metric, len(still), len(changed), f"{np.percentile(still, 95):.3f}",
                     f"{still_max:.3f}", f"{changed_min:.3f}", f"{changed_min / max(still_max, 1e-9):.2f}",
                     f"{best:.3f}"])
    return rows


def filter_figures(sets) -> list[list[object]]:
    """StillFilter at a few thresholds: still frames left out, changed ones kept."""
    rows = []
    for step, label in ((1, "every frame"), (6, "5 fps")):
        # threshold -> change -> [frames, kept]
        counts = {t: {c: [0, 0] for c in ("still", "changed", "subtle")} for t in THRESHOLDS}
        for _, path, truth in sets:
            filters = {t: StillFilter(t) for t in THRESHOLDS}
            kept: dict[float, int | None] = dict.fromkeys(THRESHOLDS)
            shot = None
            for i, frame in decode(path):
                if i % step:
                    continue
                if truth.shot_of[i] != shot:
                    shot = truth.shot_of[i]
                    for t in THRESHOLDS:
                        filters[t].reset()
                        kept[t] = None
                for t in THRESHOLDS:
                    keep = filters[t].keep(frame)
                    if kept[t] is not None:
                        count = counts[t][truth.change(i, kept[t])]
                        count[0] += 1
                        count[1] += keep
                    if keep:
                        kept[t] = i
        for t in THRESHOLDS:
            (n_still, k_still), (n_changed, k_changed), (n_subtle, k_subtle) = counts[t].values()
            rows.append([label, t, n_still, f"{1 - k_still / max(1, n_still):.3f}",
                         n_changed, f"{k_changed / max(1, n_changed):.4f}",
                         n_subtle, f"{k_subtle / max(1, n_subtle):.3f}"])
    return rows


def speed_figures(count: int) -> list[list[object]]:
    """Frames per second on one core at 1080p, downscale included."""
    import av
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    shots = [Shot(count // 2, 7, pan=(6.0, 2.0)), Shot(count - count // 2, 8)]
    from shot_scenes import render
    frames = [av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
              for rgb in render(shots, (1920, 1080))]
    rows = []
    contenders = [(f"ShotDetector('{m}').push", lambda m=m: ShotDetector(m).push) for m in METHODS]
    contenders.append((f"ShotDetector('{DEFAULT_METHOD}', colour=True).push",
                       lambda: ShotDetector(DEFAULT_METHOD, colour=True).push))
    contenders.append(("StillFilter().keep", lambda: (lambda i, f: StillFilter().keep(f))))
    for name, make in contenders:
        step = make()
        if name.startswith("StillFilter"):
            keeper = StillFilter()
            step = lambda i, f: keeper.keep(f)  # noqa: E731
        start = time.perf_counter()
        for i, frame in enumerate(frames):
            step(i, frame)
        seconds = time.perf_counter() - start
        rows.append([name, len(frames), f"{seconds / len(frames) * 1000:.2f}",
                     f"{len(frames) / seconds:.0f}"])
    return rows


THRESHOLDS = (6.0, 8.0, 10.0, 12.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--skip-cuts", action="store_true", help="still frames and speed only")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        videos = []
        for seed in range(args.videos):
            path = folder / f"edit-{seed}.mp4"
            videos.append((path, encode(path, varied_scene(seed), (640, 360))))
        if not args.skip_cuts:
            print("\n1. Hard cuts\n")
            print(table(["sampling", "method", "cuts", "true", "false", "missed", "precision",
                         "recall", "F1", "fades found", "cuts in fades"], cut_figures(videos)))
        sets = still_sets(folder, videos)
        print("\n2a. Still-frame distances (both samplings)\n")
        print(table(["metric", "still pairs", "changed pairs", "still p95", "still max",
                     "changed min", "min/max", "still left out at best"], distance_figures(sets)))
        print(f"\n2b. StillFilter (block distance; default threshold {THRESHOLD})\n")
        print(table(["sampling", "threshold", "still frames", "left out", "changed frames",
                     "kept", "subtle frames", "kept"], filter_figures(sets)))
    print("\n3. Speed at 1080p, one core\n")
    print(table(["step", "frames", "ms/frame", "frames/s"], speed_figures(args.frames)))


if __name__ == "__main__":
    main()
