"""Joined recordings (issue 17): frames kept against the ffmpeg CLI, and what the repair costs.

    python bench/bench_timeline.py [--parts 2,4,8] [--reps 5] [--base ROOT]

1. Frames kept. For each N of ``--parts``: N recordings of 10 s at 30 fps
   (320x240 H.264 with B-frames, written by PyAV with format="mpegts"; each
   frame shows its index in the joined file as a barcode, tests/media.py),
   each starting its clock at 0 as a camera does, except the last, which
   starts at 100 s (a leap ahead), joined with ``cat``. Sampled at 5 fps:

   * expected -- SPEC sampling of one continuous recording of all the frames;
   * ours     -- ``run_pipeline`` of this checkout (``VideoSource``, the real
                 decode / sample / encode stages), the barcodes its clips show;
   * base     -- the same with the processors of ``--base`` (e.g. a checkout
                 of the main branch: what the service did before);
   * ffmpeg   -- ``ffmpeg -i joined.ts -vf fps=5 out.mp4`` (imageio-ffmpeg's
                 binary), the barcodes its output shows.

   Per contender: frames out, how many come from each recording (5 fps of
   10 s: 50 from each is every part kept), how many are exactly the frames
   SPEC sampling keeps, and frames shown more than once.

2. Cost. Three 20 s 1280x720 30 fps recordings of testsrc2 (libx264 veryfast
   crf 23, 2 s GOP, MPEG-TS by the ffmpeg CLI) joined with ``cat``, and the
   first of them alone. Each way of reading a file runs in a child process,
   the ways alternating, ``--reps`` rounds; reported are the medians of the
   wall time and of the CPU time (all threads, getrusage) of the work alone:
   decoding every frame through ``VideoSource`` (its opening included: for
   MPEG-TS the demux-only timeline pass), with this checkout and with
   ``--base``; plain PyAV decoding (``container.decode``, same threads) as
   the floor; the timeline pass alone (``repaired_span``); demuxing every
   packet, plain and through ``PacketTimeline`` (what the repair adds per
   packet while decoding).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, ffmpeg_exe, machine, median, run_child, table  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from media import clip_barcodes, expected_samples, write_video  # noqa: E402

FPS, RATE, PART_FRAMES = 30, 5, 300
X264 = {"preset": "veryfast", "x264-params": "keyint=60:min-keyint=60:scenecut=0:bframes=3"}
TIMELINE = DATA / "timeline"


def joined_barcodes(parts: int) -> tuple[Path, int]:
    """The joined barcode file of ``parts`` recordings, and its frame count."""
    TIMELINE.mkdir(parents=True, exist_ok=True)
    path = TIMELINE / f"joined-{parts}.ts"
    if not path.exists():
        data = b""
        for number in range(parts):
            start = 3000 if number == parts - 1 else 0  # the last one at 100 s
            part = write_video(TIMELINE / "part.ts", [start + i for i in range(PART_FRAMES)],
                               Fraction(1, FPS), (320, 240), rate=FPS, options=X264,
                               fmt="mpegts", first_index=number * PART_FRAMES)
            data += part.read_bytes()
        path.write_bytes(data)
        (TIMELINE / "part.ts").unlink()
    return path, parts * PART_FRAMES


def joined_testsrc() -> tuple[Path, Path]:
    """(three 20 s 720p recordings joined, the first alone), made once."""
    TIMELINE.mkdir(parents=True, exist_ok=True)
    one, three = TIMELINE / "testsrc-720p-1.ts", TIMELINE / "testsrc-720p-3.ts"
    if not three.exists():
        data = b""
        for number in range(3):
            part = TIMELINE / f"testsrc-part{number}.ts"
            subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                            f"testsrc2=size=1280x720:rate={FPS}", "-ss", str(20 * number),
                            "-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                            "-g", str(2 * FPS), "-pix_fmt", "yuv420p", "-f", "mpegts", str(part)],
                           check=True)
            data += part.read_bytes()
            if number == 0:
                part.replace(one)
            else:
                part.unlink()
        three.write_bytes(data)
    return three, one


def kept_ours(video: Path, root: str) -> list[int] | str:
    """Source frames our pipeline (from checkout ``root``) puts in the task
    clips, or the error that ends the job."""
    out = run_child([sys.executable, __file__, "--child", "pipeline", "--root", root,
                     "--video", str(video)])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result.get("error") or result["kept"]


def kept_ffmpeg(video: Path) -> list[int]:
    with tempfile.TemporaryDirectory(prefix="bench-timeline-") as tmp:
        out = Path(tmp) / "out.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-vf",
                        f"fps={RATE}", str(out)], check=True)
        return clip_barcodes(out)


def child_pipeline(video: str) -> None:
    from exceptions import ContentError
    from processors.pipeline import OutputLayout, PipelineSettings, TaskOutput, run_pipeline
    from processors.video_source import VideoSource

    with tempfile.TemporaryDirectory(prefix="bench-timeline-") as tmp:
        try:
            source = VideoSource(video)
            layout = OutputLayout(Path(tmp) / "tasks", None, source.info.name)
            clips = [event.clip_path for event in
                     run_pipeline(source, PipelineSettings(RATE, 120, keep_frames=False), layout)
                     if isinstance(event, TaskOutput)]
        except ContentError as exc:  # the job would end status 2
            print(json.dumps({"error": f"status 2, {exc.code}"}))
            return
        print(json.dumps({"kept": [i for clip in clips for i in clip_barcodes(clip)]}))


def child_decode(video: str, how: str) -> None:
    """Time one way of reading every frame of ``video`` (printed as JSON)."""
    import resource

    import av
    from processors.video_source import VideoSource

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
        return usage.ru_utime + usage.ru_stime

    start, used = time.perf_counter(), cpu()
    if how == "ours":
        source = VideoSource(video)
        try:
            sum(1 for _ in source.frames())
        finally:
            source.close()
    else:
        with av.open(video) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if how == "pyav":
                sum(1 for _ in container.decode(stream))
            elif how == "demux":
                sum(1 for _ in container.demux(stream))
            else:
                from processors.timeline import PacketTimeline, repaired_span
                if how == "scan":
                    repaired_span(container, stream, "bench")
                else:  # "demux+timeline"
                    timeline = PacketTimeline(stream, True, "bench")
                    sum(1 for _ in timeline.packets(container.demux(stream)))
    print(json.dumps({"wall": time.perf_counter() - start, "cpu": cpu() - used}))


def describe(kept: list[int] | str, expected: list[int], parts: int) -> list[object]:
    """frames out, frames from each part, exactly the expected ones, duplicates."""
    if isinstance(kept, str):  # the job failed: nothing kept
        return [kept, "/".join(["0"] * parts), 0, 0]
    per_part = [sum(1 for i in kept if i // PART_FRAMES == part) for part in range(parts)]
    return [len(kept), "/".join(map(str, per_part)), len(set(kept) & set(expected)),
            len(kept) - len(set(kept))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="2,4,8", help="recordings joined (default 2,4,8)")
    parser.add_argument("--reps", type=int, default=5, help="rounds of the cost (default 5)")
    parser.add_argument("--base", help="another checkout to compare (e.g. the main branch)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, args.root)
        if args.child == "pipeline":
            child_pipeline(args.video)
        else:
            child_decode(args.video, args.child)
        return 0

    print(f"# {machine()}")
    print(f"\n## Frames kept at {RATE} fps: recordings of {PART_FRAMES // FPS} s at {FPS} fps "
          "joined with cat (the last one's clock at 100 s)\n")
    rows = []
    for parts in map(int, args.parts.split(",")):
        video, frames = joined_barcodes(parts)
        expected = expected_samples([Fraction(i, FPS) for i in range(frames)], RATE)
        contenders = [("ours", kept_ours(video, str(ROOT)))]
        if args.base:
            contenders.append(("base", kept_ours(video, args.base)))
        contenders.append(("ffmpeg -vf fps=5", kept_ffmpeg(video)))
        for name, kept in contenders:
            rows.append([parts, len(expected), name, *describe(kept, expected, parts)])
    print(table(["parts", "expected", "who", "frames out", "from each part",
                 "the expected frames", "duplicates"], rows))

    three, one = joined_testsrc()
    ways = [("VideoSource (ours)", "ours", str(ROOT)), ("PyAV decode", "pyav", str(ROOT)),
            ("timeline pass alone", "scan", str(ROOT)), ("demux", "demux", str(ROOT)),
            ("demux + PacketTimeline", "demux+timeline", str(ROOT))]
    if args.base:
        ways.insert(1, ("VideoSource (base)", "ours", args.base))
    print(f"\n## Reading every frame of 720p30 MPEG-TS (medians of {args.reps} rounds)\n")
    rows = []
    for video in (one, three):
        wall: dict[str, list[float]] = {name: [] for name, _, _ in ways}
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in ways}
        for rep in range(args.reps):
            for name, how, root in ways[rep % len(ways):] + ways[:rep % len(ways)]:
                out = run_child([sys.executable, __file__, "--child", how, "--root", root,
                                 "--video", str(video)])
                result = json.loads(out.stdout.strip().splitlines()[-1])
                wall[name].append(result["wall"])
                cpu[name].append(result["cpu"])
        floor_wall, floor_cpu = median(wall["PyAV decode"]), median(cpu["PyAV decode"])
        for name, _, _ in ways:
            rows.append([video.name, name, f"{median(wall[name]):.3f}",
                         f"{median(wall[name]) / floor_wall:.3f}", f"{median(cpu[name]):.3f}",
                         f"{median(cpu[name]) / floor_cpu:.3f}"])
    print(table(["file", "what", "wall s", "/ PyAV decode", "CPU s", "/ PyAV decode"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
