"""``train(cfg)``: one complete weight-prediction experiment, from zoo to metrics.json."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from hyperpred.errors import ConfigError
from hyperpred.evaluate import print_accuracy_and_timing
from hyperpred.extras import check_before_run
from hyperpred.factory import build_parts
from hyperpred.lit.datamodule import ZooDataModule
from hyperpred.plots import prediction_grids, weight_histograms
from hyperpred.run.build import build_datamodule, build_model, build_trainer, plain
from hyperpred.run.checkpoint import check_resume_checkpoint, read_identity
from hyperpred.run.fit import run_fit, run_test
from hyperpred.run.launch import check_process_launch
from hyperpred.run.provenance import RunIdentity, update_run_info, write_run_info, zoo_content_hash
from hyperpred.run.results import print_metrics_table, write_metrics
from hyperpred.run.threads import resolve_num_threads
from hyperpred.utils.media import PLOTS_DIR, log_images, run_images
from hyperpred.utils.wandb_run import finish_wandb, prepare_wandb_config, record_provenance

log = logging.getLogger(__name__)


class _DropAdvertisement(logging.Filter):
    """Lightning 2.6 logs a tip to install its cloud logger at every Trainer start: noise in every run log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropAdvertisement())


def train(cfg: DictConfig) -> dict[str, float]:
    """Build or load the zoo, train the predictor, evaluate it against baselines on held-out tasks."""
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")
    parts = build_parts(cfg)  # validates everything cheap; nothing trained yet
    check_before_run(cfg)  # WANDB_MODE, loggers' packages, callback needs: also when train() is called from Python
    if cfg.get("ckpt_path"):  # a truncated file or another family's checkpoint fails here, in one line
        check_resume_checkpoint(cfg.ckpt_path, family=plain(cfg.target.family), task=plain(cfg.task))
    identity = read_identity(cfg.ckpt_path) if cfg.get("ckpt_path") else {}
    if threads := resolve_num_threads(cfg):
        torch.set_num_threads(threads)
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = build_datamodule(cfg, parts, "fit")
    module = build_model(cfg, datamodule)

    zoo_info = describe_zoo(datamodule)
    info = write_run_info(
        output_dir,
        cfg,
        {
            "zoo": zoo_info,
            "feature_dims": parts.features.dims,
            "seed": cfg.seed,
            "tags": list(cfg.get("tags") or []),
            "resumed_from": cfg.get("ckpt_path"),
        },
    )

    prepare_wandb_config(cfg, identity.get("wandb_id"))  # sweep group, and the same wandb run when resuming
    identity_callback = RunIdentity(
        {"git_commit": info["git_commit"], "zoo_key": zoo_info["key"], "zoo_hash": zoo_info["content_hash"]}
    )
    trainer, loggers = build_trainer(cfg, [identity_callback])
    check_process_launch(trainer)
    exit_code = 1
    try:
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if wandb_info := record_provenance(loggers, info):
            update_run_info(output_dir, wandb=wandb_info)
        # train/, val/, fit/ values; Lightning reads checkpoints as data (weights_only), as our reader does
        metrics = run_fit(trainer, module, datamodule, cfg.get("ckpt_path"))
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        metrics.update(run_test(trainer, module, datamodule, best or None))
        metrics["zoo/seconds"] = zoo_info["seconds"]
        metrics["zoo/targets_trained"] = float(zoo_info["targets_trained"])
        if trainer.is_global_zero:
            write_outputs(output_dir, metrics, trainer, module, datamodule, loggers)
        exit_code = 0
    finally:
        finish_wandb(exit_code)
    return metrics


def describe_zoo(datamodule: ZooDataModule) -> dict[str, Any]:
    """The zoo's identity and build cost, as run.json and metrics.json record them."""
    zoo, stats = datamodule.zoo, datamodule.build_stats
    return {
        "key": zoo.key,
        "content_hash": zoo_content_hash(zoo.manifest),
        "folder": str(zoo.folder),
        "num_targets": len(zoo),
        "loaded_from_cache": stats.loaded_from_cache,
        "targets_trained": stats.targets_trained,
        "seconds": round(stats.seconds, 3),
        "num_diverged": zoo.manifest.get("num_diverged", 0),
    }


def write_outputs(
    output_dir: Path,
    metrics: dict[str, float],
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: ZooDataModule,
    loggers: list[Any],
) -> None:
    """metrics.json, the printed tables and (except under fast_dev_run) the plots: rank zero only."""
    path = write_metrics(output_dir, metrics)
    print_metrics_table(metrics, datamodule.test_split_names)
    print_accuracy_and_timing(metrics, datamodule.test_split_names)
    log.info("Metrics written to %s", path)
    if trainer.fast_dev_run:
        return
    weight_histograms(module, datamodule.splits.get("test"), output_dir / PLOTS_DIR / "weight_histograms.png")
    prediction_grids(module, datamodule.splits, output_dir / PLOTS_DIR)
    log_images(loggers, run_images(output_dir), output_dir)
