"""One way to build a run from a composed config: parts, zoo data module, model, trainer.

``scripts/train.py`` uses all of it; ``scripts/eval.py`` rebuilds the data module of a
checkpoint's run config with :func:`build_datamodule` (its model comes from the checkpoint through
:mod:`hyperpred.run.checkpoint`, as in the API). Sizes that depend on the data (the container,
the feature and parameter counts) are the ``???`` of ``conf/model/default.yaml`` and are filled in
here, once, when the model is instantiated; nothing is pushed into the module afterwards.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hyperpred.errors import ConfigError
from hyperpred.factory import Parts
from hyperpred.lit.datamodule import ZooDataModule
from hyperpred.lit.module import WeightPredictionModule
from hyperpred.run.fit import run_callbacks


def instantiate_list(node: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` child of a group node (callbacks, loggers), skipping nulls."""
    if not node:
        return []
    return [instantiate(child) for child in node.values() if child is not None and "_target_" in child]


def plain(node: Any) -> Any:
    """A config node as plain dicts and lists, interpolations resolved (None stays None)."""
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def build_datamodule(cfg: DictConfig, parts: Parts, stage: str) -> ZooDataModule:
    """The zoo data module of ``cfg``, its zoo built or loaded and its splits set up for ``stage``."""
    datamodule = ZooDataModule(
        parts.builder, parts.features, parts.unseen_archs, canonicalize=cfg.loss.get("canonicalize"), **cfg.data
    )
    datamodule.prepare_data()
    datamodule.setup(stage)
    return datamodule


def finetune_config(cfg: DictConfig) -> dict[str, Any]:
    """The ``finetune_steps_fraction`` metric's settings: the zoo's own recipe, then ``cfg.finetune``."""
    return {
        "lr": float(cfg.zoo.lr),
        "steps": int(cfg.zoo.steps),
        "batch_size": cfg.zoo.get("batch_size"),
        **(plain(cfg.get("finetune")) or {}),
    }


def build_model(cfg: DictConfig, datamodule: ZooDataModule) -> WeightPredictionModule:
    """``instantiate(cfg.model)`` with the sizes and statistics of the data module's zoo."""
    if cfg.get("model") is None:
        raise ConfigError("config group 'model' is missing: choose one, e.g. model=default")
    try:
        return instantiate(
            cfg.model,
            container=list(datamodule.zoo.container),
            in_dim=datamodule.in_dim,
            out_dim=datamodule.out_dim,
            finetune=finetune_config(cfg),
            run_config=plain(cfg),  # lets scripts/eval.py rebuild this run's zoo and splits from the checkpoint alone
            stats=datamodule.stats,
            test_split_names=datamodule.test_split_names,
        )
    except InstantiationException as e:  # the module's own one-line ConfigError, not Hydra's wrapper around it
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback]) -> tuple[pl.Trainer, list[Any]]:
    """The trainer of ``cfg.trainer`` with the loggers and callbacks of their groups (plus ``callbacks``)."""
    loggers = instantiate_list(cfg.get("logger"))
    callbacks = [*instantiate_list(cfg.get("callbacks")), *callbacks]
    # <monitor>_best (what a sweep optimizes) and the results that must come back from ddp_spawn's workers
    callbacks += run_callbacks(callbacks, cfg.get("optimized_metric"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return trainer, loggers
