"""What shot detection costs a whole upload: the pipeline with it on and off.

    python bench/bench_shots_cost.py [--reps 5] [--seconds 60] [--video PATH]

For the 1080p30 H.264 test video (bench/common.test_video) it runs, as a
child process each time (as bench/bench_speed.py does), our pipeline
(VideoSource + run_pipeline, 5 fps, 120-frame task clips, JPEGs kept,
veryfast crf 23) with ``PipelineSettings.detect_shots`` on (what a video job
runs: processing.detect_shots, default true) and off, alternating, ``--reps``
rounds, the order swapped every round. Reported: medians of wall clock and
CPU (user + sys of the child), the ratio on/off as the ratio of medians and as
the median of per-round ratios (the runs of one round are seconds apart, so
their ratio cancels most of the drift that noisy neighbours cause). Target
(issue 19): <= 1.03.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cut_video, machine, median, run_child, table, test_video  # noqa: E402

FRAME_RATE, FRAMES_PER_TASK = 5, 120


def child(video: str, shots: bool) -> None:
    """One upload's pipeline, outputs into a temp dir; prints tasks, frames, cuts."""
    sys.path.insert(0, str(ROOT))
    print(json.dumps(cut_video(video, FRAME_RATE, FRAMES_PER_TASK, detect_shots=shots)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--seconds", type=int, default=60,
                        help="length of the generated 1080p30 test video (default 60)")
    parser.add_argument("--video", help="use this video instead of a generated one")
    parser.add_argument("--child", metavar="VIDEO", help=argparse.SUPPRESS)
    parser.add_argument("--shots", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.shots == "on")
        return 0
    video = Path(args.video) if args.video else test_video(args.seconds)
    print(f"video: {video.name}; {args.reps} rounds; {machine()}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", flush=True)
    runs: dict[str, list] = {"on": [], "off": []}
    for rep in range(args.reps):
        for name in (("on", "off") if rep % 2 == 0 else ("off", "on")):
            result = run_child([sys.executable, __file__, "--child", str(video),
                                "--shots", name])
            runs[name].append(result)
            info = json.loads(result.stdout)
            print(f"round {rep + 1} shots {name}: wall {result.wall:.2f} s, cpu "
                  f"{result.cpu:.2f} s ({info['tasks']} tasks, {info['frames']} frames, "
                  f"{info['cuts']} cuts)", flush=True)
    rows = []
    for what in ("wall", "cpu"):
        on = [getattr(r, what) for r in runs["on"]]
        off = [getattr(r, what) for r in runs["off"]]
        rows.append([what, f"{median(on):.2f}", f"{median(off):.2f}",
                     f"{median(on) / median(off):.3f}",
                     f"{median([a / b for a, b in zip(on, off)]):.3f}"])
    print(table(["seconds", "shots on (median)", "shots off (median)", "ratio of medians",
                 "median per-round ratio"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
