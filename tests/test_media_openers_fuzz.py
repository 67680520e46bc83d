"""Property-based tests of the media openers (issue 9): whatever a folder, a zip
or a video file holds (random names, undecodable names, random and damaged
bytes, nested folders, symlinks in and out, FIFOs, bombs), ``ImageSource`` and
``VideoSource`` raise nothing but ContentError, never block, and never open a
file outside the contents folder (every open() is watched by an audit hook)."""
from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from media import barcode_image, cfr_video
from PIL import Image

from exceptions import ContentError
from processors.image_source import ImageSource
from processors.input_guard import MIB, InputLimits
from processors.video_source import VideoSource

LIMITS = dict(max_frame_pixels=1000 * 1000, max_image_bytes=MIB, max_zip_bytes=4 * MIB,
              max_zip_ratio=50)
SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

_opened: list[str] | None = None  # paths opened while a source runs


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # cannot be removed; costs nothing while _opened is None


@lru_cache
def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(barcode_image(5, 32, 24)).save(buffer, format=fmt)
    return buffer.getvalue()


@lru_cache
def small_video() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return cfr_video(Path(tmp) / "v.mp4", 15, size=(64, 48)).read_bytes()


def damaged(data: bytes, cut: float, spans: list[tuple[float, bytes]]) -> bytes:
    """``data`` cut to a fraction ``cut`` of it, with ``spans`` overwritten."""
    out = bytearray(data[:max(1, int(len(data) * cut))])
    for at, junk in spans:
        start = int(len(out) * at)
        out[start:start + len(junk)] = junk
    return bytes(out)


DAMAGE = st.tuples(st.floats(0.05, 1.0),
                   st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=16)), max_size=4))
CONTENT = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]), DAMAGE).map(
        lambda t: damaged(encoded(t[0]), t[1][0], t[1][1])),
    st.sampled_from(["PNG", "JPEG", "GIF"]).map(encoded),
)
NAME = st.binary(min_size=1, max_size=24).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")).map(os.fsdecode)
SUFFIX = st.sampled_from([".png", ".JPG", ".jpeg", ".gif", ".tiff", ".bmp", ".webp", ".txt", ""])
KINDS = ["file", "link out", "link to link out", "link in", "broken link", "folder",
         "folder link out", "fifo", "nested"]
ENTRY = st.tuples(NAME, SUFFIX, st.sampled_from(KINDS), CONTENT)


class Tree:
    """A contents folder and, next to it, what no source may read."""

    def __init__(self, base: Path) -> None:
        self.contents = base / "contents"
        self.uploads = self.contents / "uploads"
        self.uploads.mkdir(parents=True)
        self.outside = base / "outside"
        self.outside.mkdir()
        (self.outside / "secret.png").write_bytes(encoded("PNG"))
        (self.outside / "secret.mp4").write_bytes(small_video())
        (self.uploads / "hop.png").symlink_to(self.outside / "secret.png")
        (self.uploads / "inside.png").write_bytes(encoded("PNG"))

    def add(self, folder: Path, name: str, kind: str, content: bytes) -> None:
        path = folder / name
        if os.path.lexists(path):
            return
        if kind == "file":
            path.write_bytes(content)
        elif kind == "link out":
            path.symlink_to(self.outside / "secret.png")
        elif kind == "link to link out":
            path.symlink_to(self.uploads / "hop.png")
        elif kind == "link in":
            path.symlink_to(self.uploads / "inside.png")
        elif kind == "broken link":
            path.symlink_to(folder / "nowhere.png")
        elif kind == "folder":
            path.mkdir()
        elif kind == "folder link out":
            path.symlink_to(self.outside, target_is_directory=True)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "nested":
            path.mkdir()
            (path / "a.png").write_bytes(content)
            (path / "out.png").symlink_to(self.outside / "secret.png")


def opens_only_inside(run, root: Path) -> None:
    """``run()`` raises nothing but ContentError, within 20 s, and opens no
    file of the test's folder outside ``root`` (the contents folder; Python's
    own opens of its modules, e.g. PIL's plugins, are elsewhere)."""
    global _opened
    _opened = []

    def hang(*_: object) -> None:
        raise TimeoutError("an opener blocked")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        run()
    except ContentError:
        pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        opened, _opened = _opened, None
    inside, test_folder = os.path.realpath(root) + os.sep, os.path.realpath(root.parent) + os.sep
    outside = [p for p in map(os.path.realpath, opened)
               if p.startswith(test_folder) and not p.startswith(inside)]
    assert not outside, outside


def drain(source) -> None:
    """Read every frame of ``source``, then close it."""
    try:
        for _ in source.frames():
            pass
    finally:
        source.close()


def read_images(path: Path, root: Path) -> None:
    drain(ImageSource(path, 5, InputLimits(root=root, **LIMITS)))


@SETTINGS
@given(entries=st.lists(ENTRY, max_size=8))
def test_image_folders(entries):
    with tempfile.TemporaryDirectory() as tmp:
        tree = Tree(Path(tmp))
        folder = tree.uploads / "set"
        folder.mkdir()
        for name, suffix, kind, content in entries:
            tree.add(folder, name + suffix, kind, content)
        opens_only_inside(lambda: read_images(folder, tree.contents), tree.contents)


# Zip member names: any text a zip can store (no NUL, not only slashes).
MEMBER_NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                      min_size=1, max_size=24).filter(lambda name: name.strip("/"))
MEMBER = st.tuples(
    st.one_of(MEMBER_NAME, st.sampled_from(["../../outside/secret.png", "/etc/passwd.png",
                                            "a/b/c.png", "__MACOSX/._x.png", "dir/"])),
    SUFFIX,
    st.one_of(CONTENT, st.just(None)),  # None: 2 MiB of zeros, a bomb by its ratio
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                     zipfile.ZIP_LZMA]))


@SETTINGS
@given(members=st.lists(MEMBER, max_size=6), damage=st.one_of(st.none(), DAMAGE))
def test_image_zips(members, damage):
    with tempfile.TemporaryDirectory() as tmp:
        tree = Tree(Path(tmp))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, suffix, content, compression in members:
                archive.writestr(name + suffix, bytes(2 * MIB) if content is None else content,
                                 compress_type=compression)
        data = buffer.getvalue() if damage is None else damaged(buffer.getvalue(), *damage)
        path = tree.uploads / "set.zip"
        path.write_bytes(data)
        opens_only_inside(lambda: read_images(path, tree.contents), tree.contents)


def read_video(path: Path, root: Path) -> None:
    drain(VideoSource(path, InputLimits(root=root, **LIMITS)))


@SETTINGS
@given(content=st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=500).map(lambda b: b"\x00\x00\x00\x18ftypisom" + b),
    DAMAGE.map(lambda d: damaged(small_video(), *d))))
def test_video_files(content):
    with tempfile.TemporaryDirectory() as tmp:
        tree = Tree(Path(tmp))
        path = tree.uploads / "v.mp4"
        path.write_bytes(content)
        opens_only_inside(lambda: read_video(path, tree.contents), tree.contents)


@pytest.mark.parametrize("kind", ["link out", "link to link out", "fifo", "folder"])
def test_video_path_that_is_not_a_file_inside(kind, tmp_path):
    tree = Tree(tmp_path)
    path = tree.uploads / "v.mp4"
    if kind == "link out":  # to a real, valid video outside
        path.symlink_to(tree.outside / "secret.mp4")
    elif kind == "link to link out":
        (tree.uploads / "hop.mp4").symlink_to(tree.outside / "secret.mp4")
        path.symlink_to(tree.uploads / "hop.mp4")
    else:
        tree.add(tree.uploads, "v.mp4", kind, b"")
    with pytest.raises(ContentError) as caught:
        read_video(path, tree.contents)
    assert caught.value.code == ("outside_contents" if kind.startswith("link")
                                 else "not_a_regular_file")


def test_zip_member_stream_stops_at_the_cap():
    """zipfile already stops at a member's declared size; this cap holds even
    where it would not (the bytes actually read, whatever is declared)."""
    from processors.image_source import _CappedStream
    stream = io.BufferedReader(_CappedStream(io.BytesIO(bytes(MIB + 1)),
                                             InputLimits(max_image_bytes=MIB), "set.zip/1.png"))
    assert len(stream.read(MIB)) == MIB
    with pytest.raises(ContentError) as caught:
        stream.read()
    assert caught.value.code == "image_too_large"
