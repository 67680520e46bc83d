"""Generated footage with exact ground truth for shot detection and still frames.

A scene is a list of ``Shot``s joined end to end: each has its own textured
background (or another view of a shared one: two cameras in one place),
optional camera pan, moving shapes, flashes, darkness and fades through black.
Every frame gets sensor noise, and ``encode`` puts the scene through libx264
so the compression noise a decoder sees is real. ``Truth`` holds the hard
cuts, the fades, and a content key per frame: two frames with equal keys
differ only by noise and compression ("truly still"), frames with different
keys show something new (a moved or entered object, a pan step, a flash).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import cv2
import numpy as np


# Pixels an object (or the camera) must move, from the last kept frame, for a
# frame to count as changed: at 640x360 a 160-pixel-wide comparison sees a
# move of 4 source pixels as one of its own, of 1 pixel as a quarter.
MIN_MOVE = 2


@dataclass(frozen=True)
class Mover:
    """A filled rectangle, ``size`` (w, h) pixels, from ``start`` (x, y) at
    ``velocity`` pixels per frame; it appears at frame ``enters`` of its shot
    and stands still from frame ``stops`` on."""

    colour: tuple[int, int, int]
    size: tuple[int, int]
    start: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    enters: int = 0
    stops: int | None = None

    def at(self, t: int) -> tuple[int, int] | None:
        if t < self.enters:
            return None
        moving = (self.stops if self.stops is not None and t > self.stops else t) - self.enters
        return (round(self.start[0] + self.velocity[0] * moving),
                round(self.start[1] + self.velocity[1] * moving))


@dataclass(frozen=True)
class Shot:
    frames: int
    texture: int  # seed of the background; shots sharing it are views of one place
    view: tuple[int, int] = (0, 0)  # where in the background the camera starts
    pan: tuple[float, float] = (0.0, 0.0)  # camera pixels per frame
    movers: tuple[Mover, ...] = ()
    brightness: float = 1.0  # 0.15: a dark shot
    flashes: tuple[int, ...] = ()  # frames (of the shot) lit up by a flash
    fade_in: int = 0  # frames from black at the start
    fade_out: int = 0  # frames to black at the end
    noise: float = 2.5  # sensor noise, grey levels (sigma)
    fine: bool = False  # fine stripes over the background (hard for hashes under pans)
    # Background colours kept within 70..185 per channel: a detector of pure
    # colours (tests/tracking_scene.colour_detector) finds only the movers.
    muted: bool = False


@dataclass
class Truth:
    hard_cuts: list[int] = field(default_factory=list)  # first frame of a shot after a hard cut
    fades: list[tuple[int, int]] = field(default_factory=list)  # [first, end) of each fade pair
    keys: list[tuple] = field(default_factory=list)  # per frame: what it shows, noise aside
    shot_of: list[int] = field(default_factory=list)  # per frame: its shot's index

    def expected_cuts(self, sampled: Sequence[int]) -> list[int]:
        """The hard cuts as the sampled frames see them: the first sampled frame of
        each new shot (a shot no sample falls in merges with the next)."""
        return _first_after(self.hard_cuts, sampled)

    def change(self, i: int, kept: int, least: int = MIN_MOVE) -> str:
        """"still" (frame ``i`` shows what frame ``kept`` showed, noise aside),
        "changed" (an object appeared, left, or moved at least ``least`` pixels;
        the camera moved as far; a flash; a fade step) or "subtle" (something
        moved less: a filter may keep the frame or not, and the move adds up)."""
        a, b = self.keys[i], self.keys[kept]
        if a == b:
            return "still"
        if a[0] != b[0] or a[3:] != b[3:] or _far(a[1], b[1], least):
            return "changed"
        for one, other in zip(a[2], b[2]):
            if (one is None) != (other is None) or (one is not None and _far(one, other, least)):
                return "changed"
        return "subtle"

    def expected_fades(self, sampled: Sequence[int]) -> list[tuple[int, int]]:
        return [(a, b) for a, b in self.fades if any(a <= s < b for s in sampled)]


def _far(a: tuple[int, ...], b: tuple[int, ...], least: int) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) >= least


def _first_after(cuts: Sequence[int], sampled: Sequence[int]) -> list[int]:
    out: list[int] = []
    for cut in cuts:
        later = [s for s in sampled if s >= cut]
        if later and later[0] not in out and later[0] != sampled[0]:
            # a shot with no sample of its own: its cut and the next fall on one sample
            out.append(later[0])
    return out


def truth_of(shots: Sequence[Shot], size: tuple[int, int] = (320, 180)) -> Truth:
    truth, start = Truth(), 0
    for index, shot in enumerate(shots):
        if index:
            before = shots[index - 1]
            if before.fade_out or shot.fade_in:
                truth.fades.append((start - before.fade_out, start + shot.fade_in))
            else:
                truth.hard_cuts.append(start)
        for t in range(shot.frames):
            truth.keys.append(_key(index, shot, t, size))
            truth.shot_of.append(index)
        start += shot.frames
    return truth


def _key(index: int, shot: Shot, t: int, size: tuple[int, int]) -> tuple:
    return (index, _offset(shot, t), tuple(_visible(m, t, size) for m in shot.movers),
            t in shot.flashes, round(_light(shot, t), 3))


def _visible(mover: Mover, t: int, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The part of the frame ``mover`` covers at ``t`` (None: not in the picture)."""
    where = mover.at(t)
    if where is None:
        return None
    x0, y0 = max(0, where[0]), max(0, where[1])
    x1, y1 = min(size[0], where[0] + mover.size[0]), min(size[1], where[1] + mover.size[1])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _offset(shot: Shot, t: int) -> tuple[int, int]:
    return (round(shot.view[0] + shot.pan[0] * t), round(shot.view[1] + shot.pan[1] * t))


def _light(shot: Shot, t: int) -> float:
    light = shot.brightness
    if shot.fade_in and t < shot.fade_in:
        light *= t / shot.fade_in
    if shot.fade_out and t >= shot.frames - shot.fade_out:
        light *= (shot.frames - 1 - t) / shot.fade_out
    return light


def render(shots: Sequence[Shot], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The scene's RGB frames, noise included."""
    width, height = size
    for index, shot in enumerate(shots):
        span_x = max(_offset(shot, t)[0] for t in (0, shot.frames - 1)) + width + 1
        span_y = max(_offset(shot, t)[1] for t in (0, shot.frames - 1)) + height + 1
        canvas = _background(shot.texture, span_x, span_y, shot.fine)
        if shot.muted:
            canvas = (70 + canvas.astype(np.float32) * (115 / 255)).astype(np.uint8)
        rng = np.random.default_rng(1000 * index + shot.texture)
        for t in range(shot.frames):
            x, y = _offset(shot, t)
            image = canvas[y:y + height, x:x + width].astype(np.float32)
            for mover in shot.movers:
                _paint(image, mover, t)
            if t in shot.flashes:
                image = image * 0.3 + 200
            image = image * _light(shot, t) + rng.normal(0, shot.noise, image.shape)
            yield np.clip(image, 0, 255).astype(np.uint8)


def _paint(image: np.ndarray, mover: Mover, t: int) -> None:
    where = mover.at(t)
    if where is None:
        return
    x, y = where
    w, h = mover.size
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(image.shape[1], x + w), min(image.shape[0], y + h)
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = mover.colour



def _background(seed: int, width: int, height: int, fine: bool) -> np.ndarray:
    """Smooth colour fields under random rectangles: a textured place, one per seed."""
    rng = np.random.default_rng(seed)
    # Sizes fixed by the seed (not the span asked for), so views of one place agree.
    base_w, base_h = max(width, 1600), max(height, 1000)
    low = rng.integers(20, 236, (base_h // 120 + 2, base_w // 120 + 2, 3)).astype(np.float32)
    image = cv2.resize(low, (base_w, base_h), interpolation=cv2.INTER_CUBIC)
    for _ in range(400):  # texture, as real places have (a bare gradient hides any pan)
        x, y = int(rng.integers(0, base_w)), int(rng.integers(0, base_h))
        w, h = int(rng.integers(6, 80)), int(rng.integers(6, 80))
        image[y:y + h, x:x + w] = rng.integers(0, 256, 3)
    if fine:
        stripes = (np.arange(base_w) // 3 % 2 * 40 - 20).astype(np.float32)
        image += stripes[None, :, None]
    return np.clip(image, 0, 255).astype(np.uint8)[:height, :width]


def encode(path: Path, shots: Sequence[Shot], size: tuple[int, int] = (320, 180),
           fps: int = 30, crf: int = 23, gop: int = 60) -> Truth:
    """Write the scene as H.264 (libx264, yuv420p) and return its ground truth."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"preset": "veryfast", "crf": str(crf), "g": str(gop)}
        for index, rgb in enumerate(render(shots, size)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return truth_of(shots, size)


def decode(path: Path) -> Iterator[tuple[int, av.VideoFrame]]:
    """(frame number, yuv420p frame) as the pipeline has them."""
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            yield index, frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")


def encoded(folder: Path, name: str, shots: Sequence[Shot]) -> tuple[list, Truth]:
    """The scene written to ``folder/name`` and read back: its decoded frames
    (as ``decode`` gives them) and its ground truth."""
    path = folder / name
    truth = encode(path, shots)
    return list(decode(path)), truth


# --- the scenes the tests use ---------------------------------------------------------------

RED, WHITE, BLUE = (220, 30, 30), (250, 250, 250), (30, 60, 230)


def cuts_scene() -> list[Shot]:
    """Hard cuts, short shots, a fade, a pan, and a red box standing at one
    place on both sides of a cut (a tracker would link it across)."""
    parked = Mover(RED, (40, 24), (140, 120))
    walker = Mover(BLUE, (20, 30), (10, 40), (4.0, 0.5))
    return [
        Shot(40, texture=1, movers=(parked, walker)),
        Shot(35, texture=2, movers=(parked, Mover(WHITE, (16, 16), (300, 20), (-6.0, 3.0)))),
        Shot(8, texture=3),  # a short shot
        Shot(30, texture=4, pan=(3.0, 0.0), fine=True),
        Shot(6, texture=5, movers=(walker,)),  # shorter still
        Shot(40, texture=4, view=(900, 500), movers=(parked,), fade_out=12),  # same place, other camera
        Shot(40, texture=6, fade_in=12, movers=(walker,)),
        Shot(30, texture=7, brightness=0.2, movers=(Mover(WHITE, (30, 20), (0, 80), (8.0, 0.0)),)),
    ]


def still_scene(quiet: int = 150) -> list[Shot]:
    """A fixed camera: ``quiet`` frames where nothing moves (noise only), then a
    small box enters, crosses, stops; quiet again; then a second small box
    edges in slowly."""
    small = Mover(RED, (10, 10), (-8, 90), (2.0, 0.0), enters=quiet, stops=quiet + 60)
    slow = Mover(BLUE, (8, 8), (200, -6), (0.0, 1.0), enters=quiet + 150)
    return [Shot(quiet + 200, texture=11, movers=(small, slow), noise=3.0)]


def varied_scene(seed: int, size: tuple[int, int] = (640, 360), shots: int = 10) -> list[Shot]:
    """A random edit for the benchmark: shots of 4-60 frames, each a mix of fast
    movers, camera pans (slow to whip), flashes, dark footage and fine texture,
    some the same place seen by another camera, and one fade through black."""
    rng = np.random.default_rng(seed)
    width, height = size
    out: list[Shot] = []
    fade_at = int(rng.integers(1, shots))
    for index in range(shots):
        kind = rng.choice(["calm", "fast", "pan", "flash", "dark", "short"])
        frames = int(rng.integers(4, 13)) if kind == "short" else int(rng.integers(25, 61))
        if index in (fade_at - 1, fade_at):
            frames = max(frames, 30)  # room for the fade
        movers = tuple(
            Mover(tuple(int(c) for c in rng.integers(0, 256, 3)),
                  (int(rng.integers(width // 30, width // 6)), int(rng.integers(height // 20, height // 4))),
                  (float(rng.integers(0, width)), float(rng.integers(0, height))),
                  tuple(float(v) for v in rng.normal(0, 14 if kind == "fast" else 3, 2)))
            for _ in range(int(rng.integers(0, 4))))
        texture = int(rng.integers(0, 8)) + 100 * seed  # textures repeat: one place, other views
        view = (int(rng.integers(0, 600)), int(rng.integers(0, 300)))
        if out and out[-1].texture == texture and abs(out[-1].view[0] - view[0]) < width // 2:
            view = ((out[-1].view[0] + width // 2 + 40) % 640, view[1])  # another camera: a visible cut
        out.append(Shot(
            frames, texture,
            view=view,
            pan=tuple(float(v) for v in rng.normal(0, 8, 2).clip(0, 12)) if kind == "pan" else (0.0, 0.0),
            movers=movers,
            brightness=0.3 if kind == "dark" else 1.0,
            flashes=(frames // 2,) if kind == "flash" else (),
            fade_out=10 if index + 1 == fade_at else 0,
            fade_in=10 if index == fade_at else 0,
            noise=float(rng.uniform(1.5, 4.0)),
            fine=bool(rng.random() < 0.3)))
    return out
