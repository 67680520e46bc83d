"""Peak memory of one job on a short and a long 1080p video.

    python bench/bench_memory.py [--reps 3] [--short 60] [--long 600]

Runs the same pipeline as bench_speed.py's "ours" (VideoSource + run_pipeline,
5 fps, 120-frame tasks, JPEGs kept, veryfast/crf 23) in a child process
(``python bench/bench_speed.py --child VIDEO``) on a 60 s and a 600 s 1080p30
H.264 video, alternating, and reports the child's peak resident set size
(ru_maxrss from os.wait4) for each. The 600 s video is the 60 s one looped
ten times with ``-c copy`` (generated into bench/data/ when missing).

Targets (SPEC "Streaming": memory does not grow with the video's length):
the long video's peak within 10% of the short one's, both under 500 MB.
While a child runs, its RSS is also sampled from /proc every 0.2 s, to show
the RSS at 25/50/75% of the run next to the peak (flat = streaming).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, median, table, test_video  # noqa: E402

TARGET_MB = 500  # megabytes (10^6 bytes); figures are printed in MiB
TARGET_GROWTH = 0.10
MIB = 1024 * 1024


@dataclass
class MemRun:
    wall: float
    peak_mb: float  # ru_maxrss
    samples: list[tuple[float, float]]  # (seconds since start, RSS MiB)

    def rss_at(self, fraction: float) -> float:
        if not self.samples:
            return float("nan")
        target = self.wall * fraction
        return min(self.samples, key=lambda s: abs(s[0] - target))[1]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_job(video: Path) -> MemRun:
    cmd = [sys.executable, str(ROOT / "bench" / "bench_speed.py"), "--child", str(video)]
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                rss = _rss_mb(proc.pid)
                if rss is not None:
                    samples.append((time.perf_counter() - start, rss))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"job on {video.name} failed:\n{err.read().decode()[-2000:]}")
    return MemRun(wall=wall, peak_mb=usage.ru_maxrss / 1024, samples=samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="runs per video (default 3)")
    parser.add_argument("--short", type=int, default=60, help="short video, seconds (default 60)")
    parser.add_argument("--long", type=int, default=600,
                        help="long video, seconds, a multiple of 60 (default 600)")
    args = parser.parse_args()
    videos = {"short": test_video(args.short), "long": test_video(args.long)}
    print(f"{args.reps} runs each, alternating; {machine()}", flush=True)
    runs: dict[str, list[MemRun]] = {name: [] for name in videos}
    for rep in range(args.reps):
        for name in (("short", "long") if rep % 2 == 0 else ("long", "short")):
            run = run_job(videos[name])
            runs[name].append(run)
            print(f"round {rep + 1}: {name:<5} {videos[name].name}: peak {run.peak_mb:.0f} MiB, "
                  f"RSS at 25/50/75% {run.rss_at(.25):.0f}/{run.rss_at(.5):.0f}/"
                  f"{run.rss_at(.75):.0f} MiB, wall {run.wall:.1f} s", flush=True)
    rows = []
    for name, video in videos.items():
        peaks = [r.peak_mb for r in runs[name]]
        rows.append([name, video.name, f"{median(peaks):.0f}", f"{min(peaks):.0f}",
                     f"{max(peaks):.0f}",
                     "/".join(f"{median([r.rss_at(f) for r in runs[name]]):.0f}"
                              for f in (.25, .5, .75)),
                     f"{median([r.wall for r in runs[name]]):.1f}"])
    print()
    print(table(["video", "file", "median peak RSS MiB", "min", "max",
                 "median RSS at 25/50/75% MiB", "median wall s"], rows))
    short = median([r.peak_mb for r in runs["short"]])
    long_ = median([r.peak_mb for r in runs["long"]])
    ratio = long_ / short
    per_round = median([lg.peak_mb / sh.peak_mb for lg, sh in zip(runs["long"], runs["short"])])
    largest_mb = max(short, long_) * MIB / 1e6
    ok = ratio <= 1 + TARGET_GROWTH and largest_mb < TARGET_MB
    print(f"\nlong/short peak RSS: {ratio:.3f} (median of per-round ratios {per_round:.3f}); "
          f"larger peak {largest_mb:.0f} MB; target ratio <= {1 + TARGET_GROWTH:.2f} and both "
          f"< {TARGET_MB} MB: {'met' if ok else 'MISSED'}")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
