"""Accept latency of POST /api/processContent under 50 concurrent clients.

    python bench/bench_accept.py [--requests 1000] [--clients 50] [--warmup 20]

Starts the real deployment, ``gunicorn -c gunicorn.conf.py wsgi:app`` from the
repo root (which also starts the embedded database and the job executor),
with SERVER_AUTH_KEY, PATHS_CONTENTS_DIR (a temp dir), SERVER_PORT and
GUNICORN_BIND=127.0.0.1:<free port>; puts one tiny video (1 s, 320x240,
30 fps H.264) in <tempdir>/uploads/x.mp4; then sends ``--requests`` POSTs
(JSON: auth_key, a distinct ObjectId upload_id each, project_id,
frame_rate 5, content_path "uploads/x.mp4", request_type 0, content_type 1)
from ``--clients`` threads, each with its own requests.Session (keep-alive),
to 127.0.0.1 only. The executor starts processing the accepted jobs in the
background meanwhile (that is the deployment's normal state; the video is
tiny so each job is small): the figures include that load.

Reports the client-side latency (send to response read; includes the
client's own queueing for the GIL: client and server share the 2 cores) and
the server-side time gunicorn logs per request (%(D)s, request parsed to
response written), median / p90 / p99 / max, the status code counts, the
throughput, and how many of the jobs the executor finished meanwhile.

Stops gunicorn (SIGTERM to the master, whose on_exit stops the executor),
then the embedded database (embedded_db.stop_embedded(<tempdir>/db)), then
ends any process still carrying this run's marker in its environment
(BENCH_ACCEPT_RUN=<uuid>), by pid, and removes the temp dir.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import requests
from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, median, table, test_video, wait_healthy  # noqa: E402

AUTH_KEY = "bench-accept-key"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries this run's marker (ours and children)."""
    found = []
    needle = f"BENCH_ACCEPT_RUN={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def process_kind(pid: int, master: int) -> str:
    try:
        cmd = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
    except OSError:
        return "?"
    if pid == master:
        return "gunicorn master"
    if "secantus" in cmd:
        return "database (SecantusDB)"
    if "gunicorn" in cmd:
        return "gunicorn workers"
    if "executor.py" in cmd:
        return "executor supervisor"
    if "multiprocessing" in cmd:
        return "job workers"
    return cmd[:40]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """user + sys CPU seconds so far of each pid (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError):
            continue
    return out


def cpu_by_kind(before: dict[int, float], after: dict[int, float], master: int) -> dict[str, float]:
    kinds: Counter = Counter()
    for pid, used in after.items():
        kinds[process_kind(pid, master)] += used - before.get(pid, 0.0)
    return dict(kinds)


def probe_accept(contents: Path, count: int) -> dict[str, list[float]]:
    """Time ``count`` in-process calls of uploads.accept (the API's handler minus
    HTTP) and each store call inside it, one at a time, no concurrency."""
    os.environ.update({"SERVER_AUTH_KEY": AUTH_KEY, "PATHS_CONTENTS_DIR": str(contents)})
    sys.path.insert(0, str(ROOT))
    from config import load_config
    from engines.engine import get_notifier
    from intake import uploads
    from intake.schemas import parse_process_request
    from mongo_manager import get_mongo

    config = load_config()
    mongo = get_mongo(config)
    notifier = get_notifier(config)
    timings: dict[str, list[float]] = {"uploads.accept (total)": []}
    for store_name, name in (("uploads", "get_upload"), ("jobs", "start_job"),
                             ("jobs", "queue_job")):
        label = f"  mongo.{store_name}.{name}"
        store = getattr(mongo, store_name)
        timings[label] = []

        def timed(*a, _original=getattr(store, name), _label=label, **kw):
            t0 = time.perf_counter()
            try:
                return _original(*a, **kw)
            finally:
                timings[_label].append(time.perf_counter() - t0)
        setattr(store, name, timed)
    for _ in range(count):
        req = parse_process_request(body(str(ObjectId())), config.contents_dir)
        t0 = time.perf_counter()
        code, _ = uploads.accept(req, mongo, config, notifier)
        timings["uploads.accept (total)"].append(time.perf_counter() - t0)
        assert code == 202, code
    ping = []
    for _ in range(count):
        t0 = time.perf_counter()
        mongo.ping()
        ping.append(time.perf_counter() - t0)
    timings["  (a ping round trip)"] = ping
    mongo.close()
    return timings


def sequential(base: str, count: int) -> list[float]:
    """``count`` POSTs one after the other from one client: latency without queueing."""
    session = requests.Session()
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        status = session.post(f"{base}/api/processContent", json=body(str(ObjectId())),
                              timeout=30).status_code
        out.append(time.perf_counter() - t0)
        assert status == 202, status
    session.close()
    return out


def body(upload_id: str) -> dict:
    return {"auth_key": AUTH_KEY, "upload_id": upload_id, "project_id": "6560c0ffee0000000000bea0",
            "frame_rate": 5, "content_path": "uploads/x.mp4", "request_type": 0,
            "content_type": 1}


def fire(base: str, count: int, clients: int, rate: float | None = None
         ) -> tuple[list[tuple[float, int]], float]:
    """``count`` POSTs from ``clients`` threads; (latency s, status) each, and the wall time.

    Without ``rate`` each client sends its next request as soon as it has the
    answer to the last (closed loop: the server is kept saturated). With
    ``rate``, requests are due at ``rate`` per second (open loop) and latency
    counts from the time a request was due, so waiting for a free client is
    included (no coordinated omission).
    """
    work: queue.Queue = queue.Queue()
    if rate is None:
        for _ in range(count):
            work.put((str(ObjectId()), None))
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def client() -> None:
        session = requests.Session()
        start_gate.wait()
        while True:
            try:
                upload_id, due = work.get(timeout=5) if rate else work.get_nowait()
            except queue.Empty:
                break
            if upload_id is None:
                break
            t0 = time.perf_counter() if due is None else due
            try:
                status = session.post(f"{base}/api/processContent", json=body(upload_id),
                                      timeout=30).status_code
            except requests.RequestException:
                status = -1
            elapsed = time.perf_counter() - t0
            with lock:
                results.append((elapsed, status))
        session.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    t0 = time.perf_counter()
    if rate is not None:
        for i in range(count):
            due = t0 + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            work.put((str(ObjectId()), due))
        for _ in threads:
            work.put((None, None))
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - t0


def server_times(access_log: Path, skip: int) -> list[float]:
    """Request times (s) of the POSTs in gunicorn's access log, after the first ``skip``."""
    times = []
    for line in access_log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "POST":
            times.append(int(parts[2]) / 1e6)
    return times[skip:]


def summary(name: str, values: list[float]) -> list[str]:
    ms = [v * 1000 for v in values]
    return [name, str(len(ms)), f"{median(ms):.1f}", f"{percentile(ms, 90):.1f}",
            f"{percentile(ms, 99):.1f}", f"{max(ms):.1f}"]


def jobs_done(contents: Path) -> Counter:
    """Upload states, read straight from the embedded database (a bench helper)."""
    sys.path.insert(0, str(ROOT))
    from pymongo import MongoClient

    from embedded_db import embedded_uri
    uri = embedded_uri(contents / "db", start=False)
    if not uri:
        return Counter()
    with MongoClient(uri, serverSelectionTimeoutMS=3000) as client:
        states = Counter()
        for doc in client["AIData"]["AnnotationContentUpload"].find({}, {"status": 1}):
            states[{0: "queued/running", 1: "done", 2: "failed"}.get(doc.get("status"), "?")] += 1
        return states


def stop_all(proc: subprocess.Popen | None, contents: Path, marker: str) -> None:
    sys.path.insert(0, str(ROOT))
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the master's on_exit stops the executor
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    from embedded_db import stop_embedded
    stop_embedded(contents / "db")
    deadline = time.monotonic() + 20
    while (left := marked_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in marked_pids(marker):  # anything of this run still alive
        try:
            os.kill(pid, signal.SIGKILL)
            print(f"killed leftover process {pid}", file=sys.stderr)
        except ProcessLookupError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured POSTs (default 1000)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: send this many requests per second (spread evenly, at "
                             "most --clients in flight) instead of each client sending its next "
                             "request as soon as the last one is answered")
    parser.add_argument("--warmup", type=int, default=20,
                        help="POSTs sent first and not measured (default 20)")
    parser.add_argument("--job-workers", type=int, default=None,
                        help="PROCESSING_WORKERS for the executor (default: the config's, "
                             "= number of cores)")
    parser.add_argument("--gunicorn-workers", type=int, default=None,
                        help="GUNICORN_WORKERS (default: gunicorn.conf.py's, = number of cores)")
    parser.add_argument("--poll-seconds", type=float, default=None,
                        help="PROCESSING_POLL_SECONDS; 60 keeps the executor idle during the "
                             "run (its workers find no job at start and sleep 60 s)")
    parser.add_argument("--sequential", type=int, default=50,
                        help="POSTs sent one at a time before the concurrent run, to show the "
                             "latency without queueing (default 50; 0 = skip)")
    parser.add_argument("--probe", type=int, default=100,
                        help="in-process uploads.accept calls timed per database call, one at "
                             "a time (default 100; 0 = skip)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    video = test_video(1, 320, 240)
    contents = Path(tempfile.mkdtemp(prefix="bench-accept-"))
    (contents / "uploads").mkdir()
    shutil.copy(video, contents / "uploads" / "x.mp4")
    port = free_port()
    marker = uuid.uuid4().hex
    access_log = contents / "access.log"
    env = {**os.environ, "SERVER_AUTH_KEY": AUTH_KEY, "PATHS_CONTENTS_DIR": str(contents),
           "SERVER_PORT": str(port), "GUNICORN_BIND": f"127.0.0.1:{port}",
           "GUNICORN_ACCESSLOG": str(access_log),
           "GUNICORN_CMD_ARGS": "--access-logformat='%(m)s %(s)s %(D)s'",
           "BENCH_ACCEPT_RUN": marker}
    if args.job_workers:
        env["PROCESSING_WORKERS"] = str(args.job_workers)
    if args.gunicorn_workers:
        env["GUNICORN_WORKERS"] = str(args.gunicorn_workers)
    if args.poll_seconds:
        env["PROCESSING_POLL_SECONDS"] = str(args.poll_seconds)
    base = f"http://127.0.0.1:{port}"
    proc = None
    log = open(contents / "gunicorn.log", "wb")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                 "wsgi:app"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        wait_healthy(base, proc)
        if args.poll_seconds:
            # Let the job processes start and find the queue empty first, so
            # that they sleep through the run.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(
                    process_kind(pid, proc.pid) == "job workers" for pid in marked_pids(marker)):
                time.sleep(0.5)
            time.sleep(5)
        warm, _ = fire(base, args.warmup, min(args.clients, max(1, args.warmup)))
        seq = sequential(base, args.sequential) if args.sequential else []
        probe = probe_accept(contents, args.probe) if args.probe else {}
        pids = marked_pids(marker)
        cpu_before, client_before = cpu_seconds(pids), os.times()
        results, wall = fire(base, args.requests, args.clients, args.rate)
        cpu_after, client_after = cpu_seconds(pids), os.times()
        time.sleep(0.5)  # let gunicorn flush its access log
        states = jobs_done(contents)
        server = server_times(access_log, args.warmup + args.sequential)
        cpu = cpu_by_kind(cpu_before, cpu_after, proc.pid)
        cpu["load client (this process)"] = ((client_after.user + client_after.system)
                                             - (client_before.user + client_before.system))
    finally:
        stop_all(proc, contents, marker)
        log.close()
        tail = (contents / "gunicorn.log").read_text(errors="replace")[-1500:]
        if not args.keep:
            shutil.rmtree(contents, ignore_errors=True)
        else:
            print(f"kept {contents}")

    codes = Counter(status for _, status in results)
    latencies = [latency for latency, _ in results]
    mode = f"open loop at {args.rate:g}/s" if args.rate else "closed loop"
    print(f"{args.requests} POST /api/processContent from {args.clients} clients ({mode}) "
          f"(+{args.warmup} warm-up, {Counter(s for _, s in warm)}); video {video.name} "
          f"({video.stat().st_size} bytes); {machine()}")
    print()
    print(table(["latency", "n", "median ms", "p90 ms", "p99 ms", "max ms"],
                [summary("client-side", latencies)]
                + ([summary("server-side (gunicorn %(D)s)", server)] if server else [])))
    print()
    print(f"status codes: {dict(sorted(codes.items()))}")
    if len(server) >= 10:
        fifth = len(server) // 5
        print(f"server-side median of the first / last {fifth} requests (log order): "
              f"{median(server[:fifth]) * 1000:.1f} / {median(server[-fifth:]) * 1000:.1f} ms")
    if seq:
        print(f"\none client, one request at a time ({len(seq)} POSTs): median "
              f"{median(seq) * 1000:.1f} ms, p99 {percentile(seq, 99) * 1000:.1f} ms")
    if probe:
        print(f"\nin-process uploads.accept, one at a time ({args.probe} calls; no HTTP):")
        print(table(["call", "n", "median ms", "p90 ms", "p99 ms", "max ms"],
                    [summary(name, values) for name, values in probe.items()]))
    print(f"\nCPU seconds used during the concurrent run ({wall:.2f} s wall, "
          f"{2 * wall:.2f} core-seconds on 2 cores):")
    print(table(["process", "CPU s", "per request ms"],
                [[k, f"{v:.2f}", f"{v / max(1, len(results)) * 1000:.2f}"]
                 for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])]))
    print(f"throughput: {len(results) / wall:.0f} requests/s ({wall:.2f} s)")
    print(f"uploads by state when the last response arrived: {dict(states)}")
    p99 = percentile([v * 1000 for v in latencies], 99)
    print(f"p99 {p99:.1f} ms; target < 50 ms: {'met' if p99 < 50 else 'MISSED'}")
    if set(codes) != {202}:
        print("not every response was 202; gunicorn log tail:\n" + tail)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
