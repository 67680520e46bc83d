"""The review page of an upload (GET /api/processContent/<id>/review and
``app.py process --review``): a real upload auto-annotated by the tiny square
detector (tests/test_annotation.py), the page's counts checked against the
documents, the signed link checked for expiry and tampering, and the page
opened in a real headless Chromium over the real server (gunicorn)."""
from __future__ import annotations

import base64
import re
import subprocess
import sys
import time

import pytest
import cv2
import numpy as np
import requests
from browser import CHROMIUM, Chromium, image_widths, open_page, screenshot
from conftest import AUTH_KEY, ROOT, service_env, wait_for
from live_server import LiveServer
import torch
from model_export import export_torchscript
from test_annotation import post_aa, run_all, square_video, write_manifest
from tiny_detector import ExportWrapper, train

from api.review import signature
from config import load_config
from processors.review_model import Limits, ReviewBox, ReviewFrame, ReviewTask, ReviewUpload
from processors.review_page import render

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(install.sh dev installs it when run as root)")
KEY = {"X-Auth-Key": AUTH_KEY}


@pytest.fixture(scope="module")
def square_model(tmp_path_factory):
    """The tiny square detector as version 2 only (test_annotation.py saves it in
    every format; one is enough here)."""
    folder = tmp_path_factory.mktemp("v2")
    export_torchscript(ExportWrapper(train(seed=0, steps=300), "decoded"),
                       torch.zeros(1, 3, 64, 64), str(folder / "model.torchscript.pt"))
    write_manifest(folder, version=2, format="torchscript", weights="model.torchscript.pt",
                   output="boxes")
    return folder


@pytest.fixture
def versions_env(env, square_model) -> dict[str, str]:
    return {**env, "ANNOTATION_VERSION_2": str(square_model)}


@pytest.fixture
def aa_client(versions_env, mongo):
    from app import create_app
    return create_app(load_config(env=versions_env)).test_client()


def expected_counts(mongo, upload_id: str) -> dict[str, int]:
    """Tasks, frames and auto boxes of the upload, counted from its documents."""
    tasks = mongo.frames.tasks_of(upload_id)
    frames = [f for t in tasks for f in mongo.frames.frames_of(t["_id"])]
    boxes = [b for f in frames for b in f["boxes"] if b["source"].startswith("auto:")]
    return {"tasks": len(tasks), "frames": len(frames), "boxes": len(boxes),
            "tracks": len({(b["label"], b["trackId"]) for b in boxes})}


def page_counts(html: str) -> dict[str, int]:
    found = re.search(r'id="counts" data-tasks="(\d+)" data-frames="(\d+)"\s+'
                      r'data-boxes="(\d+)" data-tracks="(\d+)"', html)
    assert found, html[:2000]
    return dict(zip(("tasks", "frames", "boxes", "tracks"), map(int, found.groups())))


def test_the_review_page_and_its_signed_link(aa_client, versions_env, mongo, contents):
    square_video(contents / "uploads" / "sq.mp4", 30)
    assert post_aa(aa_client).status_code == 202  # 30 frames at 10 fps: 3 task clips of 10
    run_all(versions_env)
    expected = expected_counts(mongo, "u1")
    assert expected["tasks"] == 3 and expected["frames"] == 30 and expected["boxes"] >= 25

    assert aa_client.get("/api/processContent/u1/review").status_code == 401
    page = aa_client.get("/api/processContent/u1/review", headers=KEY)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert page_counts(html) == expected and "(unreadable)" not in html
    assert html.count('<section class="task"') == 3 and html.count('class="thumb"') == 30
    assert 'id="timeline"' in html and 'id="timings"' in html and ">cutting<" in html
    # Self-contained: nothing to fetch, and the browser is told to fetch nothing.
    assert not re.search(r'(src|href)="(?!data:)', html) and "<script" not in html
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    # Coloured by track (supervision's palette at trackId 1), not by class (index 0).
    first = re.search(r'class="thumb" alt="[^"]*" src="data:image/jpeg;base64,([^"]+)"', html)
    thumb = cv2.imdecode(np.frombuffer(base64.b64decode(first.group(1)), np.uint8),
                         cv2.IMREAD_COLOR).astype(int)
    assert {b["trackId"] for t in mongo.frames.tasks_of("u1")
            for f in mongo.frames.frames_of(t["_id"]) for b in f["boxes"]} == {1}
    near = lambda bgr: (np.abs(thumb - bgr).sum(axis=2) < 60).sum()  # noqa: E731
    assert near((64, 64, 255)) > 50 and near((251, 81, 163)) == 0  # #ff4040, not #a351fb

    link = aa_client.get("/api/processContent/u1", headers=KEY).get_json()["reviewUrl"]
    expires = int(re.search(r"expires=(\d+)", link).group(1))
    assert abs(expires - (time.time() + 86400)) < 60  # server.review_link_seconds
    signed = aa_client.get(link)  # no key
    assert signed.status_code == 200 and page_counts(signed.get_data(as_text=True)) == expected
    assert AUTH_KEY not in link and AUTH_KEY not in html

    sig = signature(AUTH_KEY, "u1", expires)
    for bad in (link.replace(sig, sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")),
                link.replace(f"expires={expires}", f"expires={expires + 1}"),
                link.replace("/u1/", "/u2/"), link.split("&sig=")[0],
                f"/api/processContent/u1/review?expires={int(time.time()) - 5}"
                f"&sig={signature(AUTH_KEY, 'u1', int(time.time()) - 5)}"):
        refused = aa_client.get(bad)
        assert refused.status_code == 403, bad
        assert refused.get_json()["code"] == "forbidden"
    expired = aa_client.get(f"/api/processContent/u1/review?expires={int(time.time()) - 5}"
                            f"&sig={signature(AUTH_KEY, 'u1', int(time.time()) - 5)}")
    assert "expired" in expired.get_json()["message"]


def test_the_cli_writes_the_review_page(versions_env, mongo, contents, tmp_path):
    video = square_video(tmp_path / "walk.mp4", 20)  # 2 s at 10 fps, sampled at 5: 10 frames
    out = tmp_path / "out" / "review.html"
    done = subprocess.run(
        [sys.executable, "app.py", "process", str(video), "--frame-rate", "5", "--model", "2",
         "--upload-id", "cli1", "--review", str(out)],
        # No JPEGs kept: the thumbnails are decoded from the task clip.
        cwd=ROOT, env=service_env({**{k: v for k, v in versions_env.items()
                                      if k != "SERVER_AUTH_KEY"},
                                   "PROCESSING_KEEP_FRAMES": "false"}),
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    html = out.read_text()
    expected = expected_counts(mongo, "cli1")
    assert expected["tasks"] == 1 and expected["frames"] == 10 and expected["boxes"] >= 8
    assert page_counts(html) == expected and html.count('class="thumb"') == 10
    assert "(unreadable)" not in html and not list(contents.glob("frames/**/*.jpg"))


@needs_chromium
def test_a_browser_opens_the_signed_link(versions_env, mongo, contents, tmp_path):
    """gunicorn with its access log on; the page opened from the status's reviewUrl in
    headless Chromium (no key): every image loads, no console error, the counts shown."""
    access_log = tmp_path / "access.log"
    square_video(contents / "uploads" / "sq.mp4", 20)
    server = LiveServer({**versions_env, "GUNICORN_ACCESSLOG": str(access_log)}).wait_ready()
    try:
        body = {"upload_id": "u1", "project_id": "p1", "frame_rate": 10, "request_type": 1,
                "auto_anno_version": 2, "content_type": 1, "content_path": "uploads/sq.mp4"}
        assert requests.post(f"{server.base}/api/processContent", json=body, headers=KEY,
                             timeout=10).status_code == 202
        status = wait_for(lambda: (s := requests.get(f"{server.base}/api/processContent/u1",
                                                     headers=KEY, timeout=10).json())
                          ["status"] == 1 and s, timeout=120, what="the upload")
        url = server.base + status["reviewUrl"]
        with Chromium(tmp_path / "chromium") as browser:
            errors = open_page(browser, url)
            widths = image_widths(browser)
            shown = browser.evaluate("document.getElementById('counts').innerText")
            shot = screenshot(browser, tmp_path / "upload-review.png", max_height=2400)
        assert requests.get(url.replace("sig=", "sig=x"), timeout=10).status_code == 403
    finally:
        server.stop()
    expected = expected_counts(mongo, "u1")
    assert errors == []
    assert len(widths) == 2 * 10 + 1 and all(w > 0 for _, w in widths), widths  # + timeline
    assert f"{expected['tasks']} task clips, {expected['frames']} frames, " \
           f"{expected['boxes']} auto boxes" in shown, shown
    assert shot.stat().st_size > 10000 and shot.read_bytes()[:4] == b"\x89PNG"
    logged = access_log.read_text()
    assert "/api/processContent/u1/review" in logged and AUTH_KEY not in logged


def test_a_long_upload_gets_a_bounded_page(tmp_path):
    """More task clips than thumbnails allowed: the page keeps to its limit, says
    so, and still counts every frame and box; broken frames show as unreadable."""
    image = np.full((90, 160, 3), 90, np.uint8)
    tasks = []
    for t in range(8):
        frames = []
        for k in range(10):
            path = tmp_path / f"{t}-{k}.jpg"
            cv2.imwrite(str(path), image)
            frames.append(ReviewFrame(k, t + k / 10, str(path),
                                      (ReviewBox("car", 10, 10, 30, 20, track_id=t + 1),)))
        tasks.append(ReviewTask(t + 1, f"task-{t + 1}", None, frames))
    (tmp_path / "0-0.jpg").write_bytes(b"not a jpeg")
    html = render(ReviewUpload("long", "completed", tasks), Limits(per_task=3, total=5))
    assert page_counts(html) == {"tasks": 8, "frames": 80, "boxes": 80, "tracks": 8}
    assert html.count('class="thumb"') + html.count("(unreadable)") == 5
    assert html.count("(unreadable)") == 1 and "5 of the 8 task clips" in html


def test_a_review_request_gets_a_longer_database_deadline(aa_client, monkeypatch):
    """The page of a long upload reads all its frames: its request's database
    deadline is DEADLINE_FACTOR times the others' (3 s would refuse any upload
    over ~2 h at 5 fps); the status keeps the usual one."""
    from pymongo import _csot

    from api import review

    seen = {}
    monkeypatch.setattr(review, "review_page",
                        lambda mongo, upload_id: seen.update(review=_csot.get_timeout()) or "")
    assert aa_client.get("/api/processContent/nope/review", headers=KEY).status_code == 200
    assert seen["review"] == pytest.approx(3.0 * review.DEADLINE_FACTOR, abs=0.5)
    assert review.is_review("/api/processContent/u1/review")
    assert not review.is_review("/api/processContent/u1")
