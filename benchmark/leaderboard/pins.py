"""A board's pinned dataset and metric preset, resolved through the harness's own configs (conf/)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.leaderboard.board import BOARD_FILE, BoardConfig, BoardError
from benchmark.leaderboard.validate import ExpectedSample
from benchmark.types import EditSample, SampleError


@dataclass
class BoardDataset:
    """The board's dataset as built here: the loader, its resolved config and its checksum."""

    dataset: Any  # benchmark.datasets.EditDataset
    config: Any  # the resolved dataset config (DictConfig)
    checksum: str

    @property
    def name(self) -> str:
        return str(self.dataset.describe().get("name", self.config.get("name")))

    def samples(self) -> Iterator[EditSample]:
        """The selected samples (limit, shard), in the dataset's order; a sample that cannot be loaded is left out
        with one warning line (it would fail for every entry alike)."""
        import logging

        from benchmark.datasets import iter_selected

        for ref in iter_selected(self.dataset, self.config):
            try:
                yield ref.load()
            except SampleError as err:
                logging.getLogger("emb").warning("board dataset: sample %s left out: %s", ref.id, err)


def board_dataset(board: BoardConfig, board_dir: Path) -> BoardDataset:
    """Build the pinned dataset; ``BoardError`` when its config does not compose or its checksum is not the pinned
    one (the data under it changed)."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.datasets import build_dataset
    from benchmark.plugins import compose_config

    where = Path(board_dir) / BOARD_FILE
    try:
        cfg = compose_config([f"dataset={board.dataset.config}"]).dataset
        cfg = OmegaConf.merge(cfg, OmegaConf.create(dict(board.dataset.overrides)))
        OmegaConf.resolve(cfg)
        dataset = build_dataset(cfg)
        checksum = dataset.checksum()
    except (HydraException, OmegaConfBaseException, ValueError, OSError, KeyError) as err:
        raise BoardError(f"{where}: field 'dataset': {' '.join(str(err).split())[:300]}") from err
    if checksum != board.dataset.checksum:
        raise BoardError(
            f"{where}: field 'dataset.checksum': the dataset built here has checksum {checksum} (its data or "
            "config changed since the board was made)"
        )
    return BoardDataset(dataset, cfg, checksum)


def board_metrics(board: BoardConfig, board_dir: Path) -> Any:
    """The metric preset's resolved config (a DictConfig, as ``emb run``'s ``cfg.metrics``)."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from benchmark.plugins import compose_config

    where = Path(board_dir) / BOARD_FILE
    try:
        if board.metrics.file is not None:
            path = Path(board_dir) / board.metrics.file
            if not path.resolve().is_relative_to(Path(board_dir).resolve()):
                raise BoardError(f"{where}: field 'metrics.file': {board.metrics.file} is outside the board folder")
            cfg = OmegaConf.load(path)
        else:
            cfg = compose_config([f"metrics={board.metrics.preset}"]).metrics
        OmegaConf.resolve(cfg)
        return cfg
    except BoardError:
        raise
    except (HydraException, OmegaConfBaseException, OSError, ValueError) as err:
        raise BoardError(f"{where}: field 'metrics': {' '.join(str(err).split())[:300]}") from err


def metrics_hash(metrics_cfg: Any) -> str:
    """What pins a metric preset: a hash of its resolved config. An entry scored with another is not verified."""
    from omegaconf import OmegaConf

    from benchmark.store import stable_hash

    return stable_hash(OmegaConf.to_container(metrics_cfg, resolve=True))


def expected_sample(sample: EditSample) -> ExpectedSample:
    width, height = sample.size
    return ExpectedSample(sample.id, width, height, sample.edit_type)
