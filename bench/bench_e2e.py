"""An upload end to end through the API against the ffmpeg CLI doing the same cut.

    python bench/bench_e2e.py [--reps 5] [--seconds 20] [--extra NAME=ROOT ...]

Starts the service as the README says (``SERVER_AUTH_KEY=... gunicorn -c
gunicorn.conf.py wsgi:app`` from the repo folder: embedded database and
executor, 2 job processes, a fresh contents folder) and times, alternating
with ffmpeg, N rounds of:

* api    -- POST /api/processContent of a 1080p30 H.264 video (generated into
            bench/data/ when missing) at frame_rate 5, then GET its status every
            ``--poll`` s (10 ms) until it is 1: from sending the request to seeing
            status 1 (and, from the upload's finishedAt, to its commit)
            (accepting, noticing the job, cutting 120-frame task clips plus a
            JPEG per sampled frame, the commit);
* ffmpeg -- ffmpeg -y -i in.mp4 -vf fps=5 -c:v libx264 -preset veryfast -crf 23
            -pix_fmt yuv420p -movflags +faststart out.mp4 (one clip, no JPEGs).

``--extra NAME=ROOT`` runs another service from the checkout at ROOT (e.g. a
``git worktree`` of an older commit) beside it, on its own port and contents
folder, as a third contender. The order is rotated every round; reported are
medians, the ratio of the medians and the median of the per-round ratios.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    ROOT,
    LiveService,
    ffmpeg_exe,
    machine,
    median,
    run_child,
    table,
    test_video,
)

KEY = "bench-e2e-key"
FRAME_RATE = 5


class Service(LiveService):
    """The service of one checkout, and the uploads it was given."""

    def __init__(self, root: Path, folder: Path, video: Path) -> None:
        super().__init__(folder, KEY, root)
        os.link(video, self.contents / "uploads" / "in.mp4")
        self.uploads = 0
        self.timings: list[dict] = []  # what the service recorded of each upload
        self.committed: list[float] = []  # seconds from sending to the commit

    def upload(self, poll: float = 0.01) -> float:
        """Seconds from sending the request to seeing status 1 (asked every ``poll``
        s); ``committed`` gets the seconds to the commit (the upload's finishedAt)."""
        self.uploads += 1
        upload_id = f"e2e{self.uploads}"
        with requests.Session() as http:
            sent_at = time.time()  # the service's clock: the same machine's
            started = time.perf_counter()
            answer = http.post(f"{self.base}/api/processContent", timeout=30, json={
                "auth_key": KEY, "upload_id": upload_id, "project_id": "bench",
                "frame_rate": FRAME_RATE, "content_path": "uploads/in.mp4"})
            assert answer.status_code == 202, answer.text
            url = f"{self.base}/api/processContent/{upload_id}"
            while True:
                status = http.get(url, headers={"X-Auth-Key": KEY}, timeout=30).json()
                if status["status"]:
                    break
                time.sleep(poll)
        seen = time.perf_counter() - started
        assert status["status"] == 1, status
        self.timings.append(status["timings"])
        finished = datetime.fromisoformat(status["finishedAt"])
        if finished.tzinfo is None:  # stored dates are UTC
            finished = finished.replace(tzinfo=timezone.utc)
        self.committed.append(finished.timestamp() - sent_at)
        return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=ROOT")
    parser.add_argument("--poll", type=float, default=0.01,
                        help="seconds between status requests (each costs CPU the job shares)")
    args = parser.parse_args()
    video = test_video(args.seconds)
    folder = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    out = folder / "out.mp4"
    ffmpeg = [ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-vf", f"fps={FRAME_RATE}",
              "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
              "-movflags", "+faststart", str(out)]
    roots = {"api": ROOT, **{n: Path(r).resolve() for n, _, r in
                             (spec.partition("=") for spec in args.extra)}}
    services = {name: Service(root, folder / name, video) for name, root in roots.items()}
    runs: dict[str, list[float]] = {name: [] for name in [*services, "ffmpeg"]}
    try:
        for name, service in services.items():
            service.upload()  # warm-up: models, caches, the first client connections
        for rep in range(args.reps):
            order = list(runs)
            order = order[rep % len(order):] + order[:rep % len(order)]
            for name in order:
                seconds = (run_child(ffmpeg).wall if name == "ffmpeg"
                           else services[name].upload(args.poll))
                runs[name].append(seconds)
            print(f"round {rep + 1}: " + ", ".join(f"{n} {runs[n][-1]:.2f} s" for n in runs),
                  file=sys.stderr, flush=True)
    finally:
        for service in services.values():
            service.stop()
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    base = runs["ffmpeg"]
    rows = [[name, f"{median(times):.2f}", f"{median(times) / median(base):.3f}",
             f"{median([t / b for t, b in zip(times, base)]):.3f}"]
            for name, times in runs.items()]
    print(f"machine: {machine()}")
    print(f"{video.name}, frame_rate {FRAME_RATE}, {args.reps} rounds")
    print(table(["contender", "median s", "median / ffmpeg", "per-round ratio (median)"],
                rows))
    # Where an upload's time goes, as the service recorded it (warm-up excluded).
    print(table(["contender", "queued s (accept to claim)", "cutting s (claim to commit)",
                 "sent to commit s", "sent to commit / ffmpeg"],
                [[name, f"{median([t['stages']['queued'] for t in svc.timings[1:]]):.3f}",
                  f"{median([t['processingSeconds'] for t in svc.timings[1:]]):.2f}",
                  f"{median(svc.committed[1:]):.2f}",
                  f"{median(svc.committed[1:]) / median(base):.3f}"]
                 for name, svc in services.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
