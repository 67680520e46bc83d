"""A headless Chromium for tests that need a real browser: which frame a
``<video>`` shows after a seek, as an annotation tool would see it; a page
opened from a URL, its images checked and a screenshot taken (``open_page``).

The DevTools protocol goes over a pipe (``--remote-debugging-pipe``: the
browser reads commands on fd 3 and answers on fd 4, JSON messages ending in a
NUL byte), so no websocket client and no port are needed. The clip reaches the
page as bytes (a blob URL): no HTTP server either (a browser seeks in an HTTP
resource only with range requests, which ``http.server`` does not serve).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from media import read_barcode

CHROMIUM = shutil.which("chromium")
TIMEOUT = 120.0  # seconds for one protocol call (a clip's seeks: about 2 s; each seek has 10 s)

# Seeks the clip to each time, waits until that frame is presented (the
# 'seeked' event can come before the compositor has the new frame: drawing
# then reads the previous one, seen once in 100 seeks), draws it and returns
# its green channel.
_SEEK_JS = r"""
(async (b64, times) => {
  const fail = what => new Promise((_, no) => setTimeout(() => no(new Error(what)), 10000));
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const video = document.createElement('video');
  video.muted = true;
  video.src = URL.createObjectURL(new Blob([bytes], {type: 'video/mp4'}));
  await Promise.race([fail('the clip did not load'), new Promise((ok, no) => {
    video.onloadeddata = ok;
    video.onerror = () => no(new Error('clip error: ' + video.error.message));
  })]);
  const [w, h] = [video.videoWidth, video.videoHeight];
  const canvas = Object.assign(document.createElement('canvas'), {width: w, height: h});
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const frames = [];
  for (const t of times) {
    // Seeking a paused video to where it is presents no new frame (Chromium
    // skips it): the frame there is already the current one.
    const moved = t !== video.currentTime;
    const presented = new Promise(ok => video.requestVideoFrameCallback(ok));
    const seeked = new Promise(ok => { video.onseeked = ok; });
    video.currentTime = t;
    await Promise.race([fail('no frame after seeking to ' + t),
                        Promise.all(moved ? [seeked, presented] : [seeked])]);
    context.drawImage(video, 0, 0);
    const rgba = context.getImageData(0, 0, w, h).data;
    let green = '';
    for (let i = 1; i < rgba.length; i += 4) green += String.fromCharCode(rgba[i]);
    frames.push(btoa(green));
  }
  return {w, h, frames};
})
"""


class Chromium:
    """``with Chromium(folder) as browser``: one headless browser and one page."""

    def __init__(self, folder: Path) -> None:
        assert CHROMIUM, "chromium is not installed"
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()
        to_browser, from_browser = _above_4(to_browser), _above_4(from_browser)
        # bash (dash takes no fd above 9) moves the pipe ends to fds 3 and 4
        # (no preexec_fn: unsafe with threads); its own session lets close()
        # end the renderers too.
        command = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        self.process = subprocess.Popen(
            ["bash", "-c", command, CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--mute-audio", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={folder}", "about:blank"],
            pass_fds=(to_browser, from_browser), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._next_id, self._buffer = 0, b""
        self.events: list[dict] = []  # protocol events (console messages, ...) seen so far
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self.call("Target.attachToTarget",
                                      {"targetId": target, "flatten": True})["sessionId"]
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        os.close(self._commands)
        os.close(self._answers)
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def call(self, method: str, params: dict | None = None, page: bool = False) -> dict:
        """One protocol command (to the page when ``page``); its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = json.loads(self._read_message(deadline))
            if answer.get("id") == self._next_id:  # events and other answers are not ours
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            if "method" in answer and len(self.events) < 10000:
                self.events.append(answer)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, page=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(details.get("exception", {}).get("description") or details["text"])
        return result["result"].get("value")

    def _read_message(self, deadline: float) -> bytes:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer in {TIMEOUT:.0f} s")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (status {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return message


def _above_4(fd: int) -> int:
    """``fd`` moved above 4, where moving the other end to 3 or 4 cannot clobber it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def frames_shown(browser: Chromium, clip: Path, times: Sequence[float]) -> list[int]:
    """The barcode (tests/media.py) the browser shows after seeking ``clip`` to
    each of ``times`` in turn."""
    clip_bytes = base64.b64encode(clip.read_bytes()).decode()
    shown = browser.evaluate(f"{_SEEK_JS}({json.dumps(clip_bytes)}, {json.dumps(list(times))})")
    shape = shown["h"], shown["w"]
    return [read_barcode(np.frombuffer(base64.b64decode(frame), np.uint8).reshape(shape))
            for frame in shown["frames"]]


# Waits for every image of the page to load or fail; (id or alt, naturalWidth) of each.
_IMAGES_JS = r"""
(async () => {
  const images = [...document.images];
  await Promise.all(images.map(i => i.complete ? null :
    new Promise(ok => { i.onload = ok; i.onerror = ok; })));
  return images.map(i => [i.id || i.alt, i.naturalWidth]);
})()
"""


def open_page(browser: Chromium, url: str, timeout: float = 60.0, width: int = 1280) -> list[str]:
    """Load ``url`` in the page (a window ``width`` CSS pixels wide) and wait
    until it has loaded; the errors it logged (console errors, uncaught
    exceptions, failed or refused loads)."""
    for domain in ("Page", "Runtime", "Log"):
        browser.call(f"{domain}.enable", page=True)
    browser.call("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False}, page=True)
    browser.events.clear()
    answer = browser.call("Page.navigate", {"url": url}, page=True)
    assert "errorText" not in answer, answer
    deadline = time.monotonic() + timeout
    while browser.evaluate("document.readyState") != "complete" \
            or browser.evaluate("location.href") != url:
        assert time.monotonic() < deadline, f"{url} did not load in {timeout:.0f} s"
        time.sleep(0.1)
    return console_errors(browser)


def console_errors(browser: Chromium) -> list[str]:
    errors = []
    for event in browser.events:
        params = event.get("params", {})
        if event["method"] == "Runtime.exceptionThrown":
            errors.append(str(params.get("exceptionDetails", {}).get("text")))
        elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
        elif event["method"] == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(params["entry"].get("text", ""))
    return errors


def image_widths(browser: Chromium) -> list[tuple[str, int]]:
    """(id or alt, naturalWidth) of every image of the page, once each has loaded
    or failed: a broken image has width 0."""
    return [tuple(pair) for pair in browser.evaluate(_IMAGES_JS)]


def screenshot(browser: Chromium, path: Path, max_height: int = 16000) -> Path:
    """The whole page (beyond the window, up to ``max_height``) as a PNG.

    With ``SCREENSHOT_DIR`` set, a copy goes there too: the README's pictures
    are made by the test run (``SCREENSHOT_DIR=docs/screenshots pytest -k browser``)."""
    size = browser.call("Page.getLayoutMetrics", page=True)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height),
            "scale": 1}
    shot = browser.call("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                   "captureBeyondViewport": True}, page=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    if os.environ.get("SCREENSHOT_DIR"):
        folder = Path(os.environ["SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).write_bytes(path.read_bytes())
    return path
