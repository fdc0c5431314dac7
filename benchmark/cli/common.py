"""What every ``emb`` command shares: config composition, the ``emb`` logger's handlers, the one-line error."""

from __future__ import annotations

import logging
import sys
from logging.handlers import BufferingHandler
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.plugins import compose_config
from benchmark.types import error_line

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger("emb")


def compose(overrides: list[str]) -> DictConfig:
    """The project's config with overrides, outside a Hydra run (for the non-run subcommands)."""
    return compose_config(overrides)


def one_line(err: BaseException) -> str:
    """An exception as the one line a command prints (every line of its text joined, Hydra's search path cut)."""
    return error_line(err, joined=True)


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr: how every command says what stopped it."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def emb_log_handlers(console: bool = False, hold: bool = False, log_file: Path | None = None) -> list:
    """Handlers on the ``emb`` logger for the non-run subcommands, removed with ``remove_log_handlers``.

    ``console``: warnings to stderr, one line each (unless someone else prints them: pytest); ``hold``: keep INFO
    and up in memory until the log file exists; ``log_file``: INFO and up there, like a run's log (e.g. "reusing
    cached FID statistics"), with what was held written first."""
    log.setLevel(logging.INFO)
    handlers: list[logging.Handler] = []
    root = logging.getLogger()
    if console and not [h for h in root.handlers if not isinstance(h, logging.NullHandler)]:
        # nobody else prints warnings (a plain shell, not pytest). The root's NullHandler stops a library's
        # root-level ``logging.info`` (open_clip's) from calling basicConfig(), whose stderr handler would
        # print every INFO line of ours a second time
        if not root.handlers:
            root.addHandler(logging.NullHandler())
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setLevel(logging.WARNING)
        handlers[-1].setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    if hold:
        handlers.append(BufferingHandler(capacity=100_000))
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
        handlers[-1].setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
        for held in [h for h in log.handlers if isinstance(h, BufferingHandler) and getattr(h, "emb_cli", False)]:
            for record in held.buffer:
                handlers[-1].handle(record)
            log.removeHandler(held)
            held.close()
    for h in handlers:
        h.emb_cli = True  # type: ignore[attr-defined]
        log.addHandler(h)
    return handlers


def remove_log_handlers(handlers: list) -> None:
    for h in handlers:
        log.removeHandler(h)
        h.close()
