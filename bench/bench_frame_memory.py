"""Peak memory of one job as a function of the video's frame size.

    python bench/bench_frame_memory.py [--seconds 2] [--sizes 320x240,1920x1080,...]

Each size is a ``--seconds`` long testsrc2 H.264 video (30 fps, ultrafast,
generated into bench/data/ once), cut as a person would, by
``python app.py process VIDEO --frame-rate 5`` in a child process (JPEGs
kept, the default pipeline), with a SecantusDB started here and
``processing.max_frame_pixels`` raised so that every size is cut. The
child's peak resident set size (ru_maxrss from os.wait4, i.e. its VmHWM) is
reported, and the bytes per frame pixel above a 320x240 job's peak: the
frames in flight (decoder threads, the pipeline's queues, the encoder's
lookahead) are what grows with the frame size. The last row is 8192x8192
at the default limit: refused from the stream header, nothing decoded.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, run_child, table, test_video  # noqa: E402

from config import DEFAULTS  # noqa: E402
from embedded_db import embedded_uri, stop_embedded  # noqa: E402

SIZES = [(320, 240), (1280, 720), (1920, 1080), (3840, 2160), (7680, 4320), (8192, 8192)]
MIB = 1024 * 1024


def run_job(video: Path, contents: Path, env: dict[str, str]) -> tuple[float, str]:
    """(peak MiB, outcome) of ``app.py process`` on ``video``."""
    target = contents / "uploads" / video.name
    if not target.exists():
        os.link(video, target)
    try:
        run = run_child([sys.executable, "app.py", "process", str(target), "--frame-rate", "5"],
                        env)
        return run.maxrss_mb, "cut"
    except RuntimeError as exc:  # app.py exits 1 with the upload's error message
        reason = str(exc).strip().splitlines()[-1][:60]
        return float("nan"), f"refused: {reason}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES),
                        help="WxH,... (the first is the baseline of bytes / pixel)")
    args = parser.parse_args()
    sizes = [tuple(map(int, size.split("x"))) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        contents, db = Path(tmp) / "contents", Path(tmp) / "db"
        (contents / "uploads").mkdir(parents=True)
        env = {**os.environ, "MONGODB_URI": embedded_uri(db), "MONGODB_DATABASE": "bench",
               "PATHS_CONTENTS_DIR": str(contents), "SERVER_AUTH_KEY": "bench-key-0123456789",
               "PROCESSING_MAX_FRAME_PIXELS": str(8192 * 8192)}
        env.pop("PYTHONPATH", None)
        try:
            rows, base = [], None
            for width, height in sizes:
                video = test_video(args.seconds, width, height, preset="ultrafast")
                peak, outcome = run_job(video, contents, env)
                base = peak if base is None else base
                per_pixel = (peak - base) * MIB / (width * height)
                rows.append([f"{width}x{height}", f"{width * height / 1e6:.1f}", outcome,
                             f"{peak:.0f}", f"{per_pixel:.0f}" if peak != base else "-"])
            default = int(DEFAULTS["processing"]["max_frame_pixels"])
            refused = {**env, "PROCESSING_MAX_FRAME_PIXELS": str(default)}
            video = test_video(2, 8192, 8192, preset="ultrafast")  # only its header is read
            peak = _refused_peak(video, contents, refused)
            rows.append([f"8192x8192 (limit {default})", f"{8192 * 8192 / 1e6:.1f}",
                         "refused (frame_too_large)", f"{peak:.0f}", "-"])
        finally:
            stop_embedded(db)
    print(f"{machine()}; {args.seconds} s videos at 30 fps, cut at 5 fps, frames kept\n")
    print(table(["frame size", "Mpixels", "outcome", "peak RSS (MiB)",
                 "bytes / pixel over 320x240"], rows))
    return 0


def _refused_peak(video: Path, contents: Path, env: dict[str, str]) -> float:
    """Peak MiB of a run that ends with an error (app.py exits 1)."""
    import subprocess
    target = contents / "uploads" / f"refused-{video.name}"
    os.link(video, target)
    proc = subprocess.Popen([sys.executable, "app.py", "process", str(target), "--frame-rate",
                             "5"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        raise RuntimeError(f"{target.name} was cut although it is over the limit")
    return usage.ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main())
