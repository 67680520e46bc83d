"""Frame-exact seeking in task clips (issue 17).

An annotation tool that shows frame ``k`` seeks its ``<video>`` to ``k / fps``;
a real headless Chromium must show frame ``k`` there, at the middle of the
frame's interval and just before the next frame's, at every rate. The clips'
declared rate, length and frames must read back as before.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from browser import CHROMIUM, Chromium, frames_shown
from media import barcode_image, read_barcode

from processors.clip_writer import ClipWriter, EncoderSettings
from processors.readers import task_images

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (install.sh dev installs it when run "
                             "as root: apt-get install chromium)")

NTSC = Fraction(30000, 1001)  # 29.97 fps
FRAMES = 30
# Where in frame k's interval a tool seeks: its start (what it computes from a
# frame number), its middle, and 0.1 ms before the next frame.
PROBES = {"start": lambda k, fps: k / fps,
          "middle": lambda k, fps: (k + 0.5) / fps,
          "end": lambda k, fps: (k + 1) / fps - 1e-4}


def write_clip(path: Path, fps: int | Fraction, count: int,
               size: tuple[int, int] = (160, 128)) -> Path:
    """A task clip as the pipeline writes it, frame k showing barcode k."""
    writer = ClipWriter(path, *size, fps, EncoderSettings())
    for index in range(count):
        writer.write(av.VideoFrame.from_ndarray(barcode_image(index, *size), "rgb24"))
    writer.close()
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with Chromium(tmp_path_factory.mktemp("chromium")) as chromium:
        yield chromium


@needs_chromium
@pytest.mark.parametrize("fps", [5, 25, 30, NTSC], ids=str)
def test_a_browser_seeking_anywhere_in_a_frame_shows_that_frame(fps, browser, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", fps, FRAMES)
    seeks = [(k, where, probe(k, float(fps)))  # a tool's float arithmetic, as in JavaScript
             for k in range(FRAMES) for where, probe in PROBES.items()]
    shown = frames_shown(browser, clip, [t for _, _, t in seeks])
    wrong = [f"frame {k} at its {where} (t={t:.6f}) shows {got}"
             for (k, where, t), got in zip(seeks, shown) if got != k]
    assert not wrong, wrong


@pytest.mark.parametrize("fps", [1, 5, 7, 24, 25, NTSC, 30, Fraction(60000, 1001), 119, 120],
                         ids=str)
def test_clips_keep_their_rate_length_and_frames_with_each_frame_a_few_us_early(fps, tmp_path):
    fps = Fraction(fps)
    for count in (1, 2, 4, 31):  # 1-4: fewer frames than the encoder's B-frame delay
        clip = write_clip(tmp_path / f"{count}.mp4", fps, count, size=(64, 64))
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            assert (stream.average_rate, stream.base_rate, stream.guessed_rate) == (fps,) * 3
            assert stream.frames == count
            tick = stream.time_base
            assert abs(stream.duration * tick - count / fps) <= tick
            starts = [frame.pts * tick for frame in container.decode(stream)]
        # Frame 0 at 0 (shown at t=0); each later one before its nominal time
        # by more than a browser's microsecond rounding, far less than a frame.
        assert starts[0] == 0
        assert all(0 < k / fps - start <= Fraction(1, 50000) for k, start in enumerate(starts) if k)
        # What request type 2 reads back from a task's clip: every frame, in order.
        images = task_images("task-1", [], str(clip))
        assert [read_barcode(np.asarray(image)[:, :, 1]) for image in images] == list(range(count))
