"""FID and KID of the edited images against the dataset's real images, with cached real statistics.

Features: torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's InceptionV3 port of the TF FID graph,
``pt_inception-2015-12-05``), pool features (``feature: 2048``; 64/192/768 also work). Images enter as uint8: each
is first brought to ``resolution`` (null = as stored) with ``resample`` (PIL), then the extractor resizes to 299×299
with ``inception_resize``: ``tf1_bilinear`` (torch-fidelity / TF FID, the rule published FIDs use; default) or
``antialias_bilinear`` (torchmetrics' default since 1.x; gives different numbers). Edited images are read back
from their PNG artifacts; real images are the dataset's files as loaded (``real: source`` images, or the dataset's
reference edits with ``real: target``), so a JPEG dataset is compared with PNG outputs — as in every published FID.

FID and KID maths are torchmetrics' (``FrechetInceptionDistance`` / ``KernelInceptionDistance`` fed precomputed
features through a pass-through module, so each image goes through Inception once for both). FID is biased at small
sample counts: the summary's ``n`` says how many images made it. KID uses ``kid_subset_size`` clamped to the
sample count, ``kid_subsets`` draws and a fixed ``seed``.

Real statistics are cached as features in ``<run.cache_dir>/fid_stats/<key>.npz``, keyed by the dataset checksum
and sample selection (limit, shard), which real images, the size rule and the feature extractor (name, feature
layer, resize rule, sha256 of the weights file); a second run on the same dataset reads them back ("reusing cached
FID statistics ..." in the log).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmark.metrics.base import Metric, ScoreContext, ScoreItem
from benchmark.metrics.images import check_resample, resized
from benchmark.metrics.networks import (
    cached_network,
    file_digest,
    module_digest,
    require_file,
    torch_hub_checkpoint,
)
from benchmark.models import MissingWeightsError
from benchmark.registry import METRICS
from benchmark.store import stable_hash

log = logging.getLogger("emb")

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_RESIZE = ("tf1_bilinear", "antialias_bilinear")


def inception_path(weights: str | None) -> Path:
    return Path(weights).expanduser() if weights else torch_hub_checkpoint(INCEPTION_URL.rsplit("/", 1)[-1])


def load_inception(weights: str | None, feature: int, resize: str, device: torch.device) -> torch.nn.Module:
    path = inception_path(weights)

    def build() -> torch.nn.Module:
        from torchmetrics.image.fid import NoTrainInceptionV3

        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(feature)],
            feature_extractor_weights_path=str(path),
            antialias=resize == "antialias_bilinear",
        )
        return net.eval().requires_grad_(False).to(device)

    return cached_network(("inception", str(feature), resize, str(path), str(device)), build)


class Precomputed(torch.nn.Module):
    """Pass-through 'feature extractor': torchmetrics' FID/KID are fed features computed once per image."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def to_uint8(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


@METRICS.register("fid")
class FID(Metric):
    name = "fid"
    higher_is_better = {"fid": False, "kid_mean": False, "kid_std": False}
    needs_image = True
    supported_regions = ("whole",)

    def __init__(
        self,
        region: str | list[str] = "whole",
        feature: int = 2048,
        weights: str | None = None,
        inception_resize: str = "tf1_bilinear",
        resolution: int | None = None,
        resample: str = "bicubic",
        real: str = "source",
        kid: bool = True,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        kid_degree: int = 3,
        kid_gamma: float | None = None,
        kid_coef: float = 1.0,
        seed: int = 0,
        cache: bool = True,
        batch_size: int = 32,
        prefix: str = "",
        feature_network: str | None = None,
        feature_network_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            region,
            feature_network=feature_network,
            feature_network_args=feature_network_args,
            feature=feature,
            weights=weights,
            inception_resize=inception_resize,
            resolution=resolution,
            resample=resample,
            real=real,
            kid=kid,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            kid_degree=kid_degree,
            kid_gamma=kid_gamma,
            kid_coef=kid_coef,
            seed=seed,
            cache=cache,
            batch_size=batch_size,
            prefix=prefix,
        )
        # another feature network than Inception, by factory ("package.module:callable" returning a module that
        # takes uint8 images (N, 3, H, W) and has `num_features`), e.g. a feature network trained for a toy world
        self.feature_network, self.feature_network_args = feature_network, dict(feature_network_args or {})
        if feature_network is None and int(feature) not in (64, 192, 768, 2048):
            raise ValueError(f"metric 'fid': feature={feature}; use 64, 192, 768 or 2048")
        if inception_resize not in INCEPTION_RESIZE:
            raise ValueError(
                f"metric 'fid': inception_resize='{inception_resize}'; use {' or '.join(INCEPTION_RESIZE)}"
            )
        if real not in ("source", "target"):
            raise ValueError(f"metric 'fid': real='{real}'; use source or target")
        self.feature, self.weights, self.inception_resize = int(feature), weights, inception_resize
        self.resolution, self.resample = resolution, check_resample(resample, "fid")
        self.real, self.use_kid, self.seed, self.use_cache = real, bool(kid), int(seed), bool(cache)
        self.kid_params = dict(
            subsets=int(kid_subsets),
            subset_size=int(kid_subset_size),
            degree=int(kid_degree),
            gamma=None if kid_gamma is None else float(kid_gamma),
            coef=float(kid_coef),
        )
        self.batch_size, self.prefix = max(1, int(batch_size)), prefix
        self.net: torch.nn.Module | None = None
        self.fid: Any = None
        self.kid: Any = None
        self.real_count = 0
        self.real_from_batches = False
        self.stats_path: Path | None = None

    def directions(self) -> dict[str, bool]:
        names = ["fid"] + (["kid_mean", "kid_std"] if self.use_kid else [])
        return {f"{self.prefix}{n}": False for n in names}

    def _custom_network(self) -> torch.nn.Module:
        import importlib

        module_name, _, attr = str(self.feature_network).partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(
                f"metric 'fid': feature_network='{self.feature_network}': cannot import it ({err}); "
                f"use 'package.module:callable'"
            ) from err
        net = factory(**self.feature_network_args)
        self.feature = int(net.num_features)
        return net

    def weights_problem(self) -> str | None:
        if self.network is None and self.feature_network:
            try:
                self.network = self._custom_network()
            except (MissingWeightsError, FileNotFoundError) as err:
                return str(err)
        if self.network is not None:
            return None
        try:
            require_file(
                inception_path(self.weights),
                "metric fid: weights",
                f"it is torch-fidelity's InceptionV3 (pt_inception-2015-12-05, {INCEPTION_URL}): download it there "
                f"or set weights=PATH",
            )
        except MissingWeightsError as err:
            return str(err)
        return None

    def extractor_id(self) -> dict[str, Any]:
        return {
            "name": self.feature_network or "inception-v3-compat",
            "feature": self.feature,
            "inception_resize": self.inception_resize,
            "weights_sha256": module_digest(self.network)
            if self.network is not None
            else file_digest(inception_path(self.weights)),
        }

    # --- features ----------------------------------------------------------------------------------------------
    def features(self, images: list[Image.Image]) -> torch.Tensor:
        """Inception features of PIL images (uint8), batched by size, in input order."""
        tensors = []
        for im in images:
            if self.resolution:
                im = resized(im, (int(self.resolution), int(self.resolution)), self.resample)
            tensors.append(to_uint8(im))
        out = torch.zeros(len(tensors), self.feature, dtype=torch.float32)
        by_shape: dict[tuple, list[int]] = {}
        for i, t in enumerate(tensors):
            by_shape.setdefault(tuple(t.shape), []).append(i)
        with torch.no_grad():
            for idx in by_shape.values():
                for s in range(0, len(idx), self.batch_size):
                    part = idx[s : s + self.batch_size]
                    batch = torch.stack([tensors[i] for i in part]).to(self.device)
                    out[part] = self.net(batch).float().cpu()
        return out

    def _new_states(self) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        self.fid = FrechetInceptionDistance(feature=Precomputed(self.feature), reset_real_features=False)
        if self.use_kid:
            with warnings.catch_warnings():  # "KID will save all extracted features in buffer": that is the point
                warnings.simplefilter("ignore")
                self.kid = KernelInceptionDistance(
                    feature=Precomputed(self.feature), reset_real_features=False, **self.kid_params
                )

    def _add_real(self, feats: torch.Tensor) -> None:
        if len(feats):
            self.fid.update(feats, real=True)
            if self.kid is not None:
                self.kid.update(feats.double(), real=True)
            self.real_count += len(feats)

    # --- life cycle --------------------------------------------------------------------------------------------
    def prepare(self, ctx: ScoreContext) -> None:
        super().prepare(ctx)
        if self.network is not None:
            self.network = self.network.to(self.device).eval()
            self.feature = int(getattr(self.network, "num_features", self.feature))
        self.net = self.network or load_inception(self.weights, self.feature, self.inception_resize, self.device)
        self._new_states()
        self.real_count = 0
        if ctx.samples is None:
            # no dataset to read (direct use): the batches' own real images are the real set
            self.real_from_batches = True
            return
        self._add_real(self.real_features(ctx))

    def real_features(self, ctx: ScoreContext) -> torch.Tensor:
        key = stable_hash(
            {
                "dataset": ctx.dataset_key,
                "real": self.real,
                "resolution": self.resolution,
                "resample": self.resample if self.resolution else None,
                "extractor": self.extractor_id(),
            }
        )
        path = Path(ctx.cache_dir) / "fid_stats" / f"{key}.npz" if ctx.cache_dir and self.use_cache else None
        self.stats_path = path
        if path is not None and path.exists():
            try:
                with np.load(path) as z:
                    feats = torch.from_numpy(z["features"])
                log.info("reusing cached FID statistics %s (%d real images)", path, len(feats))
                print(f"fid: reusing cached FID statistics {path} ({len(feats)} real images)", flush=True)
                return feats
            except (OSError, ValueError, KeyError) as err:  # a torn file: rebuild it
                log.warning("fid: cached statistics %s unreadable (%s); recomputing", path, err)
        ids, chunks, images = [], [], []
        for sample in ctx.samples():
            image = sample.image if self.real == "source" else sample.target_image
            if image is None:
                continue
            ids.append(sample.id)
            images.append(image)
            if len(images) >= self.batch_size:
                chunks.append(self.features(images))
                images = []
        if images:
            chunks.append(self.features(images))
        feats = torch.cat(chunks) if chunks else torch.zeros(0, self.feature)
        msg = f"fid: computed FID statistics of {len(feats)} real images"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
            np.savez(
                tmp,
                features=feats.numpy(),
                ids=np.array(ids),
                meta=np.array(json.dumps({"dataset": ctx.dataset_key, "extractor": self.extractor_id()})),
            )
            os.replace(tmp, path)
            msg += f" → cached in {path}"
        log.info("%s", msg)
        print(msg, flush=True)
        return feats

    def update(self, items: list[ScoreItem]) -> list[dict[str, float]]:
        fake = [it.output.image for it in items if it.output.image is not None]
        if fake:
            feats = self.features(fake)
            self.fid.update(feats, real=False)
            if self.kid is not None:
                self.kid.update(feats.double(), real=False)
        if self.real_from_batches:
            real = [it.sample.image if self.real == "source" else it.sample.target_image for it in items]
            self._add_real(self.features([im for im in real if im is not None]))
        return [{} for _ in items]

    def compute(self) -> dict[str, float]:
        nan = math.nan
        n_fake = int(self.fid.fake_features_num_samples) if self.fid is not None else 0
        out = {f"{self.prefix}fid": nan}
        if self.use_kid:
            out.update({f"{self.prefix}kid_mean": nan, f"{self.prefix}kid_std": nan})
        if n_fake < 2 or self.real_count < 2:
            if n_fake:
                log.warning("fid: %d edited and %d real images: at least 2 of each are needed", n_fake, self.real_count)
            return out
        out[f"{self.prefix}fid"] = float(self.fid.compute())
        if self.kid is not None:
            self.kid.subset_size = min(self.kid_params["subset_size"], n_fake, self.real_count)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                kid_mean, kid_std = self.kid.compute()
            out[f"{self.prefix}kid_mean"], out[f"{self.prefix}kid_std"] = float(kid_mean), float(kid_std)
        return out

    def fork(self) -> FID:
        """The same real statistics, empty edited-image features: each fork has torchmetrics states of its own
        (``clone``: a copy of the real statistics per method, reset's empty fake ones)."""
        twin = copy.copy(self)
        if self.fid is None:  # not prepared: nothing to share
            return twin
        if self.real_from_batches:  # the real set is each method's batches' own
            twin._new_states()
            twin.real_count = 0
            return twin
        twin.fid = self.fid.clone()
        twin.fid.reset()  # real statistics are kept (reset_real_features=False)
        if self.kid is not None:
            twin.kid = self.kid.clone()
            twin.kid.reset()
        return twin

    def reset(self) -> None:
        if self.fid is not None:
            self.fid.reset()  # real statistics are kept (reset_real_features=False)
        if self.kid is not None:
            self.kid.reset()
        if self.real_from_batches and self.fid is not None:
            self._new_states()
            self.real_count = 0
