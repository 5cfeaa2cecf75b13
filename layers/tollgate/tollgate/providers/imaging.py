"""Image bytes without Pillow: a small PNG encoder (for ``mock/image``) and a reader of the
format and size of PNG, JPEG and WebP data (for what real providers send back)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from msgspec import Struct

from tollgate.providers.base import ImageFormat

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_RGB = 2  # PNG colour type: truecolour, 8 bits per sample


class ImageInfo(Struct, frozen=True):
    format: ImageFormat
    width: int
    height: int


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rows: Iterable[bytes], *, level: int = 6) -> bytes:
    """A PNG of ``width`` x ``height`` RGB pixels from its rows, top first, each ``3 * width``
    bytes. Every row uses filter 0 (none): the images are flat shapes that deflate well."""
    if width < 1 or height < 1:
        raise ValueError("a PNG is at least 1x1")
    compressor = zlib.compressobj(level)
    parts: list[bytes] = []
    count = 0
    for row in rows:
        if len(row) != 3 * width:
            raise ValueError(f"row {count} has {len(row)} bytes, expected {3 * width}")
        parts.append(compressor.compress(b"\x00" + row))
        count += 1
    if count != height:
        raise ValueError(f"{count} rows given for a height of {height}")
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, _RGB, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def _png_info(data: bytes) -> ImageInfo | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return ImageInfo("png", width, height)


def _jpeg_info(data: bytes) -> ImageInfo | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        # Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return ImageInfo("jpeg", width, height)
        index += 2 + length
    return None


def _webp_info(data: bytes) -> ImageInfo | None:
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return ImageInfo("webp", width, height)
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return ImageInfo("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return ImageInfo("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    return None


def image_info(data: bytes) -> ImageInfo | None:
    """The format and pixel size of PNG, JPEG or WebP data; ``None`` for anything else."""
    if data.startswith(PNG_SIGNATURE):
        return _png_info(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_info(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_info(data)
    return None
