"""Shared helpers of the benchmark scripts: test videos, ffmpeg, child-process timing.

Test videos are generated on first use into ``bench/data/`` (git-ignored) with
the ffmpeg binary that ships in the imageio-ffmpeg wheel (there is no system
ffmpeg on the benchmark machines).
"""
from __future__ import annotations

import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"

if str(ROOT) not in sys.path:  # the scripts run as ``python bench/x.py`` from the repo root
    sys.path.insert(0, str(ROOT))


def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def test_video(seconds: int, width: int = 1920, height: int = 1080, rate: int = 30,
               preset: str = "veryfast") -> Path:
    """``bench/data/testsrc2-<w>x<h>-<rate>-<s>s.mp4``: H.264 yuv420p, made once.

    testsrc2 (moving colour bars, a counter and gradients) through libx264 at
    crf 23 with a 2 s GOP, like a phone or camera recording's structure
    (I + P + B frames). Long videos are the 60 s one looped with ``-c copy``
    so that generating them costs no encoding time.
    """
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"testsrc2-{width}x{height}-{rate}-{seconds}s.mp4"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.mp4")
    if seconds > 60 and seconds % 60 == 0 and (width, height) == (1920, 1080):
        base = test_video(60, width, height, rate, preset)
        cmd = [ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(seconds // 60 - 1),
               "-i", str(base), "-c", "copy", "-movflags", "+faststart", str(tmp)]
    else:
        cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
               "-i", f"testsrc2=size={width}x{height}:rate={rate}", "-t", str(seconds),
               "-c:v", "libx264", "-preset", preset, "-crf", "23", "-g", str(2 * rate),
               "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(tmp)]
    print(f"generating {path.name} ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    tmp.replace(path)
    return path


def fixed_camera_video(seconds: int, width: int = 1920, height: int = 1080) -> Path:
    """``bench/data/fixedcam-<w>x<h>-<s>s.mp4``, made once: a fixed camera
    (tests/shot_scenes.py: a textured scene, sensor noise sigma 2.5, libx264
    crf 23, 30 fps, GOP 2 s) where nothing moves for the first half, then a
    box enters, crosses a third of the frame and stops: the footage of a
    traffic, retail or surveillance camera that skip_still is for."""
    path = DATA / f"fixedcam-{width}x{height}-{seconds}s.mp4"
    if path.exists():
        return path
    sys.path.insert(0, str(ROOT / "tests"))
    from shot_scenes import RED, Mover, Shot, encode
    DATA.mkdir(parents=True, exist_ok=True)
    frames = 30 * seconds
    box = Mover(RED, (width // 16, width // 16), (-width // 16, height // 2),
                (width / 3 / (frames // 4), 0.0), enters=frames // 2, stops=frames * 3 // 4)
    print(f"generating {path.name} ...", file=sys.stderr, flush=True)
    tmp = path.with_suffix(".tmp.mp4")
    encode(tmp, [Shot(frames, texture=11, movers=(box,))], size=(width, height))
    tmp.replace(path)
    return path


@dataclass
class ChildRun:
    wall: float  # seconds
    cpu: float  # user + sys seconds of the child (and its children)
    maxrss_mb: float  # peak resident set size of the child, MiB
    stdout: str


def run_child(cmd: list[str], env: dict | None = None) -> ChildRun:
    """Run ``cmd``; wall time, CPU seconds and peak RSS of this child alone (os.wait4)."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]}... exited {proc.returncode}:\n{stderr[-2000:]}")
    return ChildRun(wall=wall, cpu=usage.ru_utime + usage.ru_stime,
                    maxrss_mb=usage.ru_maxrss / 1024, stdout=stdout)


def cut_video(video: str, frame_rate: int, frames_per_task: int, **settings: object) -> dict:
    """One upload's pipeline as the benchmarks' "ours" runs it (VideoSource +
    run_pipeline, JPEGs kept, veryfast/crf 23, outputs into a temp dir); the
    task, frame and cut counts and the seconds it took. Imports the pipeline
    from whatever tree is first on ``sys.path`` (a child may put another
    checkout there: ``--extra NAME=ROOT``), which may predate ``cuts``."""
    from processors.clip_writer import EncoderSettings
    from processors.pipeline import OutputLayout, PipelineSettings, TaskOutput, run_pipeline
    from processors.video_source import VideoSource

    start = time.perf_counter()
    config = PipelineSettings(frame_rate=frame_rate, frames_per_task=frames_per_task,
                              keep_frames=True, encoder=EncoderSettings("veryfast", 23),
                              **settings)
    counts = {"tasks": 0, "frames": 0, "cuts": 0}
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        source = VideoSource(video)
        try:
            layout = OutputLayout(Path(tmp) / "tasks", Path(tmp) / "frames", source.info.name)
            for event in run_pipeline(source, config, layout):
                if isinstance(event, TaskOutput):
                    counts["tasks"] += 1
                    counts["frames"] += len(event.frames)
                    counts["cuts"] += len(getattr(event, "cuts", ()))
        finally:
            source.close()
        return {**counts, "pipeline_s": time.perf_counter() - start}


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until the service started as ``proc`` answers ``/api/health`` with 200."""
    import requests  # here: the other helpers need no HTTP client
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            if requests.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError("gunicorn did not become healthy")


class LiveService:
    """The service started as the README says (``SERVER_AUTH_KEY=... gunicorn -c
    gunicorn.conf.py wsgi:app``, the console script, from the checkout ``root``,
    no PYTHONPATH): a fresh contents folder under ``folder`` (embedded database
    and executor), 2 web workers and 2 job processes, plus ``settings``
    (environment overrides). ``stop`` ends it and its database."""

    def __init__(self, folder: Path, key: str, root: Path = ROOT, **settings: str) -> None:
        from embedded_db import free_port
        self.contents = folder / "contents"
        (self.contents / "uploads").mkdir(parents=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PATHS_CONTENTS_DIR=str(self.contents), GUNICORN_BIND=f"127.0.0.1:{self.port}",
                   GUNICORN_WORKERS="2", PROCESSING_WORKERS="2", SERVER_AUTH_KEY=key,
                   **settings)
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.log = open(folder / "service.log", "ab")
        self.proc = subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"],
                                     env=env, cwd=root, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        wait_healthy(self.base, self.proc, timeout=120)

    def stop(self) -> None:
        from embedded_db import stop_embedded
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)
        stop_embedded(self.contents / "db")
        self.log.close()
