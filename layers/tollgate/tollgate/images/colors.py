"""Colour analysis (S7): the dominant colours of a PNG, their shares and their complements.

Pure Python, no Pillow (the layer stays small):

- ``decode_png`` reads a PNG with ``zlib``: colour types grey, RGB, palette, grey+alpha and
  RGBA, at 1 to 16 bits, every filter type (None, Sub, Up, Average, Paeth), CRCs checked, and
  the inflated size bounded before inflating (a small file cannot unpack into gigabytes).
  Interlaced PNGs are refused (``UnsupportedImage``), as are JPEG and WebP.
- ``palette`` samples at most ``MAX_SAMPLES`` pixels on a regular grid (deterministic), bins
  them (5 bits a channel), and runs weighted k-means over the bins, starting from the heaviest
  bin and then the bin farthest (weighted) from the centres so far: the same image always
  gives the same palette. Fully transparent pixels are left out.
- Shares are basis points (1/100 of a percent) that add up to exactly 10,000 (largest
  remainder). A colour's complement is its hue turned 180 degrees at the same saturation and
  lightness, which for RGB is exactly ``max + min - channel``.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence
from functools import cache

from msgspec import Struct

from tollgate.providers.imaging import PNG_SIGNATURE, image_info

MAX_SAMPLES = 16_384
MAX_PIXELS = 4096 * 4096
MAX_ITERATIONS = 30
BASIS_POINTS = 10_000
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}

RGB = tuple[int, int, int]


class InvalidImage(ValueError):
    """The bytes are not a readable PNG (truncated, corrupt, inconsistent)."""


class UnsupportedImage(ValueError):
    """A real image this decoder does not read (JPEG, WebP, an interlaced PNG)."""


class DecodedImage(Struct, frozen=True):
    """A PNG's pixels: ``rows`` of unfiltered scanline bytes, as the PNG lays them out."""

    width: int
    height: int
    color_type: int
    bit_depth: int
    rows: tuple[bytes, ...]
    palette: tuple[RGB, ...] = ()
    palette_alpha: bytes = b""

    def pixel(self, x: int, y: int) -> tuple[int, int, int, int]:
        """The pixel at (x, y) as 8-bit RGBA."""
        row = self.rows[y]
        depth = self.bit_depth
        channels = _CHANNELS[self.color_type]
        if depth < 8:
            per_byte = 8 // depth
            byte = row[x // per_byte]
            shift = 8 - depth * (x % per_byte + 1)
            value = (byte >> shift) & ((1 << depth) - 1)
            if self.color_type == 3:
                return self._indexed(value)
            grey = value * 255 // ((1 << depth) - 1)
            return grey, grey, grey, 255
        step = depth // 8
        start = x * channels * step
        samples = [row[start + i * step] for i in range(channels)]  # 16-bit: the high byte
        if self.color_type == 3:
            return self._indexed(samples[0])
        if self.color_type == 0:
            return samples[0], samples[0], samples[0], 255
        if self.color_type == 4:
            return samples[0], samples[0], samples[0], samples[1]
        if self.color_type == 2:
            return samples[0], samples[1], samples[2], 255
        return samples[0], samples[1], samples[2], samples[3]

    def _indexed(self, index: int) -> tuple[int, int, int, int]:
        if index >= len(self.palette):
            raise InvalidImage("a pixel names a colour the palette does not have")
        r, g, b = self.palette[index]
        alpha = self.palette_alpha[index] if index < len(self.palette_alpha) else 255
        return r, g, b, alpha


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks = []
    at = len(PNG_SIGNATURE)
    while at < len(data):
        if at + 12 > len(data):
            raise InvalidImage("the PNG is truncated")
        (length,) = struct.unpack(">I", data[at : at + 4])
        tag = data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        if len(body) != length or at + 12 + length > len(data):
            raise InvalidImage("the PNG is truncated")
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        if zlib.crc32(tag + body) & 0xFFFFFFFF != crc:
            raise InvalidImage(f"the PNG's {tag.decode('latin-1')} chunk is corrupt (CRC)")
        chunks.append((tag, body))
        at += 12 + length
        if tag == b"IEND":
            return chunks
    raise InvalidImage("the PNG has no IEND chunk")


def decode_png(data: bytes) -> DecodedImage:
    """The pixels of a PNG; ``InvalidImage`` or ``UnsupportedImage`` when it cannot be read."""
    if not data.startswith(PNG_SIGNATURE):
        info = image_info(data)
        if info is not None:
            raise UnsupportedImage(f"only PNG images can be analyzed, not {info.format.upper()}")
        raise InvalidImage("the data is not a PNG image")
    chunks = _chunks(data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise InvalidImage("the PNG does not start with its header (IHDR)")
    width, height, depth, color_type, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    if color_type not in _CHANNELS or depth not in _DEPTHS[color_type] or compression or filtering:
        raise InvalidImage(f"the PNG header is invalid (colour type {color_type}, {depth} bits)")
    if interlace:
        raise UnsupportedImage("interlaced PNGs cannot be analyzed; save it without interlacing")
    if not (width >= 1 and height >= 1) or width * height > MAX_PIXELS:
        raise UnsupportedImage(f"the image must have at most {MAX_PIXELS} pixels")
    palette: tuple[RGB, ...] = ()
    alpha = b""
    compressed = bytearray()
    for tag, body in chunks[1:]:
        if tag == b"PLTE":
            if len(body) % 3:
                raise InvalidImage("the PNG's palette is invalid")
            palette = tuple((body[i], body[i + 1], body[i + 2]) for i in range(0, len(body), 3))
        elif tag == b"tRNS" and color_type == 3:
            alpha = bytes(body)
        elif tag == b"IDAT":
            compressed += body
    if color_type == 3 and not palette:
        raise InvalidImage("the PNG has no palette (PLTE)")
    channels = _CHANNELS[color_type]
    row_bytes = (width * channels * depth + 7) // 8
    expected = height * (row_bytes + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(bytes(compressed), expected + 1)
    except zlib.error as exc:
        raise InvalidImage(f"the PNG's image data is corrupt ({exc})") from None
    if len(raw) != expected:
        raise InvalidImage(f"the PNG's image data has {len(raw)} bytes where {expected} are expected")
    bpp = max(1, channels * depth // 8)
    return DecodedImage(
        width, height, color_type, depth, _unfilter(raw, height, row_bytes, bpp), palette, alpha
    )


@cache
def _masks(length: int) -> tuple[int, int]:
    return int.from_bytes(b"\x7f" * length, "big"), int.from_bytes(b"\x80" * length, "big")


def _add(a: bytes, b: bytes) -> bytes:
    """Byte-wise ``(a + b) mod 256`` of two equal-length rows, as two big-integer additions:
    the low seven bits of each byte cannot carry into the next byte, the top bit is an XOR."""
    low, high = _masks(len(a))
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(len(a), "big")


def _add_byte(total: int, value: int) -> int:
    return (total + value) & 0xFF


def _unpaeth(line: bytes, previous: bytes, bpp: int) -> bytes:
    """Undo the Paeth filter of one row (the hot loop of decoding: written for speed)."""
    out = bytearray(line)
    for i in range(min(bpp, len(out))):  # no left or upper-left pixel: the predictor is "up"
        out[i] = (out[i] + previous[i]) & 0xFF
    for i in range(bpp, len(out)):
        a, b, c = out[i - bpp], previous[i], previous[i - bpp]
        pa, pb = b - c, a - c  # |p - a| and |p - b| with p = a + b - c
        pc = pa + pb
        if pa < 0:
            pa = -pa
        if pb < 0:
            pb = -pb
        if pc < 0:
            pc = -pc
        out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return bytes(out)


def _unfilter(raw: bytes, height: int, row_bytes: int, bpp: int) -> tuple[bytes, ...]:
    rows: list[bytes] = []
    previous = bytes(row_bytes)
    at = 0
    for _ in range(height):
        kind = raw[at]
        line = raw[at + 1 : at + 1 + row_bytes]
        at += 1 + row_bytes
        if kind == 0:
            current = line
        elif kind == 1:  # Sub: a running sum per channel
            out = bytearray(row_bytes)
            for channel in range(bpp):
                sums: list[int] = list(itertools.accumulate(line[channel::bpp], _add_byte))
                out[channel::bpp] = bytes(sums)
            current = bytes(out)
        elif kind == 2:  # Up
            current = _add(line, previous)
        elif kind == 3:  # Average
            out = bytearray(line)
            for i in range(row_bytes):
                left = out[i - bpp] if i >= bpp else 0
                out[i] = (out[i] + ((left + previous[i]) >> 1)) & 0xFF
            current = bytes(out)
        elif kind == 4:  # Paeth
            current = _unpaeth(line, previous, bpp)
        else:
            raise InvalidImage(f"the PNG uses an unknown filter type {kind}")
        rows.append(current)
        previous = current
    return tuple(rows)


# -- the palette ------------------------------------------------------------------------------------


class PaletteColor(Struct, frozen=True):
    """A dominant colour, its share of the (opaque) pixels, and its complement."""

    rgb: RGB
    share_bp: int  # basis points: the shares of a palette add up to 10,000
    complementary: RGB

    @property
    def hex(self) -> str:
        return hex_of(self.rgb)

    @property
    def complementary_hex(self) -> str:
        return hex_of(self.complementary)


class Palette(Struct, frozen=True):
    width: int
    height: int
    sampled: int
    colors: tuple[PaletteColor, ...]


def hex_of(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def complementary(rgb: RGB) -> RGB:
    """The colour of the opposite hue at the same saturation and lightness (HSL): rotating
    the hue by 180 degrees maps each channel c to max + min - c."""
    top, bottom = max(rgb), min(rgb)
    r, g, b = rgb
    return top + bottom - r, top + bottom - g, top + bottom - b


def sample(image: DecodedImage, limit: int = MAX_SAMPLES) -> list[RGB]:
    """At most ``limit`` pixels on a regular grid (the centre of each cell), opaque ones only."""
    step = max(1, math.ceil(math.sqrt(image.width * image.height / limit)))
    found: list[RGB] = []
    for y in range(step // 2, image.height, step):
        for x in range(step // 2, image.width, step):
            r, g, b, a = image.pixel(x, y)
            if a:
                found.append((r, g, b))
    return found


def _distance(a: Sequence[int], b: Sequence[int]) -> int:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2


def shares_of(weights: Sequence[int], total: int = BASIS_POINTS) -> list[int]:
    """Integer shares of ``total`` in proportion to ``weights``, adding up to ``total``
    exactly: each gets its floor, the rest goes to the largest remainders (earliest first)."""
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    floors = [w * total // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(weights[i] * total % whole), i))
    for i in remainders[: total - sum(floors)]:
        floors[i] += 1
    return floors


def palette(image: DecodedImage, k: int = 5) -> Palette:
    """The ``k`` dominant colours of the image (fewer if it has fewer), largest share first."""
    if k < 1:
        raise ValueError("a palette has at least one colour")
    pixels = sample(image)
    bins: dict[RGB, list[int]] = {}
    for r, g, b in pixels:
        entry = bins.setdefault((r >> 3, g >> 3, b >> 3), [0, 0, 0, 0])
        entry[0] += 1
        entry[1] += r
        entry[2] += g
        entry[3] += b
    points = sorted(
        (
            (w, ((sr + w // 2) // w, (sg + w // 2) // w, (sb + w // 2) // w))
            for w, sr, sg, sb in bins.values()
        ),
        key=lambda point: (-point[0], point[1]),
    )
    if not points:
        return Palette(image.width, image.height, 0, ())
    centres = [points[0][1]]
    while len(centres) < min(k, len(points)):
        score, chosen = max(
            ((w * min(_distance(p, c) for c in centres), p) for w, p in points),
            key=lambda scored: (scored[0], [-v for v in scored[1]]),
        )
        if score == 0:
            break
        centres.append(chosen)
    weights: list[int] = []
    for _ in range(MAX_ITERATIONS):
        sums = [[0, 0, 0, 0] for _ in centres]
        for w, p in points:
            nearest = min(range(len(centres)), key=lambda i: (_distance(p, centres[i]), i))
            total = sums[nearest]
            total[0] += w
            total[1] += w * p[0]
            total[2] += w * p[1]
            total[3] += w * p[2]
        moved = [
            ((sr + w // 2) // w, (sg + w // 2) // w, (sb + w // 2) // w) if w else centre
            for (w, sr, sg, sb), centre in zip(sums, centres, strict=True)
        ]
        weights = [total[0] for total in sums]
        if moved == centres:
            break
        centres = moved
    kept = sorted(
        ((w, c) for w, c in zip(weights, centres, strict=True) if w), key=lambda wc: (-wc[0], hex_of(wc[1]))
    )
    shares = shares_of([w for w, _ in kept])
    colors = tuple(
        PaletteColor(rgb=c, share_bp=share, complementary=complementary(c))
        for (_, c), share in zip(kept, shares, strict=True)
    )
    return Palette(image.width, image.height, len(pixels), colors)


__all__ = [
    "DecodedImage",
    "InvalidImage",
    "Palette",
    "PaletteColor",
    "UnsupportedImage",
    "complementary",
    "decode_png",
    "hex_of",
    "palette",
    "sample",
    "shares_of",
]
