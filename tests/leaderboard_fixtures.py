"""Builders of leaderboard submissions and boards for the tests: a valid one, then each hostile case breaks one rule."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHECKSUM = "c" * 64
SIZE = 8  # pixels per side of the builders' images


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def edited_png(seed: int = 0, size: int = SIZE) -> bytes:
    return png(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def mask_png(size: int = SIZE) -> bytes:
    mask = np.zeros((size, size), np.uint8)
    mask[: size // 2] = 255
    return png(mask)


def soft_mask_png(size: int = SIZE) -> bytes:
    return png(np.linspace(0, 65535, size * size).reshape(size, size).astype(np.uint16))


def manifest(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": "emb-submission",
        "format_version": 1,
        "method": {"name": "my method", "description": "what it does", "paper_url": "https://example.org/paper"},
        "dataset": {"name": "synthetic", "checksum": CHECKSUM},
        "seed": 0,
        "resolution": 64,
        "self_reported": {"time_s_per_image": 1.5, "nfe_per_image": 50, "hardware": "2 CPU cores"},
    }
    base.update(changes)
    return base


def files(ids: Iterable[str] = ("s1", "s2"), **manifest_changes: Any) -> dict[str, bytes]:
    """A valid submission's files: entry name → bytes."""
    out = {"submission.json": json.dumps(manifest(**manifest_changes)).encode()}
    for i, sample_id in enumerate(ids):
        out[f"edited/{sample_id}.png"] = edited_png(i)
        out[f"masks/{sample_id}.png"] = mask_png()
        out[f"soft_masks/{sample_id}.png"] = soft_mask_png()
    return out


def write_folder(root: Path, entries: dict[str, bytes]) -> Path:
    for name, data in entries.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_zip(path: Path, entries: dict[str, bytes] | list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return path


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (to show a validation wrote nothing there)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- boards on the synthetic dataset (no method runs: submissions are made from the dataset's own images) ----------

BOARD_LIMIT = 3


def synthetic_checksum() -> str:
    from benchmark.datasets import build_dataset
    from benchmark.plugins import compose_config

    return build_dataset(compose_config(["dataset=synthetic"]).dataset).checksum()


def write_board(board_dir: Path, missing_samples: str = "fail", limit: int = BOARD_LIMIT, **changes: Any) -> Path:
    """A board on the first ``limit`` synthetic samples, ranked by PSNR against the correct edit."""
    import yaml

    config: dict[str, Any] = {
        "format_version": 1,
        "title": "Synthetic test board",
        "description": "the tests' board",
        "dataset": {"config": "synthetic", "overrides": {"limit": limit}, "checksum": synthetic_checksum()},
        "metrics": {"preset": "default"},
        "ranking": {"metric": "psnr_whole_vs_target", "direction": "higher"},
        "columns": ["iou", "psnr_background", "psnr_whole_vs_target", "ssim_whole"],
        "edit_type_columns": ["psnr_whole_vs_target"],
        "missing_samples": missing_samples,
        "grid_samples": 2,
    }
    config.update(changes)
    board_dir.mkdir(parents=True, exist_ok=True)
    (board_dir / "board.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return board_dir


def synthetic_samples(limit: int = BOARD_LIMIT) -> list:
    from benchmark.datasets import build_dataset, iter_selected
    from benchmark.plugins import compose_config

    cfg = compose_config(["dataset=synthetic", f"dataset.limit={limit}"]).dataset
    return [ref.load() for ref in iter_selected(build_dataset(cfg), cfg)]


def dataset_submission(
    path: Path,
    kind: str,
    name: str,
    description: str = "",
    limit: int = BOARD_LIMIT,
    skip: tuple[str, ...] = (),
) -> Path:
    """A zip made from the synthetic samples themselves: ``copy`` returns each source image with an empty mask (what
    the identity method does), ``correct`` the dataset's correct edit with the GT mask (a perfect method)."""
    entries = {}
    for sample in synthetic_samples(limit):
        if sample.id in skip:
            continue
        if kind == "copy":
            image, mask = sample.image, np.zeros_like(sample.mask)
        else:
            image, mask = sample.target_image, sample.mask
        entries[f"edited/{sample.id}.png"] = png(np.asarray(image.convert("RGB")))
        entries[f"masks/{sample.id}.png"] = png(mask.astype(np.uint8) * 255)
    body = manifest(method={"name": name, "description": description}, dataset={"name": "synthetic", "checksum": ""})
    body["dataset"]["checksum"] = synthetic_checksum()
    entries["submission.json"] = json.dumps(body).encode()
    return write_zip(path, entries)
