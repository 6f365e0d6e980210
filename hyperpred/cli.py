"""Shared behaviour of the Hydra entry points: one-line errors instead of tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

from hyperpred.errors import HyperpredError

T = TypeVar("T")
log = logging.getLogger("hyperpred")


def run_entry(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run ``fn(cfg)``; a :class:`HyperpredError` ends the process with its message alone."""
    try:
        return fn(cfg)
    except HyperpredError as e:
        log.error("%s", e)
        raise SystemExit(f"error: {e}") from None


