"""What shot detection and still skipping cost a whole upload: on vs off.

    python bench/bench_shots_cost.py [--reps 5] [--seconds 60] [--video PATH]

For two generated 1080p30 H.264 videos, the testsrc2 one (bench/common.
test_video: moving colour bars and a counter, so no frame is still) and a
fixed camera (bench/common.fixed_camera_video: nothing moves for half of
it, then a box crosses), it runs, as a child process each time (as
bench/bench_speed.py does), our pipeline (VideoSource + run_pipeline, 5 fps,
120-frame task clips, JPEGs kept, veryfast crf 23) in three modes: "off"
(no shot detection, every frame kept), "shots" (``detect_shots``: what
every video job runs by default) and "shots+still" (``skip_still`` too),
``--reps`` rounds, the modes' order turned every round. Reported: medians
of wall clock and CPU (user + sys of the child), each mode against "off" as
the ratio of medians and as the median of per-round ratios (the runs of one
round are seconds apart, so their ratio cancels most of the drift that
noisy neighbours cause). Target (issue 19): <= 1.03.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, cut_video, fixed_camera_video, machine, median,  # noqa: E402
                    run_child, table, test_video)

FRAME_RATE, FRAMES_PER_TASK = 5, 120
# What each mode turns on (PipelineSettings); "off" is the baseline.
MODES = {"off": {"detect_shots": False},
         "shots": {"detect_shots": True},
         "shots+still": {"detect_shots": True, "skip_still": True}}


def child(video: str, mode: str) -> None:
    """One upload's pipeline, outputs into a temp dir; prints tasks, frames,
    cuts, and the CPU seconds its split stage spent placing frames (shot
    detection and still filter: the work the modes add, measured in its own
    thread, which the neighbours' noise does not reach)."""
    sys.path.insert(0, str(ROOT))
    import processors.task_split as task_split
    spent = [0.0]
    place = task_split.TaskSplitter.place

    def timed(self, *args):  # the split stage's thread only calls it
        start = time.thread_time()
        try:
            return place(self, *args)
        finally:
            spent[0] += time.thread_time() - start
    task_split.TaskSplitter.place = timed
    result = cut_video(video, FRAME_RATE, FRAMES_PER_TASK, **MODES[mode])
    print(json.dumps({**result, "split_cpu": spent[0]}))


def measure(video: Path, reps: int) -> dict[str, list]:
    """``reps`` rounds of every mode, alternating, the order turned each round."""
    runs: dict[str, list] = {mode: [] for mode in MODES}
    order = list(MODES)
    for rep in range(reps):
        for mode in order[rep % len(order):] + order[:rep % len(order)]:
            result = run_child([sys.executable, __file__, "--child", str(video), "--mode", mode])
            runs[mode].append(result)
            info = json.loads(result.stdout)
            print(f"round {rep + 1} {mode}: wall {result.wall:.2f} s, cpu {result.cpu:.2f} s "
                  f"({info['tasks']} tasks, {info['frames']} frames kept, "
                  f"{info['cuts']} cuts)", flush=True)
    return runs


def figures(runs: dict[str, list]) -> str:
    rows = []
    off = runs["off"]
    for mode in [m for m in MODES if m != "off"]:
        for what in ("wall", "cpu"):
            on = [getattr(r, what) for r in runs[mode]]
            base = [getattr(r, what) for r in off]
            rows.append([f"{mode} / off", what, f"{median(on):.2f}", f"{median(base):.2f}",
                         f"{median(on) / median(base):.3f}",
                         f"{median([a / b for a, b in zip(on, base)]):.3f}"])
        # The firmer figure: (off's CPU + the stage's own CPU) / off's CPU.
        split = median([json.loads(r.stdout)["split_cpu"] for r in runs[mode]])
        base_cpu = median([r.cpu for r in off])
        rows.append([f"{mode} / off", "cpu, split stage's own", f"{split:.3f}", "",
                     f"{(base_cpu + split) / base_cpu:.3f}", ""])
    return table(["modes", "seconds", "on (median)", "off (median)", "ratio of medians",
                  "median per-round ratio"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--seconds", type=int, default=60,
                        help="length of the generated 1080p30 test videos (default 60)")
    parser.add_argument("--video", help="use this video instead of the generated ones")
    parser.add_argument("--child", metavar="VIDEO", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=tuple(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mode)
        return 0
    videos = [Path(args.video)] if args.video else \
        [test_video(args.seconds), fixed_camera_video(args.seconds)]
    print(f"{args.reps} rounds; {machine()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
          flush=True)
    for video in videos:
        print(f"\nvideo: {video.name}", flush=True)
        print(figures(measure(video, args.reps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
