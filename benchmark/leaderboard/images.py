"""PNG checks of untrusted images: magic bytes and header (size, bit depth, colour type) before any decoding, then a
decode by PIL's PNG plugin alone (no other format's decoder ever sees the bytes) and the content rules per kind."""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.leaderboard.submission import EDITED, MASK, SOFT_MASK, Artifact

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_BYTES = 33  # signature (8) + IHDR chunk: length, type, 13 bytes of data, CRC
_IHDR = struct.Struct(">I4sIIBBBBB")
# what a file that is not a PNG often is, to say so in the refusal
_LOOKS_LIKE = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive (an .npz?)"),
    (b"\x93NUMPY", "a NumPy array"),
    (b"\x80", "a Python pickle"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%!PS", "a PostScript file"),
    (b"#!", "a script"),
    (b"<", "an HTML, SVG or XML text"),
)
_COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
# what PIL (and zlib under it) raises on a damaged or hostile image
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    MemoryError,
)


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int

    def describe(self) -> str:
        return f"{self.bit_depth}-bit {_COLOUR_TYPES.get(self.colour_type, f'colour type {self.colour_type}')}"


def png_header(head: bytes) -> PngHeader:
    """The IHDR of a PNG from its first ``HEADER_BYTES`` bytes; ``ValueError`` (one phrase) when it is not one."""
    if not head.startswith(PNG_SIGNATURE):
        kind = next((what for magic, what in _LOOKS_LIKE if head.startswith(magic)), None)
        return _raise(f"content is not PNG{f' (it looks like {kind})' if kind else ''}")
    if len(head) < HEADER_BYTES:
        return _raise("a truncated PNG (no complete header)")
    length, chunk, width, height, depth, colour, _, _, _ = _IHDR.unpack_from(head, len(PNG_SIGNATURE))
    if chunk != b"IHDR" or length != 13:
        return _raise("a damaged PNG (its first chunk is not the header)")
    if not (width and height):
        return _raise("a PNG of zero size")
    return PngHeader(width, height, depth, colour)


def _raise(message: str) -> PngHeader:
    raise ValueError(message)


def read_header(path: Path) -> PngHeader:
    with open(path, "rb") as f:
        return png_header(f.read(HEADER_BYTES))


# per artifact: the (bit depth, colour type) pairs it may have, and how to say so
_ACCEPTED = {
    EDITED: ({(8, 2), (8, 6)}, "an edited image is an 8-bit RGB or RGBA PNG"),
    MASK: ({(1, 0), (8, 0)}, "a mask is a 1- or 8-bit grey PNG (0 and 255; white = edit)"),
    SOFT_MASK: ({(16, 0)}, "a soft mask is a 16-bit grey PNG (value / 65535)"),
}


def header_problem(header: PngHeader, artifact: Artifact, max_pixels: int) -> str | None:
    """Why an image with this header is refused before decoding (its pixel count, its kind), or None."""
    if header.width * header.height > max_pixels:
        return (
            f"{header.width}×{header.height} pixels, over the limit of {max_pixels} (checked from the header, "
            "before decoding)"
        )
    accepted, rule = _ACCEPTED[artifact]
    if (header.bit_depth, header.colour_type) not in accepted:
        return f"{rule} (this one: {header.describe()})"
    return None


def decode(path: Path, max_pixels: int) -> np.ndarray:
    """The pixels of a PNG whose header passed ``header_problem``: PIL's PNG plugin only, one frame only, a
    decompression-bomb warning treated as the error it is. ``ValueError`` (one phrase) when it cannot be decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG"]) as im:
                if im.width * im.height > max_pixels:
                    raise ValueError(f"{im.width}×{im.height} pixels, over the limit of {max_pixels}")
                if getattr(im, "n_frames", 1) > 1:
                    raise ValueError("an animated PNG (one frame per image)")
                im.load()
                return np.asarray(im)
    except DECODE_ERRORS as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"cannot be decoded as PNG ({text[:200]})") from err


def content_problem(pixels: np.ndarray, artifact: Artifact) -> str | None:
    """Why decoded pixels break their kind's rule (a mask must be binary), or None."""
    if artifact is MASK and pixels.dtype != bool:
        values = np.unique(pixels)
        if not set(values.tolist()) <= {0, 255}:
            shown = ", ".join(str(v) for v in values[:6]) + (", …" if len(values) > 6 else "")
            return f"a mask is binary (0 and 255 only); this one holds {shown}"
    return None


def soft_mask_values(pixels: np.ndarray) -> np.ndarray:
    """A 16-bit soft mask's pixels as float32 in [0, 1] (what a run's soft_mask.npz holds)."""
    return (pixels.astype(np.float64) / 65535.0).astype(np.float32)


def binary_mask_values(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(bool) if pixels.dtype == bool else pixels > 127
