"""Feature networks of the metrics: one per-process cache, local weight files, one-line errors when they are missing.

Every network is keyed by (kind, name, weights, device, options): scoring several methods, batches or presets in
one process loads each network once. Weights are local files; ``None`` means "the file the library would download,
in its usual cache folder", which offline must already be there — otherwise ``MissingWeightsError`` names the file
and where it comes from.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.models import MissingWeightsError

log = logging.getLogger("emb")

_NETWORKS: dict[tuple, Any] = {}
_LOCK = threading.Lock()
_DIGESTS: dict[tuple[str, int, int], str] = {}


def cached_network(key: tuple, build: Callable[[], Any]) -> Any:
    """The network for ``key``, built on first use and kept for the life of the process."""
    with _LOCK:
        if key not in _NETWORKS:
            log.info("loading %s", " ".join(str(k) for k in key if k is not None))
            _NETWORKS[key] = build()
        return _NETWORKS[key]


def loaded_networks() -> list[tuple]:
    """Keys of the networks loaded so far (tests check that each loads once)."""
    return list(_NETWORKS)


def clear_networks() -> None:
    _NETWORKS.clear()


def torch_hub_checkpoint(filename: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps a downloaded file (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def hf_cached_file(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    """A file of a Hugging Face repo if it is already in the local hub cache (never downloads)."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def require_file(path: str | Path, field: str, source: str) -> Path:
    """The path if it is a file; otherwise one line naming the field, the file and where it comes from."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingWeightsError(f"{field}: weights file {p} not found; {source}")
    return p


def file_digest(path: Path) -> str:
    """sha256 of a weights file (memoised on path, size and mtime: hashing 100 MB takes a moment)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def module_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers (for cache keys of networks given as modules)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (a ``state_dict``/``model`` entry is unwrapped)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    return obj
