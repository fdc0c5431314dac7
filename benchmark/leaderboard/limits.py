"""The validator's limits on an untrusted submission: sizes and counts it checks before reading any content."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Every limit of one validation. The defaults are ours, sized for the largest dataset the harness loads
    (PIE-Bench: 700 samples of 512 px, three PNGs each) with a wide margin; a board may lower or raise them."""

    max_archive_bytes: int = 4096 * MIB  # the zip file itself
    max_total_bytes: int = 4096 * MIB  # all entries, uncompressed, as their headers declare them
    max_files: int = 20_000  # entries (files and folders)
    max_file_bytes: int = 256 * MIB  # one entry, uncompressed
    max_ratio: float = 200.0  # uncompressed / compressed, per entry over ratio_floor_bytes and for the whole zip
    ratio_floor_bytes: int = 1 * MIB  # smaller entries may compress better (a blank mask) without harm
    max_manifest_bytes: int = 1 * MIB  # submission.json
    max_pixels: int = 4096 * 4096  # one image's width × height, from its header, before decoding
    max_depth: int = 4  # folder levels in the archive (a submission needs 2)
    max_json_depth: int = 32  # nesting of submission.json (the run's config is about 6 deep)
    max_problems: int = 200  # lines reported; the rest are counted in one more line
