"""An image's width and height from its header alone (JPEG, PNG).

The health report needs each task's frame size to turn YOLO's normalised
boxes into pixel aspect ratios; reading a header costs a few hundred bytes
where decoding costs the whole image (and a media library datasets/ must not
import: processors/ own decoding).
"""
from __future__ import annotations

import struct
from pathlib import Path

# JPEG start-of-frame markers (baseline, extended, progressive, lossless, ...):
# every SOFn but DHT (C4), JPG (C8) and DAC (CC), which share the range.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height), or ValueError for what is not a JPEG or PNG."""
    with open(path, "rb") as handle:
        head = handle.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            width, height = struct.unpack(">II", head[16:24])
            return width, height
        if head[:2] != b"\xff\xd8":
            raise ValueError(f"{path}: neither a JPEG nor a PNG")
        handle.seek(2)
        while True:
            marker = handle.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                raise ValueError(f"{path}: no JPEG frame header")
            if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
                continue  # markers without a length
            length = struct.unpack(">H", handle.read(2))[0]
            if marker[1] in _SOF:
                height, width = struct.unpack(">xHH", handle.read(5))
                return width, height
            handle.seek(length - 2, 1)
