"""Quick start: process a sample video through the real HTTP API, on the embedded defaults.

    ./install.sh && python3 quickstart.py

Makes a 20 s 720p sample video, starts the production server
(``gunicorn -c gunicorn.conf.py wsgi:app``: gevent workers, the embedded
database and the job executor), posts it to ``/api/processContent`` as the
Node.js backend would, follows the progress and prints where the clips are.
The server's own log (JSON lines) goes to ``contents/logs/quickstart-server.log``,
whose path it prints, so that the console shows only the quick start's steps.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import requests

from config import load_config
from embedded_db import embedded_uri, free_port, stop_embedded
from naming import CLIP_SUFFIX

ROOT = Path(__file__).resolve().parent


def make_sample(path: Path, seconds: int = 20, fps: int = 30) -> None:
    """A moving gradient with a bouncing square: something worth looking at."""
    width, height = 1280, 720
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(seconds * fps):
            image = np.stack([(x + i * 4) % 256, (y + i * 2) % 256,
                              np.full_like(x, (i * 3) % 256)], axis=-1).astype(np.uint8)
            cx = int((np.sin(i / 20) + 1) / 2 * (width - 160))
            image[280:440, cx:cx + 160] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def main() -> int:
    os.chdir(ROOT)
    key = os.environ.get("SERVER_AUTH_KEY") or secrets.token_urlsafe(24)
    env = {**os.environ, "SERVER_AUTH_KEY": key}
    config = load_config(env=env)
    db_dir = config.contents_dir / "db"
    db_was_running = bool(embedded_uri(db_dir, start=False))
    sample = config.contents_dir / "uploads" / "quickstart" / "sample.mp4"
    sample.parent.mkdir(parents=True, exist_ok=True)
    if not sample.exists():
        print(f"making a 20 s 720p sample video: {sample}")
        make_sample(sample)
    port = free_port()
    env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
    # The console script, as the README tells people to start it (``python -m``
    # would put this folder on sys.path and hide an import that fails for them).
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = config.contents_dir / "logs" / "quickstart-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting the server on 127.0.0.1:{port}; its log: {log}")
    with open(log, "wb") as log_file:  # the child keeps its own copy of the descriptor
        server = subprocess.Popen([str(gunicorn) if gunicorn.exists() else "gunicorn", "-c",
                                   "gunicorn.conf.py", "wsgi:app"], env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, server, log)
        return run_upload(base, key, config.contents_dir, sample.relative_to(config.contents_dir))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        if not db_was_running:
            stop_embedded(db_dir)


def wait_healthy(base: str, server: subprocess.Popen, log: Path,
                 timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:  # not up yet, or still warming up
            pass
        time.sleep(0.3)
    tail = log.read_text(errors="replace").splitlines()[-20:]
    raise SystemExit("the server did not become healthy; the end of its log "
                     f"({log}):\n" + "\n".join(tail))


def run_upload(base: str, key: str, contents: Path, content_path: Path) -> int:
    upload_id = f"quickstart-{int(time.time())}"
    response = requests.post(f"{base}/api/processContent", data={
        "auth_key": key, "upload_id": upload_id, "project_id": "quickstart", "frame_rate": "5",
        "content_path": str(content_path), "request_type": "0", "content_type": "1"})
    print(f"POST /api/processContent -> {response.status_code} {response.json()['message']} "
          f"({response.elapsed.total_seconds() * 1000:.0f} ms)")
    if response.status_code != 202:
        return 1
    status_url = base + response.json()["status_url"]
    while True:
        status = requests.get(status_url, headers={"X-Auth-Key": key}).json()
        print(f"\r  {status['stage']:<10} {status['progress']:>3}%", end="", flush=True)
        if status["status"] != 0:
            break
        time.sleep(0.5)
    print()
    if status["status"] != 1:
        print(f"failed: {status['errorMessage']}")
        return 1
    clips = sorted((contents / "tasks" / "quickstart" / upload_id).glob(f"*{CLIP_SUFFIX}"))
    print(f"done in {status['timings']['processingSeconds']:.1f} s: {len(clips)} task clips")
    for clip in clips:
        print(f"  {clip}")
    print(f"frames (JPEG): {contents / 'frames' / upload_id}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
