"""Checks on a checkpoint named in a config, before any work is done with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hyperpred.errors import ConfigError


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint's dict; a missing, truncated or foreign file gets one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001 - every unreadable file gets the same clear message
        raise ConfigError(
            f"ckpt_path={path}: not a readable checkpoint (truncated or not a torch file: {type(e).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "family" not in (ckpt.get("hyper_parameters") or {}):
        raise ConfigError(f"ckpt_path={path}: not a hyperpred predictor checkpoint (no family in its hyper-parameters)")
    return ckpt


def check_resume_checkpoint(path: str | Path, family: dict[str, Any], task: dict[str, Any]) -> None:
    """A run resumes only from a checkpoint of the same target family and task."""
    hp = read_checkpoint(path)["hyper_parameters"]
    for key, wanted in (("family", family), ("task", task)):
        found = hp.get(key)
        if found != wanted:
            group = "target.family" if key == "family" else "task"
            raise ConfigError(
                f"ckpt_path={path}: the checkpoint was trained with {group} {_describe(found)}, this run has "
                f"{_describe(wanted)}; "
                "resume with the checkpoint's own config (its run folder has config_resolved.yaml)"
            )


def _describe(node: Any) -> str:
    if isinstance(node, dict):
        return ", ".join(f"{k}={v}" for k, v in node.items())
    return repr(node)
