"""Progressive tasks: time to the first task, event latency, and what a failing receiver costs.

    python bench/bench_progressive.py [--reps 3] [--seconds 600] [--segments 0,300,120]
        [--reps-failing 5] [--failing-seconds 60] [--poll 0.05]

Starts the service as the README says (``SERVER_AUTH_KEY=... gunicorn -c
gunicorn.conf.py wsgi:app`` from the repo folder: embedded database and
executor, 2 job processes, a fresh contents folder), with a real webhook
receiver (``tests/webhook_receiver.py``, its own process), and measures:

1. time to first task -- POST /api/processContent of a 1080p30 H.264 video
   (``--seconds`` long, generated into bench/data/ when missing) at frame_rate
   5 (120-frame tasks), one service per ``PROCESSING_SEGMENT_SECONDS`` value
   (0: one pass; 300: 2 segments of a 10-minute video; 120: 5), all started at
   once, rounds alternating with the order rotated. From the POST's 202 to
   (a) the first upload.task_ready at the receiver, (b) the first task in
   MongoDB (AnnotationTask, read every ``--poll`` s by a thread), (c)
   upload.completed at the receiver, (d) status 1 (GET every 0.1 s); and the
   first-task / whole ratio (target: within 5 %);
2. event delivery latency -- for every event of part 1, its first arrival at
   the receiver (the ``at`` it logged) minus the outbox's createdAt (the same
   machine's clock): p50, p99, max;
3. a failing receiver -- two services at once, alternating with the order
   rotated, the same ``--failing-seconds`` video: (a) no events (EVENTS_URL
   unset), (b) events to a receiver answering 500 to every call (the default
   retry settings: 8 attempts, backoff 1 s doubling to 300 s). Medians and the
   median of the per-round ratios (target: at most 1.02).

Each service gets one warm-up upload (a 2 s video) before the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, LiveService, machine, median, table, test_video

KEY = "bench-progressive-key"
FRAME_RATE = 5
# the tests' Standard Webhooks secret (tests/event_receiver.py): any whsec_ value would do
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwJ5QqrSbRkTs="
DATABASE = os.environ.get("MONGODB_DATABASE", "AIData")


class Receiver:
    """``tests/webhook_receiver.py`` on a loopback port, answering 500 to ``fail_rate``."""

    def __init__(self, folder: Path, name: str, fail_rate: float = 0.0) -> None:
        self.log, ready = folder / f"{name}.jsonl", folder / f"{name}.port"
        self.proc = subprocess.Popen([
            sys.executable, str(ROOT / "tests" / "webhook_receiver.py"), "--log", str(self.log),
            "--ready", str(ready), "--fail-rate", str(fail_rate)])
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{ready.read_text()}/hooks"

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


class Watcher(threading.Thread):
    """Reads the upload's tasks in MongoDB every ``poll`` s; notes when the first appears."""

    def __init__(self, db, upload_id: str, poll: float) -> None:
        super().__init__(daemon=True)
        self.db, self.upload_id, self.poll = db, upload_id, poll
        self.first_task_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.first_task_at is None:
            if self.db["AnnotationTask"].count_documents({"uploadId": self.upload_id}, limit=1):
                self.first_task_at = time.time()
            else:
                time.sleep(self.poll)


class Service(LiveService):
    """The service with a fresh contents folder holding the test videos."""

    def __init__(self, folder: Path, videos: list[Path], **settings: str) -> None:
        super().__init__(folder, KEY, **settings)
        for video in videos:
            os.link(video, self.contents / "uploads" / video.name)
        from pymongo import MongoClient

        from embedded_db import embedded_uri
        self.client = MongoClient(embedded_uri(self.contents / "db", start=False), tz_aware=True)
        self.db = self.client[DATABASE]

    def upload(self, upload_id: str, video: Path, poll: float = 0.05) -> dict[str, float]:
        """POST an upload and wait for status 1: ``accepted`` (time.time() of the
        202), ``first_db`` (first task seen in MongoDB) and ``done`` (status 1)."""
        watcher = Watcher(self.db, upload_id, poll)
        with requests.Session() as http:
            answer = http.post(f"{self.base}/api/processContent", timeout=30, json={
                "auth_key": KEY, "upload_id": upload_id, "project_id": "bench",
                "frame_rate": FRAME_RATE, "content_path": f"uploads/{video.name}"})
            accepted = time.time()
            assert answer.status_code == 202, answer.text
            watcher.start()
            url = f"{self.base}/api/processContent/{upload_id}"
            while not (status := http.get(url, headers={"X-Auth-Key": KEY},
                                          timeout=30).json())["status"]:
                time.sleep(0.1)
            done = time.time()
        assert status["status"] == 1, status
        watcher.stop.set()
        watcher.join()
        return {"accepted": accepted, "done": done, "first_db": watcher.first_task_at or done}

    def outbox(self, upload_id: str) -> list[dict]:
        return list(self.db["EventOutbox"].find({"stream": upload_id}))

    def stop(self) -> None:
        self.client.close()
        super().stop()


def events_of(receiver: Receiver, upload_id: str) -> dict[str, dict]:
    """The receiver's first call of each event of the upload, by webhook-id."""
    first: dict[str, dict] = {}
    for call in receiver.calls():
        body = json.loads(call["body"])
        if body["data"].get("upload_id") == upload_id:
            first.setdefault(call["headers"]["webhook-id"], {**call, "event": body})
    return first


def wait_events(service: Service, receiver: Receiver, upload_id: str,
                timeout: float = 60) -> tuple[dict[str, dict], list[dict]]:
    """Wait until every outbox event of the upload has reached the receiver."""
    deadline = time.monotonic() + timeout
    while True:
        recorded, seen = service.outbox(upload_id), events_of(receiver, upload_id)
        if recorded and all(e["_id"] in seen for e in recorded):
            return seen, recorded
        if time.monotonic() > deadline:
            raise RuntimeError(f"{upload_id}: {len(seen)} of {len(recorded)} events arrived")
        time.sleep(0.2)


def first_task_round(service: Service, receiver: Receiver, upload_id: str, video: Path,
                     poll: float) -> tuple[dict[str, float], list[float]]:
    """One upload of part 1: its times from the 202 (seconds), and each event's
    delivery latency (arrival minus the outbox's createdAt, seconds)."""
    times = service.upload(upload_id, video, poll)
    seen, recorded = wait_events(service, receiver, upload_id)
    by_type: dict[str, float] = {}
    for call in sorted(seen.values(), key=lambda c: c["at"]):
        by_type.setdefault(call["event"]["type"], call["at"])
    t0 = times["accepted"]
    latencies = [seen[e["_id"]]["at"] - e["createdAt"].timestamp()
                 for e in recorded]
    return ({"event": by_type["upload.task_ready"] - t0, "db": times["first_db"] - t0,
             "completed": by_type["upload.completed"] - t0, "status": times["done"] - t0,
             "tasks": float(service.db["AnnotationTask"].count_documents(
                 {"uploadId": upload_id}))}, latencies)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def part_first_task(folder: Path, args: argparse.Namespace,
                    warm: Path) -> tuple[dict[int, list[dict]], list[float]]:
    """Part 1 (and the latencies of part 2): rounds alternating between the
    segment settings, the order rotated every round."""
    video = test_video(args.seconds)
    receiver = Receiver(folder, "healthy")
    services: dict[int, Service] = {}
    runs: dict[int, list[dict]] = {seg: [] for seg in args.segments}
    latencies: list[float] = []
    try:
        for seg in args.segments:
            services[seg] = Service(folder / f"seg{seg}", [video, warm],
                                    PROCESSING_SEGMENT_SECONDS=str(seg),
                                    EVENTS_URL=receiver.url, EVENTS_SECRET=SECRET)
            first_task_round(services[seg], receiver, f"warm{seg}", warm, args.poll)
        for rep in range(args.reps):
            order = args.segments[rep % len(args.segments):] + args.segments[
                :rep % len(args.segments)]
            for seg in order:
                times, lat = first_task_round(services[seg], receiver, f"s{seg}r{rep}",
                                              video, args.poll)
                runs[seg].append(times)
                latencies += lat
                print(f"round {rep + 1}, segments {seg} s: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in times.items()), file=sys.stderr, flush=True)
    finally:
        for service in services.values():
            service.stop()
        receiver.stop()
    return runs, latencies


def part_failing(folder: Path, args: argparse.Namespace,
                 warm: Path) -> tuple[dict[str, list[float]], int]:
    """Part 3: no events against events to a receiver that answers 500 to all;
    returns each contender's seconds per round and the calls the receiver got."""
    video = test_video(args.failing_seconds)
    receiver = Receiver(folder, "failing", fail_rate=1.0)
    services: dict[str, Service] = {}
    runs: dict[str, list[float]] = {"no events": [], "failing receiver": []}
    try:
        services["no events"] = Service(folder / "none", [video, warm])
        services["failing receiver"] = Service(folder / "failing", [video, warm],
                                               EVENTS_URL=receiver.url, EVENTS_SECRET=SECRET)
        for name, service in services.items():
            service.upload("warm", warm)
        names = list(runs)
        for rep in range(args.reps_failing):
            for name in names[rep % 2:] + names[:rep % 2]:
                times = services[name].upload(f"f{rep}", video, args.poll)
                runs[name].append(times["done"] - times["accepted"])
            print(f"round {rep + 1}: " + ", ".join(f"{n} {runs[n][-1]:.2f} s" for n in runs),
                  file=sys.stderr, flush=True)
        calls = len(receiver.calls())
    finally:
        for service in services.values():
            service.stop()
        receiver.stop()
    return runs, calls


def report_first_task(runs: dict[int, list[dict]], args: argparse.Namespace) -> None:
    rows = []
    for seg, rounds in runs.items():
        med = {k: median([r[k] for r in rounds]) for k in rounds[0]}
        ratio = median([r["event"] / r["status"] for r in rounds])
        ratio_db = median([r["db"] / r["status"] for r in rounds])
        label = "single pass (0)" if seg == 0 else f"segmented ({seg} s)"
        rows.append([label, f"{med['tasks']:.0f}", f"{med['event']:.2f}", f"{med['db']:.2f}",
                     f"{med['completed']:.2f}", f"{med['status']:.2f}",
                     f"{100 * ratio:.1f} %", f"{100 * ratio_db:.1f} %"])
    print(f"\n### Time to first task ({test_video(args.seconds).name}, frame_rate "
          f"{FRAME_RATE}, {args.reps} rounds, medians, seconds from the 202)\n")
    print(table(["PROCESSING_SEGMENT_SECONDS", "tasks", "first task_ready event",
                 "first task in MongoDB", "upload.completed event", "status 1",
                 "first event / status 1", "first in DB / status 1"], rows))


def report_latency(latencies: list[float]) -> None:
    ms = [1000 * v for v in latencies]
    print("\n### Event delivery latency (healthy receiver; arrival minus outbox createdAt)\n")
    print(table(["events", "p50 ms", "p99 ms", "max ms"],
                [[len(ms), f"{percentile(ms, 0.5):.0f}", f"{percentile(ms, 0.99):.0f}",
                  f"{max(ms):.0f}"]]))


def report_failing(runs: dict[str, list[float]], calls: int, args: argparse.Namespace) -> None:
    base = runs["no events"]
    print(f"\n### Whole upload: events to a receiver failing every call vs no events "
          f"({test_video(args.failing_seconds).name}, {args.reps_failing} rounds; "
          f"the receiver got {calls} calls, all answered 500)\n")
    print(table(["contender", "median s", "median / no events", "per-round ratio (median)"],
                [[name, f"{median(t):.2f}", f"{median(t) / median(base):.3f}",
                  f"{median([a / b for a, b in zip(t, base)]):.3f}"]
                 for name, t in runs.items()]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--segments", default="0,300,120",
                        help="PROCESSING_SEGMENT_SECONDS values, one service each")
    parser.add_argument("--reps-failing", type=int, default=5)
    parser.add_argument("--failing-seconds", type=int, default=60)
    parser.add_argument("--poll", type=float, default=0.05,
                        help="seconds between reads of the upload's tasks in MongoDB")
    parser.add_argument("--skip", choices=["first-task", "failing"], action="append",
                        default=[])
    args = parser.parse_args()
    args.segments = [int(s) for s in args.segments.split(",")]
    warm = test_video(2)
    folder = Path(tempfile.mkdtemp(prefix="bench-progressive-"))
    try:
        first = None if "first-task" in args.skip else part_first_task(folder, args, warm)
        failing = None if "failing" in args.skip else part_failing(folder, args, warm)
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    if first:
        report_first_task(first[0], args)
        report_latency(first[1])
    if failing:
        report_failing(*failing, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
