"""Speed of our pipeline against the ffmpeg CLI doing the same cut.

    python bench/bench_speed.py [--reps 5] [--seconds 60] [--video PATH]

For a 1080p30 H.264 video (generated into bench/data/ when missing) it times,
alternating, N times each:

* ours        -- processors.video_source.VideoSource + processors.pipeline.run_pipeline
                 with PipelineSettings(frame_rate=5, frames_per_task=120,
                 keep_frames=True) and EncoderSettings("veryfast", 23): 120-frame
                 task clips plus one JPEG per sampled frame, into a temp dir;
* ffmpeg      -- ffmpeg -y -i in.mp4 -vf fps=5 -c:v libx264 -preset veryfast -crf 23
                 -pix_fmt yuv420p -movflags +faststart out.mp4  (one clip, no JPEGs);
* decode-only -- ffmpeg -i in.mp4 -f null -

Every contender runs as a child process (ours: ``python bench/bench_speed.py
--child ...``) so that the figures are symmetric: wall clock from spawn to
exit, CPU = user + sys of that child (os.wait4), peak RSS of that child.
The order of the three is rotated each round so none always runs first.
Reported: medians, and the ratios ours/ffmpeg and ours/decode-only both as the
ratio of medians and as the median of the per-round ratios (the runs of one
round are seconds apart, so per-round ratios cancel most of the drift that
noisy neighbours cause).

``--extra NAME=ROOT`` adds another contender: our pipeline imported from the
checkout at ROOT (e.g. a ``git worktree`` of an older commit), to compare two
versions of the pipeline side by side in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, cut_video, ffmpeg_exe, machine, median, run_child,  # noqa: E402
                    table, test_video)

FRAME_RATE, FRAMES_PER_TASK = 5, 120


def child(video: str, root: str) -> None:
    """The measured work of "ours": one job's pipeline, outputs into a temp dir."""
    sys.path.insert(0, root)
    print(json.dumps(cut_video(video, FRAME_RATE, FRAMES_PER_TASK)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--seconds", type=int, default=60,
                        help="length of the generated 1080p30 test video (default 60)")
    parser.add_argument("--video", help="use this video instead of a generated one")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=ROOT",
                        help="also time the pipeline of the checkout at ROOT")
    parser.add_argument("--child", metavar="VIDEO", help=argparse.SUPPRESS)
    parser.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.root)
        return 0

    video = Path(args.video) if args.video else test_video(args.seconds)
    ffmpeg = ffmpeg_exe()
    tmp = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    out = tmp / "out.mp4"
    contenders = {
        "ours": [sys.executable, __file__, "--child", str(video), "--root", str(ROOT)],
        "ffmpeg": [ffmpeg, "-v", "error", "-y", "-i", str(video), "-vf", f"fps={FRAME_RATE}",
                   "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                   "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)],
        "decode-only": [ffmpeg, "-v", "error", "-i", str(video), "-f", "null", "-"],
    }
    for spec in args.extra:
        name, _, root = spec.partition("=")
        contenders[name] = [sys.executable, __file__, "--child", str(video), "--root",
                            str(Path(root).resolve())]
    names = list(contenders)
    print(f"video: {video.name} ({video.stat().st_size / 1e6:.1f} MB); {args.reps} rounds; "
          f"{machine()}", flush=True)
    runs: dict[str, list] = {name: [] for name in names}
    try:
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                result = run_child(contenders[name])
                runs[name].append(result)
                extra = ""
                if result.stdout.strip().startswith("{"):
                    info = json.loads(result.stdout)
                    extra = (f"  ({info['tasks']} tasks, {info['frames']} frames, "
                             f"pipeline {info['pipeline_s']:.2f} s)")
                print(f"round {rep + 1}: {name:<12} wall {result.wall:6.2f} s  "
                      f"cpu {result.cpu:6.2f} s  rss {result.maxrss_mb:6.0f} MiB{extra}",
                      flush=True)
            out.unlink(missing_ok=True)
    finally:
        out.unlink(missing_ok=True)
        tmp.rmdir()

    rows = [[name, f"{median([r.wall for r in runs[name]]):.2f}",
             f"{min(r.wall for r in runs[name]):.2f}", f"{max(r.wall for r in runs[name]):.2f}",
             f"{median([r.cpu for r in runs[name]]):.2f}",
             f"{median([r.maxrss_mb for r in runs[name]]):.0f}"] for name in names]
    print()
    print(table(["contender", "median wall s", "min", "max", "median CPU s (user+sys)",
                 "peak RSS MiB"], rows))
    print()
    ratio_rows = []
    extras = [n for n in names if n not in ("ours", "ffmpeg", "decode-only")]
    for a in [n for n in names if n not in ("ffmpeg", "decode-only")]:
        for b in ("ffmpeg", "decode-only", *(extras if a == "ours" else ())):
            wall_of_medians = median([r.wall for r in runs[a]]) / median([r.wall for r in runs[b]])
            per_round = median([x.wall / y.wall for x, y in zip(runs[a], runs[b])])
            cpu_ratio = median([r.cpu for r in runs[a]]) / median([r.cpu for r in runs[b]])
            ratio_rows.append([f"{a} / {b}", f"{wall_of_medians:.2f}", f"{per_round:.2f}",
                               f"{cpu_ratio:.2f}"])
    print(table(["ratio", "wall (of medians)", "wall (median per round)", "CPU (of medians)"],
                ratio_rows))
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
