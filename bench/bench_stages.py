"""Where a job's CPU goes, stage by stage, and the knobs that were tried.

    python bench/bench_stages.py [--reps 3] [--seconds 60] [--frames 120]

In-process, single-stage measurements on the 1080p30 test video (the one
bench_speed.py uses), each repeated ``--reps`` times with the variants of a
stage alternated, medians reported (wall and process CPU, user+sys):

* decode every frame: PyAV thread_type AUTO with FFmpeg's automatic thread
  count (what VideoSource does), thread_count=2, thread_count=4, and
  thread_type SLICE only;
* decode through VideoSource.frames() without and with skip_unsampled(5)
  (non-reference frames that 5 fps sampling never keeps are not decoded);
* encode ``--frames`` sampled 1080p frames (every 6th) with libx264
  veryfast/crf 23 through ClipWriter, with x264's automatic thread count
  (what ClipWriter does) and threads=1/2/4;
* JPEG (quality 90) of the same frames: encode_jpeg (libjpeg-turbo from the
  YUV planes, via simplejpeg) against OpenCV's YUV->BGR conversion +
  imencode (what encode_jpeg did before), and the conversion alone.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, median, table, test_video  # noqa: E402

sys.path.insert(0, str(ROOT))
import av  # noqa: E402
import cv2  # noqa: E402

from processors.clip_writer import ClipWriter, EncoderSettings  # noqa: E402
from processors.frame_ops import encode_jpeg  # noqa: E402
from processors.sampling import TimestampSampler  # noqa: E402
from processors.video_source import VideoSource  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    wall, used = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - wall, cpu() - used


def decode_all(video: Path, thread_type: str, count: int | None) -> int:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        if count:
            stream.codec_context.thread_count = count
        return sum(1 for _ in container.decode(stream))


def decode_source(video: Path, skip: bool) -> int:
    source = VideoSource(video)
    try:
        if skip:
            source.skip_unsampled(5)
        sampler, sampled = TimestampSampler(5), 0
        for item in source.frames():
            sampled += sampler.accept(item.timestamp)
        return sampled
    finally:
        source.close()


def sampled_frames(video: Path, count: int) -> list[av.VideoFrame]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = []
        for i, frame in enumerate(container.decode(stream)):
            if i % 6 == 0:
                # A copy, so that the encoder gets the same pixels every time
                # (decoder buffers are pooled).
                frames.append(av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p"))
            if len(frames) == count:
                return frames
    return frames


def encode(frames: list[av.VideoFrame], threads: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        writer = ClipWriter(Path(tmp) / "clip.mp4", frames[0].width, frames[0].height, 5,
                            EncoderSettings("veryfast", 23))
        if threads:
            writer._stream.options = {**writer._stream.options,
                                      "threads": threads}
        for frame in frames:
            writer.write(frame)
        writer.close()


def jpeg_split(frames: list[av.VideoFrame], part: str) -> None:
    for frame in frames:
        i420 = frame.to_ndarray(format="yuv420p")
        bgr = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
        if part == "imencode":
            cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--frames", type=int, default=120, help="frames to encode (default 120)")
    args = parser.parse_args()
    video = test_video(args.seconds)
    frames = sampled_frames(video, args.frames)
    groups: dict[str, dict[str, Callable[[], object]]] = {
        f"decode all frames of {video.name}": {
            "thread_type AUTO, automatic count (VideoSource)": lambda: decode_all(video, "AUTO", None),
            "thread_type AUTO, thread_count 2": lambda: decode_all(video, "AUTO", 2),
            "thread_type AUTO, thread_count 4": lambda: decode_all(video, "AUTO", 4),
            "thread_type SLICE": lambda: decode_all(video, "SLICE", None),
        },
        "VideoSource.frames() + TimestampSampler(5)": {
            "every frame decoded (before)": lambda: decode_source(video, False),
            "skip_unsampled(5) (now)": lambda: decode_source(video, True),
        },
        f"x264 veryfast crf 23, {len(frames)} 1080p frames (ClipWriter)": {
            "threads auto (ClipWriter)": lambda: encode(frames, None),
            "threads 1": lambda: encode(frames, "1"),
            "threads 2": lambda: encode(frames, "2"),
            "threads 4": lambda: encode(frames, "4"),
        },
        f"JPEG q90, {len(frames)} 1080p frames": {
            "encode_jpeg (simplejpeg from the planes, now)":
                lambda: [encode_jpeg(f, 90) for f in frames],
            "to_ndarray + cvtColor + imencode (before)": lambda: jpeg_split(frames, "imencode"),
            "  to_ndarray + cvtColor only": lambda: jpeg_split(frames, "convert"),
        },
    }
    print(f"{args.reps} rounds; {machine()}", flush=True)
    rows = []
    for group, variants in groups.items():
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for rep in range(args.reps):
            names = list(variants)
            names = names[rep % len(names):] + names[:rep % len(names)]
            for name in names:
                results[name].append(measure(variants[name]))
        first = next(iter(results))
        base_cpu = median([c for _, c in results[first]])
        for name, values in results.items():
            wall, used = median([w for w, _ in values]), median([c for _, c in values])
            rows.append([group if name == first else "", name, f"{wall:.2f}", f"{used:.2f}",
                         f"{used / base_cpu:.2f}"])
            print(f"  {group[:40]:<40} {name:<50} wall {wall:6.2f} s cpu {used:6.2f} s",
                  flush=True)
    print()
    print(table(["stage", "variant", "median wall s", "median CPU s", "CPU vs first"], rows))
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(main())
