"""Colour analysis without Pillow: PNGs of every colour type and filter decode to the pixels they
were made from, and the palette of an image is its real dominant colours, with shares that add
up to 100 % and complementary colours of the opposite hue."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence

import pytest

from tollgate.images.colors import (
    InvalidImage,
    UnsupportedImage,
    complementary,
    decode_png,
    hex_of,
    palette,
    shares_of,
)
from tollgate.providers.mock import mock_png

Pixel = tuple[int, ...]


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(kind: int, row: bytes, previous: bytes, bpp: int) -> bytes:
    """The PNG encoder's side of a filter (what a real encoder writes)."""
    out = bytearray()
    for i, value in enumerate(row):
        left = row[i - bpp] if i >= bpp else 0
        up = previous[i]
        corner = previous[i - bpp] if i >= bpp else 0
        predictor = {0: 0, 1: left, 2: up, 3: (left + up) // 2, 4: _paeth(left, up, corner)}[kind]
        out.append((value - predictor) & 0xFF)
    return bytes([kind]) + bytes(out)


def make_png(
    pixels: Sequence[Sequence[Pixel]],
    *,
    color_type: int = 2,
    depth: int = 8,
    filters: Callable[[int], int] = lambda y: y % 5,
    palette_rgb: bytes = b"",
    palette_alpha: bytes = b"",
    interlace: int = 0,
) -> bytes:
    height, width = len(pixels), len(pixels[0])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    rows = []
    for line in pixels:
        if depth < 8:
            bits = "".join(format(p[0], f"0{depth}b") for p in line)
            bits += "0" * (-len(bits) % 8)
            rows.append(bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)))
        elif depth == 16:
            rows.append(b"".join(struct.pack(">H", v * 257) for p in line for v in p))
        else:
            rows.append(bytes(v for p in line for v in p))
    bpp = max(1, channels * depth // 8)
    previous = bytes(len(rows[0]))
    raw = b""
    for y, row in enumerate(rows):
        raw += _filtered(filters(y), row, previous, bpp)
        previous = row
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    body = _chunk(b"IHDR", header)
    if palette_rgb:
        body += _chunk(b"PLTE", palette_rgb)
    if palette_alpha:
        body += _chunk(b"tRNS", palette_alpha)
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def gradient(width: int, height: int) -> list[list[Pixel]]:
    return [
        [((x * 37 + y) % 256, (y * 53) % 256, (x * y) % 256) for x in range(width)] for y in range(height)
    ]


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
def test_every_filter_type_decodes_to_the_pixels_it_was_made_from(kind: int) -> None:
    # Given an RGB image whose every row uses this filter
    pixels = gradient(23, 9)
    decoded = decode_png(make_png(pixels, filters=lambda y: kind))
    # Then each pixel is read back exactly
    assert (decoded.width, decoded.height) == (23, 9)
    assert all(decoded.pixel(x, y)[:3] == pixels[y][x] for y in range(9) for x in range(23))


def test_rgba_grey_palette_and_sixteen_bit_pngs_decode() -> None:
    rgba = [[(10, 20, 30, 255), (200, 100, 50, 0)], [(1, 2, 3, 128), (4, 5, 6, 7)]]
    assert decode_png(make_png(rgba, color_type=6)).pixel(1, 0) == (200, 100, 50, 0)
    grey = [[(0,), (128,)], [(255,), (7,)]]
    assert decode_png(make_png(grey, color_type=0)).pixel(1, 0) == (128, 128, 128, 255)
    grey_alpha = [[(9, 200), (1, 2)]]
    assert decode_png(make_png(grey_alpha, color_type=4)).pixel(0, 0) == (9, 9, 9, 200)
    deep = [[(1000 // 257, 65535 // 257, 0), (3, 4, 5)]]
    assert decode_png(make_png(deep, depth=16)).pixel(0, 0)[:3] == deep[0][0]
    indexed = [[(0,), (1,), (2,), (1,), (0,)]]
    png = make_png(
        indexed,
        color_type=3,
        depth=2,
        palette_rgb=bytes([255, 0, 0, 0, 255, 0, 0, 0, 255]),
        palette_alpha=b"\xff\x00",
    )
    decoded = decode_png(png)
    assert [decoded.pixel(x, 0) for x in range(5)] == [
        (255, 0, 0, 255),
        (0, 255, 0, 0),
        (0, 0, 255, 255),
        (0, 255, 0, 0),
        (255, 0, 0, 255),
    ]


def test_what_is_not_a_readable_png_is_refused_clearly() -> None:
    png = make_png(gradient(4, 4))
    with pytest.raises(InvalidImage, match="CRC"):
        decode_png(png[:40] + bytes([png[40] ^ 0xFF]) + png[41:])
    with pytest.raises(InvalidImage, match=r"truncated|IEND"):
        decode_png(png[:-20])
    with pytest.raises(InvalidImage, match="not a PNG"):
        decode_png(b"hello")
    with pytest.raises(UnsupportedImage, match="JPEG"):
        decode_png(b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x20" + b"\x00" * 20)
    with pytest.raises(UnsupportedImage, match="interlaced"):
        decode_png(make_png(gradient(4, 4), interlace=1))


def test_a_small_file_that_inflates_past_its_size_is_refused() -> None:
    # Given a 2x2 image whose data inflates to far more than 2x2 pixels
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    bomb = zlib.compress(b"\x00" * 10_000_000)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", bomb) + _chunk(b"IEND", b"")
    # Then it is refused without inflating it all
    with pytest.raises(InvalidImage, match="bytes where 14 are expected"):
        decode_png(png)


def test_the_palette_of_an_image_of_three_flat_colours_is_those_colours_and_their_shares() -> None:
    # Given 50 % red, 30 % blue, 20 % white
    width = 10
    row = [(220, 20, 20)] * 5 + [(20, 20, 220)] * 3 + [(255, 255, 255)] * 2
    image = decode_png(make_png([row] * 10))
    # When its palette of five is asked for
    found = palette(image, 5)
    # Then there are three colours, the largest first, with exact shares adding up to 100 %
    assert [(c.hex, c.share_bp) for c in found.colors] == [
        ("#dc1414", 5000),
        ("#1414dc", 3000),
        ("#ffffff", 2000),
    ]
    assert found.sampled == 10 * width
    # and each colour's complement is the opposite hue
    assert [c.complementary_hex for c in found.colors] == ["#14dcdc", "#dcdc14", "#ffffff"]


def test_transparent_pixels_are_left_out() -> None:
    row = [(0, 0, 0, 0)] * 6 + [(10, 200, 10, 255)] * 2
    found = palette(decode_png(make_png([row] * 4, color_type=6)), 3)
    assert [(c.hex, c.share_bp) for c in found.colors] == [("#0ac80a", 10_000)]


def test_the_mock_image_gives_the_same_palette_every_time() -> None:
    # Given the PNG mock/image draws for a prompt (a gradient and shapes)
    png = mock_png("a lighthouse at dusk", 256, 256)
    # When analysed twice
    first, second = palette(decode_png(png), 5), palette(decode_png(png), 5)
    # Then the palettes are equal, of five colours, and their shares add up to 10,000
    assert first == second
    assert len(first.colors) == 5
    assert sum(c.share_bp for c in first.colors) == 10_000
    assert [c.share_bp for c in first.colors] == sorted((c.share_bp for c in first.colors), reverse=True)


def test_shares_add_up_exactly_whatever_the_weights() -> None:
    assert shares_of([1, 1, 1]) == [3334, 3333, 3333]
    assert shares_of([2, 1]) == [6667, 3333]
    assert sum(shares_of([7, 13, 29, 31, 97])) == 10_000
    assert shares_of([0, 0]) == [0, 0]


def test_complementary_colours_turn_the_hue_half_way_round() -> None:
    assert complementary((255, 0, 0)) == (0, 255, 255)
    assert complementary((30, 144, 255)) == (255, 141, 30)
    assert complementary((128, 128, 128)) == (128, 128, 128)  # a grey has no hue
    assert hex_of((0, 15, 255)) == "#000fff"
