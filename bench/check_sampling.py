"""Check that the pipeline's output does not depend on a pipeline change.

    python bench/check_sampling.py --base /path/to/other/checkout [--rates 1,2,5,...]

Generates a matrix of small test videos into bench/data/sampling/ (H.264
with and without B-frames, B-pyramid, open GOP, 25/29.97/60 fps, variable
frame rate with gaps, an edit list that starts between keyframes, MKV with
millisecond timestamps, MPEG-TS, MPEG-2 in MPEG-PS, HEVC, MPEG-4 part 2,
VP9, a rotated phone-style video, a truncated file) and runs
``run_pipeline`` on each at several frame rates with the processors of
this checkout and with those of ``--base`` (e.g. ``git archive HEAD | tar -x
-C /tmp/base``). For every task it compares the sampled source indexes and
timestamps (through the pipeline, and straight from VideoSource with a
TimestampSampler, up to an error if the file has one), the MD5 of every
JPEG (so the sampled pictures are the same, pixel for pixel) and each
clip's properties (codec, pixel format, size, frame rate, frame count,
faststart); errors (truncated files) must be the same too. Prints one line per video and rate, and exits 1 on a
difference. This is a correctness check for performance work, not a
benchmark.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, ffmpeg_exe  # noqa: E402

SAMPLING = DATA / "sampling"
SIZE = "480x270"
LAVFI = ["-f", "lavfi", "-i"]


def _x264(extra: list[str]) -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            *extra]


def _src(rate: str = "30", seconds: int = 8) -> list[str]:
    return [*LAVFI, f"testsrc2=size={SIZE}:rate={rate}", "-t", str(seconds)]


# name -> ffmpeg arguments after the binary (the output path is appended), or a
# callable(make) for videos derived from another one.
VIDEOS: dict[str, list[str]] = {
    "h264_bframes.mp4": [*_src(), *_x264([])],
    "h264_no_bframes.mp4": [*_src(), *_x264(["-bf", "0"])],
    "h264_no_pyramid.mp4": [*_src(), *_x264(["-x264-params", "b-pyramid=none:bframes=3"])],
    "h264_8bframes.mp4": [*_src(), *_x264(["-x264-params", "bframes=8:b-adapt=2"])],
    "h264_open_gop.mp4": [*_src(), *_x264(["-g", "30", "-x264-params", "open-gop=1"])],
    "h264_gop30.mp4": [*_src(), *_x264(["-g", "30"])],
    "h264_interlaced.mp4": [*LAVFI, "testsrc2=size=480x272:rate=30", "-t", "8",
                            *_x264(["-x264-params", "interlaced=1"])],
    "h264_strict_pyramid.mp4": [*_src(), *_x264(["-x264-params", "b-pyramid=strict"])],
    "h264_25fps.mp4": [*_src("25"), *_x264([])],
    "h264_29.97fps.mp4": [*_src("30000/1001"), *_x264([])],
    "h264_60fps.mp4": [*_src("60"), *_x264([])],
    "h264_vfr_gaps.mp4": [*_src(), "-vf", "select='not(between(mod(n\\,40)\\,10\\,17))'",
                          "-fps_mode", "vfr", *_x264([])],
    "h264_vfr_jitter.mkv": [*_src("60"), "-vf",
                            "select='not(eq(mod(n\\,3)\\,1))',setpts='N/40/TB+0.004*sin(N)/TB'",
                            "-fps_mode", "passthrough", *_x264([])],
    "h264.mkv": [*_src(), *_x264([])],
    "h264.ts": [*_src(), *_x264([]), "-f", "mpegts"],
    "mpeg2.mpg": [*_src(), "-c:v", "mpeg2video", "-bf", "2", "-q:v", "4", "-f", "vob"],
    "mpeg4_bframes.mp4": [*_src(), "-c:v", "mpeg4", "-bf", "2", "-q:v", "4"],
    "hevc_bframes.mp4": [*_src(), "-c:v", "libx265", "-preset", "ultrafast",
                         "-x265-params", "bframes=4:b-pyramid=1:log-level=error",
                         "-pix_fmt", "yuv420p", "-tag:v", "hvc1"],
    "vp9.webm": [*_src(seconds=4), "-c:v", "libvpx-vp9", "-deadline", "realtime",
                 "-cpu-used", "8", "-b:v", "500k"],
    "h264_rotated.mp4": [*_src(), *_x264([]), "-metadata:s:v", "rotate=90"],
}
# Derived from another video by a stream copy that starts between keyframes:
# an edit list, and packets flagged "discard" that the decoder decodes but
# does not output.
DERIVED: dict[str, list[str]] = {
    # From 0 s (one keyframe): 39 of 240 samples discarded, which the
    # truncation check (track sample count) takes for a truncated file.
    "h264_editlist.mp4": ["-ss", "1.3", "-i", "{h264_bframes.mp4}", "-c", "copy"],
    # From 1 s: 9 discarded, within the truncation check's tolerance.
    "h264_editlist_gop30.mp4": ["-ss", "1.3", "-i", "{h264_gop30.mp4}", "-c", "copy"],
}
TRUNCATED = "h264_truncated.mp4"  # the first 60% of h264_bframes.mp4 with moov first


def make_videos() -> list[Path]:
    SAMPLING.mkdir(parents=True, exist_ok=True)
    ffmpeg = ffmpeg_exe()
    paths = []
    for name, args in VIDEOS.items():
        path = SAMPLING / name
        if not path.exists():
            extra = ["-movflags", "+faststart"] if name.endswith(".mp4") else []
            subprocess.run([ffmpeg, "-v", "error", "-y", *args, *extra, str(path)], check=True)
        paths.append(path)
    for name, args in DERIVED.items():
        path = SAMPLING / name
        if not path.exists():
            filled = [str(SAMPLING / a[1:-1]) if a.startswith("{") else a for a in args]
            subprocess.run([ffmpeg, "-v", "error", "-y", *filled, str(path)], check=True)
        paths.append(path)
    path = SAMPLING / TRUNCATED
    if not path.exists():
        # moov is at the front (faststart), so cutting the tail leaves a file
        # that opens and then ends early.
        data = (SAMPLING / "h264_bframes.mp4").read_bytes()
        path.write_bytes(data[:int(len(data) * 0.6)])
    paths.append(path)
    return paths


def clip_properties(path: Path) -> dict:
    """What the SPEC promises of a clip (its bytes are not compared: libx264 does
    not reproduce them run to run when the source height is not a multiple of
    16, with or without a change)."""
    import av
    data = path.read_bytes()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "size": [stream.codec_context.width, stream.codec_context.height],
                "rate": str(stream.average_rate), "frames": frames,
                "faststart": data.find(b"moov") < data.find(b"mdat")}


def child(root: str, video: str, rates: list[int]) -> None:
    """Run the pipeline of ``root`` on ``video`` at each rate; print JSON results."""
    sys.path.insert(0, root)
    from exceptions import ContentError
    from processors.clip_writer import EncoderSettings
    from processors.pipeline import (
        OutputLayout,
        PipelineSettings,
        TaskOutput,
        run_pipeline,
    )
    from processors.video_source import VideoSource

    md5 = lambda p: hashlib.md5(Path(p).read_bytes()).hexdigest()  # noqa: E731
    results = {}
    for rate in rates:
        settings = PipelineSettings(frame_rate=rate, frames_per_task=40, keep_frames=True,
                                    encoder=EncoderSettings("veryfast", 23))
        tasks = []
        error = None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                source = VideoSource(video)
                try:
                    layout = OutputLayout(Path(tmp) / "t", Path(tmp) / "f", source.info.name)
                    for event in run_pipeline(source, settings, layout):
                        if isinstance(event, TaskOutput):
                            tasks.append({
                                "n": event.number, "clip": clip_properties(event.clip_path),
                                "frames": [[f.source_index, f.timestamp, md5(f.image_path)]
                                           for f in event.frames]})
                finally:
                    source.close()
            except ContentError as exc:
                error = f"{exc.code}: {exc}"
                # A failed job keeps nothing, and how many tasks were reported
                # before the failure reached the caller depends on timing.
                tasks = []
        results[rate] = {"tasks": tasks, "error": error, "source": source_samples(video, rate)}
    print(json.dumps(results))


def source_samples(video: str, rate: int) -> dict:
    """The sampled frames straight from VideoSource (with skip_unsampled where
    this checkout has it): index, timestamp and pixel MD5 of every sampled
    frame read before the end or an error, and the error."""
    from exceptions import ContentError
    from processors.sampling import TimestampSampler
    from processors.video_source import VideoSource

    sampler, samples, error = TimestampSampler(rate), [], None
    try:
        source = VideoSource(video)
        try:
            if hasattr(source, "sampling_slack"):  # as run_pipeline samples it
                sampler = TimestampSampler(rate, slack=source.sampling_slack)
            if hasattr(source, "skip_unsampled"):
                source.skip_unsampled(rate)
            for item in source.frames():
                if sampler.accept(item.timestamp):
                    pixels = item.frame.to_ndarray(format="yuv420p").tobytes()
                    samples.append([item.index, str(item.timestamp),
                                    hashlib.md5(pixels).hexdigest()])
        finally:
            source.close()
    except ContentError as exc:
        error = f"{exc.code}: {exc}"
    return {"samples": samples, "error": error}


def run_root(root: Path, video: Path, rates: list[int]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(root), str(video),
                          ",".join(map(str, rates))], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{root} on {video.name}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the other checkout's root (required)")
    parser.add_argument("--rates", default="1,2,5,7,10,15,30,60")
    parser.add_argument("--only", help="a substring of the video names to check")
    parser.add_argument("--video", action="append", default=[],
                        help="check this video too (e.g. bench/data/testsrc2-1920x1080-30-60s.mp4)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], [int(r) for r in args.child[2].split(",")])
        return 0
    if not args.base:
        parser.error("--base is required")
    rates = [int(r) for r in args.rates.split(",")]
    failures = 0
    for video in make_videos() + [Path(v) for v in args.video]:
        if args.only and args.only not in video.name:
            continue
        ours, theirs = run_root(ROOT, video, rates), run_root(Path(args.base), video, rates)
        for rate in rates:
            a, b = ours[str(rate)], theirs[str(rate)]
            frames = sum(len(t["frames"]) for t in a["tasks"])
            same = a == b
            failures += not same
            detail = a["error"] or f"{len(a['tasks'])} tasks, {frames} frames"
            if a["error"]:
                detail += f" (after {len(a['source']['samples'])} sampled frames)"
            print(f"{'same' if same else 'DIFFERENT':<9} {video.name:<22} rate {rate:>2}: {detail}",
                  flush=True)
            if not same:
                print(f"    this checkout: {json.dumps(a)[:600]}\n    base: {json.dumps(b)[:600]}")
    print("all the same" if not failures else f"{failures} differences")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
