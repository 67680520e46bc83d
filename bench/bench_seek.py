"""Frame-exact seeking (issue 17): which frame a headless Chromium shows when
a tool seeks a clip's ``<video>`` to a frame's start, middle or end.

    python bench/bench_seek.py [--frames 60]

At 5, 25, 30 and 29.97 fps, the same frames (each showing its index as a
barcode, tests/media.py) are encoded three ways:
- ours before issue 17: frame k at pts k in time base 1/fps;
- ours now: processors/clip_writer.py's ClipWriter;
- ffmpeg's own: ``ffmpeg -framerate R -i f%d.png -c:v libx264 -pix_fmt yuv420p``
  (the imageio-ffmpeg binary).
Each clip is sought to ``k / fps`` (the start of frame k, what a tool computes
from a frame number), ``(k + 0.5) / fps`` and ``(k + 1) / fps - 0.1 ms`` for
every frame k; the table counts the seeks that show frame k.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, ffmpeg_exe, machine, table  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
import av  # noqa: E402
from browser import Chromium, frames_shown  # noqa: E402
from media import barcode_image  # noqa: E402
from test_seek import PROBES, write_clip  # noqa: E402

RATES = {"5": Fraction(5), "25": Fraction(25), "30": Fraction(30),
         "29.97": Fraction(30000, 1001)}
SIZE = (160, 128)


def write_before(path: Path, fps: Fraction, count: int) -> Path:
    """The clip writer's timestamps before issue 17: frame k at pts k, time base 1/fps."""
    with av.open(str(path), "w", format="mp4", container_options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / fps
        stream.options = {"preset": "veryfast", "crf": "23"}
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(barcode_image(index, *SIZE), "rgb24")
            frame.pts, frame.time_base = index, 1 / fps
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def write_ffmpeg(path: Path, fps: Fraction, count: int) -> Path:
    """ffmpeg's own clip of the same frames, from PNG files."""
    folder = path.with_suffix("")
    folder.mkdir()
    for index in range(count):
        av.VideoFrame.from_ndarray(barcode_image(index, *SIZE), "rgb24").to_image() \
            .save(folder / f"f{index}.png")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-framerate", str(fps),
                    "-i", str(folder / "f%d.png"), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


def right_counts(browser: Chromium, clip: Path, fps: Fraction, count: int) -> list[str]:
    """Per probe, 'right/seeks' for seeking every frame of ``clip``."""
    times = [probe(k, float(fps)) for probe in PROBES.values() for k in range(count)]
    shown = frames_shown(browser, clip, times)
    per_probe = [shown[i * count:(i + 1) * count] for i in range(len(PROBES))]
    return [f"{sum(got == k for k, got in enumerate(frames))}/{count}" for frames in per_probe]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    writers = {"ours before": write_before,
               "ours now": lambda path, fps, count: write_clip(path, fps, count, SIZE),
               "ffmpeg": write_ffmpeg}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Chromium(Path(tmp) / "profile") as browser:
        version = browser.call("Browser.getVersion")["product"]
        for name, fps in RATES.items():
            for kind, write in writers.items():
                clip = write(Path(tmp) / f"{kind.replace(' ', '-')}-{name}.mp4", fps, args.frames)
                rows.append([f"{name} fps", kind, *right_counts(browser, clip, fps, args.frames)])
    print(f"{version}, {args.frames} frames of {SIZE[0]}x{SIZE[1]} per clip; {machine()}\n")
    print(table(["rate", "clip", "frame k at k/fps", "at (k+0.5)/fps",
                 "at (k+1)/fps - 0.1 ms"], rows))


if __name__ == "__main__":
    main()
