"""Hostile input against the live service: each case's outcome and the service's peak memory.

    python bench/bench_hostile.py [--cases zip_bomb,fifo,...]

Starts the service as the README says (``SERVER_AUTH_KEY=... gunicorn -c
gunicorn.conf.py wsgi:app`` from the repo folder, embedded database and
executor, a fresh contents folder under a temp dir), then tries each case
through the HTTP API as an attacker or a careless caller would. While a case
runs, a thread samples every 20 ms the resident memory of the whole service
(the gunicorn master, its gevent workers, the executor and its job
processes: every descendant of the master; the database server is not
counted) and the table shows the peak of that sum over the case, and how far
above the idle service it went. Prints a Markdown table; exits 1 if any case
gave a 5xx or left its upload unfinished.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, LiveService, machine, table  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from media import cfr_video  # noqa: E402

KEY = "bench-hostile-key"
MIB = 1024 * 1024


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler:
    """The peak of the service's summed RSS while a case runs."""

    def __init__(self, root: int) -> None:
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return sum(rss(pid) for pid in descendants(self.root))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.02)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Service(LiveService):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, KEY, PROCESSING_FRAMES_PER_TASK="30",
                         PROCESSING_STALL_SECONDS="20")

    def post(self, **fields: object) -> requests.Response:
        body = {"auth_key": KEY, "project_id": "hostile", "frame_rate": 5, **fields}
        return requests.post(f"{self.base}/api/processContent", json=body, timeout=60)

    def outcome(self, upload_id: str, answer: requests.Response, timeout: float = 300) -> str:
        """What the caller sees in the end: the answer, then the upload's end state."""
        if answer.status_code != 202:
            return f"{answer.status_code} {_code(answer)}"
        url = f"{self.base}/api/processContent/{upload_id}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = requests.get(url, headers={"X-Auth-Key": KEY}, timeout=10).json()
            if doc["status"] == 1:
                return f"202, then status 1 ({doc['taskCount']} tasks)"
            if doc["status"] == 2:
                return f"202, then status 2 `{doc['errorMessage']['code']}`"
            time.sleep(0.2)
        return "202, then NOT FINISHED"


def _code(answer: requests.Response) -> str:
    try:
        return f"`{answer.json().get('code')}`"
    except ValueError:
        return "(not JSON)"


# -- the cases: each makes its input under contents/ and returns what the caller saw ---

def zip_bomb(svc: Service) -> str:
    path = svc.contents / "uploads" / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("a.png", "w", force_zip64=True) as member:
            chunk = bytes(64 * MIB)
            for _ in range(16):  # 1 GiB of zeros in about 1 MB
                member.write(chunk)
    return svc.outcome("zipbomb", svc.post(upload_id="zipbomb", content_type=2,
                                           content_path="uploads/bomb.zip"))


def png_bomb(svc: Service) -> str:
    """A 2 MB PNG that decodes to 40000 x 40000 pixels (4.8 GB as RGB)."""
    import zlib
    width = height = 40000
    packer, row = zlib.compressobj(9), b"\x00" + bytes(width)  # filter byte + one gray row
    raw = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    folder = svc.contents / "uploads" / "pngbomb"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                      + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return svc.outcome("pngbomb", svc.post(upload_id="pngbomb", content_type=2,
                                           content_path="uploads/pngbomb"))


def huge_frames(svc: Service) -> str:
    cfr_video(svc.contents / "uploads" / "8k.mp4", 3, size=(8192, 8192))
    return svc.outcome("huge", svc.post(upload_id="huge", content_path="uploads/8k.mp4"))


def fifo(svc: Service) -> str:
    os.mkfifo(svc.contents / "uploads" / "fifo.mp4")
    return svc.outcome("fifo", svc.post(upload_id="fifo", content_path="uploads/fifo.mp4"),
                       timeout=120)


def symlink_out(svc: Service) -> str:
    outside = Path(tempfile.mkdtemp()) / "secret.png"
    from PIL import Image
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(outside)
    folder = svc.contents / "uploads" / "linked"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "a.png").symlink_to(outside)
    (folder / "b.png").symlink_to(folder / "inner" / "a.png")  # a link to a link
    return svc.outcome("symlink", svc.post(upload_id="symlink", content_type=2,
                                           content_path="uploads/linked"))


def long_name(svc: Service) -> str:
    name = "é" * 123 + ".mp4"  # 250 bytes, a legal name
    cfr_video(svc.contents / "uploads" / name, 10, size=(64, 48))
    return svc.outcome("longname", svc.post(upload_id="longname", content_path=f"uploads/{name}"))


def garbage_video(svc: Service) -> str:
    (svc.contents / "uploads" / "junk.mp4").write_bytes(os.urandom(2 * MIB))
    return svc.outcome("junk", svc.post(upload_id="junk", content_path="uploads/junk.mp4"))


def not_utf8_path(svc: Service) -> str:
    answer = requests.post(f"{svc.base}/api/processContent", headers={
        "Content-Type": "application/x-www-form-urlencoded"},
        data=f"auth_key={KEY}&upload_id=u8&project_id=p&frame_rate=5&content_path=uploads/%FF%FE",
        timeout=30)
    return f"{answer.status_code} {_code(answer)}"


def nested_json(svc: Service) -> str:
    body = '{"a": ' * 100000 + "1" + "}" * 100000
    answer = requests.post(f"{svc.base}/api/processContent", data=body, timeout=30,
                           headers={"Content-Type": "application/json", "X-Auth-Key": KEY})
    return f"{answer.status_code} {_code(answer)}"


def big_json(svc: Service) -> str:
    body = json.dumps({"auth_key": KEY, "upload_id": "big", "project_id": "p",
                       "frame_rate": 5, "pad": "x" * (50 * MIB)})
    answer = requests.post(f"{svc.base}/api/processContent", data=body, timeout=60,
                           headers={"Content-Type": "application/json"})
    return f"{answer.status_code} {_code(answer)}"


def big_form(svc: Service) -> str:
    answer = requests.post(f"{svc.base}/api/processContent", timeout=60, data={
        "auth_key": KEY, "upload_id": "bigform", "project_id": "p", "pad": "x" * (50 * MIB)})
    return f"{answer.status_code} {_code(answer)}"


def chunked_body(svc: Service) -> str:
    """50 MB sent chunked: no Content-Length for a limit to read."""
    def chunks():
        yield b'{"pad": "'
        for _ in range(50):
            yield b"x" * MIB
        yield b'"}'
    try:
        answer = requests.post(f"{svc.base}/api/processContent", data=chunks(), timeout=60,
                               headers={"Content-Type": "application/json", "X-Auth-Key": KEY})
    except requests.ConnectionError:  # the server closed the connection mid-upload
        return "connection closed by the server"
    return f"{answer.status_code} {_code(answer)}"


def slow_headers(svc: Service) -> str:
    """A client that opens a connection and never finishes its request."""
    sockets = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", svc.port))
        sock.sendall(b"POST /api/processContent HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    answer = requests.get(f"{svc.base}/api/health", timeout=10)
    for sock in sockets:
        sock.close()
    return f"health answered {answer.status_code} while 50 requests hung"


CASES: dict[str, tuple[str, Callable[[Service], str]]] = {
    "zip_bomb": ("zip with a 1 GiB member (1 MB on disk)", zip_bomb),
    "png_bomb": ("PNG of 40000x40000 pixels in a folder", png_bomb),
    "huge_frames": ("8192x8192 video, 3 frames", huge_frames),
    "fifo": ("a FIFO as the video", fifo),
    "symlink_out": ("folder with links (to links) to an image outside contents", symlink_out),
    "long_name": ("250-byte file name (123 x 'é')", long_name),
    "garbage_video": ("2 MiB of random bytes as a video", garbage_video),
    "not_utf8_path": ("content_path with bytes that are not UTF-8", not_utf8_path),
    "nested_json": ("JSON nested 100,000 deep", nested_json),
    "big_json": ("50 MB JSON body", big_json),
    "big_form": ("50 MB urlencoded body", big_form),
    "chunked_body": ("50 MB chunked body (no Content-Length)", chunked_body),
    "slow_headers": ("50 connections that never finish their request", slow_headers),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    svc = Service(folder)
    rows, bad = [], 0
    try:
        time.sleep(3)  # the executor's job processes are up and idle
        for name in args.cases.split(","):
            what, case = CASES[name]
            idle = Sampler(svc.proc.pid).now()
            with Sampler(svc.proc.pid) as sampler:
                try:
                    outcome = case(svc)
                except Exception as exc:  # noqa: BLE001 - a bench reports, it does not stop
                    outcome = f"bench error: {exc!r}"
            bad += outcome.startswith("5") or "NOT FINISHED" in outcome or "error:" in outcome
            rows.append([what, outcome, f"{sampler.peak / MIB:.0f}",
                         f"{(sampler.peak - idle) / MIB:+.0f}"])
            print(" | ".join(map(str, rows[-1])), file=sys.stderr)
    finally:
        svc.stop()
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    print(f"machine: {machine()}")
    print(table(["case", "outcome", "service peak RSS MiB", "over idle MiB"], rows))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
