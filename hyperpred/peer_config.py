"""Cheap checks of ``baselines.*`` and ``data.fresh_tasks``, run with the config schema before any work."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hyperpred.errors import ConfigError

KNOWN = ("maml", "cnp", "nearest", "memorization", "finetune_curve")
POSITIVE_INTS = {
    "maml": ("inner_steps", "meta_batch", "steps"),
    "cnp": ("width", "depth", "meta_batch", "steps"),
}
POSITIVE_NUMBERS = {"maml": ("inner_lr", "meta_lr"), "cnp": ("lr",)}


def _positive(v: Any, integer: bool) -> bool:
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    return ok and not isinstance(v, bool) and v > 0


def check_peer_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key for an unknown baseline, a bad budget, or fresh tasks with labels."""
    if OmegaConf.select(cfg, "data.fresh_tasks", default=False) and OmegaConf.select(cfg, "loss.weight", default=0):
        raise ConfigError("data.fresh_tasks=true has no weight labels: set loss.weight=0 (e.g. loss=functional)")
    node = cfg.get("baselines")
    if not node:
        return
    if not isinstance(node, DictConfig):
        raise ConfigError(f"baselines must be a list of config group choices, e.g. baselines=[maml,cnp], got {node!r}")
    for name in node:
        if name not in KNOWN:
            raise ConfigError(f"baselines.{name}: unknown baseline; choose from {list(KNOWN)}")
        for key in POSITIVE_INTS.get(name, ()):
            if key in node[name] and not _positive(node[name][key], True):
                raise ConfigError(f"baselines.{name}.{key}={node[name][key]!r} must be a positive integer")
        for key in POSITIVE_NUMBERS.get(name, ()):
            if key in node[name] and not _positive(node[name][key], False):
                raise ConfigError(f"baselines.{name}.{key}={node[name][key]!r} must be a number > 0")
    net = OmegaConf.select(cfg, "baselines.maml.net", default="family")
    if isinstance(net, ListConfig):
        if len(net) < 2 or not all(_positive(w, True) for w in net):
            raise ConfigError(f"baselines.maml.net={list(net)!r} must be widths like [1, 40, 40, 1]")
    elif net != "family":
        raise ConfigError(f"baselines.maml.net={net!r} must be 'family' or widths like [1, 40, 40, 1]")
    steps = OmegaConf.select(cfg, "baselines.finetune_curve.steps", default=None)
    if steps is not None and (
        not isinstance(steps, ListConfig) or not all(isinstance(s, int) and s >= 0 for s in steps)
    ):
        raise ConfigError(f"baselines.finetune_curve.steps must be a list of integers >= 0, got {steps!r}")
