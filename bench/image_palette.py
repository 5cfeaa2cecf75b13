"""How long colour analysis takes in pure Python (``tollgate.images.colors``): decoding PNGs of
the sizes the image models make, with the cheapest filter (None, what mock/image writes) and the
dearest (Paeth, what many encoders pick for photos), then the palette (sampling + k-means).

    PYTHONPATH=layers/tollgate .venv/bin/python bench/image_palette.py
"""

from __future__ import annotations

import struct
import time
import zlib

from tollgate.images.colors import decode_png, palette
from tollgate.providers.mock import mock_png


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def paeth_png(width: int, height: int) -> bytes:
    """A noisy RGB image with every row Paeth-filtered (the slowest to undo)."""
    raw = bytearray()
    previous = bytes(3 * width)
    for y in range(height):
        row = bytes(
            ((x * 31 + y * 17 + (x * y) % 97) * (c + 3)) % 256 for x in range(width) for c in range(3)
        )
        out = bytearray([4])
        for i, value in enumerate(row):
            a = row[i - 3] if i >= 3 else 0
            b = previous[i]
            c = previous[i - 3] if i >= 3 else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
            out.append((value - predictor) & 0xFF)
        raw += out
        previous = row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw)))
        + _chunk(b"IEND", b"")
    )


def timed(label: str, data: bytes, repeat: int = 3) -> None:
    decode_times, palette_times = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        image = decode_png(data)
        decoded = time.perf_counter()
        found = palette(image, 5)
        decode_times.append(decoded - started)
        palette_times.append(time.perf_counter() - decoded)
    print(
        f"{label:<34} {len(data) / 1024:>7.0f} KiB  decode {min(decode_times) * 1000:>6.0f} ms"
        f"  palette {min(palette_times) * 1000:>5.0f} ms"
        f"  ({found.sampled} pixels sampled, {len(found.colors)} colours)"
    )


def main() -> None:
    print("colour analysis, best of 3 (decode = unfilter every row; palette = sample + k-means)")
    for width, height in ((256, 256), (1024, 1024), (1792, 1024)):
        timed(f"mock/image {width}x{height} (filter None)", mock_png("a lighthouse at dusk", width, height))
    for width, height in ((512, 512), (1024, 1024)):
        timed(f"noise {width}x{height} (filter Paeth)", paeth_png(width, height), repeat=1)


if __name__ == "__main__":
    main()
