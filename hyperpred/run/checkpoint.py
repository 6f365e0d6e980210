"""The one checkpoint reader: resume, ``scripts/eval.py`` and the API all load through it.

A checkpoint is a file people share, so reading it must never run code. It is loaded with
``torch.load(weights_only=True)`` and an empty allow-list: hyperpred stores only tensors and plain
containers (the hyper-parameters are plain dicts, the run identity a dict of strings), so a file
holding any other Python object is refused before a single one is built. The family, task,
features and predictor named in its hyper-parameters are then checked against
:mod:`hyperpred.registry` and built only through it, never by importing a ``_target_`` it names.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hyperpred.errors import ConfigError
from hyperpred.lit.module import WeightPredictionModule
from hyperpred.registry import UntrustedTargetError, check_trusted

#: Top-level key of a checkpoint that carries the run's identity (wandb id, git commit, zoo hash).
CKPT_KEY = "hyperpred_run"

#: Hyper-parameters (and keys of the stored ``run_config``) whose ``_target_`` is built, with their registry kind.
_BUILT = (("family", "family"), ("task", "task"), ("predictor", "predictor"))
_RUN_CONFIG_BUILT = (("target.family", "family"), ("task", "task"), ("predictor", "predictor"))


class UntrustedCheckpointError(UntrustedTargetError):
    """The checkpoint holds Python objects that only unpickling code could build."""


def _unsupported_global(error: Exception) -> str:
    """The first global the weights-only unpickler refused (``GLOBAL posix.system``), for the message."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    return f"it names {found.group(1)}" if found else str(error).splitlines()[0][:120]


def load_file(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint's dict, read with ``weights_only=True``; any problem is one line naming ``key`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise UntrustedCheckpointError(
            f"{key}={path}: refused, it holds Python objects other than tensors and plain data "
            f"({_unsupported_global(e)}); hyperpred never writes such a file and loads none (nothing in it was run)"
        ) from None
    except Exception as e:  # noqa: BLE001 - every unreadable file gets the same clear message
        raise ConfigError(
            f"{key}={path}: not a readable checkpoint (truncated or not a torch file: {type(e).__name__})"
        ) from None
    return ckpt


def _at(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def check_hyper_parameters(hp: Mapping[str, Any], where: str) -> None:
    """Every ``_target_`` this package will build from ``hp`` names a registered class of its kind."""
    for name, kind in _BUILT:
        check_trusted(hp.get(name), kind, f"{where}: hyper_parameters.{name}")
    run_config = hp.get("run_config") or {}
    for dotted, kind in _RUN_CONFIG_BUILT:
        check_trusted(_at(run_config, dotted), kind, f"{where}: hyper_parameters.run_config.{dotted}")
    for key, features in (("features", hp.get("features")), ("run_config.features", _at(run_config, "features"))):
        if not isinstance(features, Mapping | None):
            raise UntrustedTargetError(f"{where}: hyper_parameters.{key} must be a mapping of feature configs")
        for name, node in (features or {}).items():
            check_trusted(node, "feature", f"{where}: hyper_parameters.{key}.{name}")


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """A hyperpred predictor checkpoint, safely loaded and with every class it names registered."""
    ckpt = load_file(path, key)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "family" not in hp or "state_dict" not in ckpt:
        raise ConfigError(f"{key}={path}: not a hyperpred predictor checkpoint (no family in its hyper-parameters)")
    check_hyper_parameters(hp, f"{key}={path}")
    return ckpt


def read_identity(path: str | Path) -> dict[str, Any]:
    """The run identity a checkpoint carries (wandb id, git commit, zoo hash); {} for one written without it."""
    identity = read_checkpoint(path).get(CKPT_KEY)
    return dict(identity) if isinstance(identity, Mapping) else {}


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


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> WeightPredictionModule:
    """The trained ``WeightPredictionModule`` of a checkpoint, rebuilt through the registry only."""
    ckpt = read_checkpoint(path)
    try:
        module = WeightPredictionModule(**ckpt["hyper_parameters"], from_file=True)
    except TypeError as e:  # hyper-parameters this hyperpred does not know
        raise ConfigError(f"ckpt_path={path}: its hyper-parameters do not fit this hyperpred ({e})") from None
    module.load_state_dict(ckpt["state_dict"])
    return module.to(map_location)
