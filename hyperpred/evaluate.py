"""``evaluate(cfg)``: score a checkpoint on a split of its run's zoo, like the end of a training run.

The checkpoint stores the run's resolved config (``run_config``), so the zoo, its task-group
split and the features are rebuilt exactly; the zoo comes from the content-addressed cache (or
is rebuilt, bit for bit). Besides the training run's metrics it measures what a user pays for
each answer: one forward pass of the predictor (features included) against training every
target with the zoo's own recipe, for the whole split at once and for a single task.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from hyperpred.api import TrainedPredictor, load_predictor
from hyperpred.errors import ConfigError
from hyperpred.factory import build_parts
from hyperpred.lit.datamodule import TensorDictDataset
from hyperpred.metrics import best_seconds
from hyperpred.run.build import build_datamodule
from hyperpred.run.provenance import write_run_info
from hyperpred.run.results import print_metrics_table, write_metrics
from hyperpred.run.threads import resolve_num_threads
from hyperpred.zoo.spec import TrainRecipe
from hyperpred.zoo.training import train_targets

log = logging.getLogger(__name__)


def run_config_of(predictor: TrainedPredictor, cfg: DictConfig) -> DictConfig:
    """The training run's config from the checkpoint, with this process's paths."""
    stored = predictor.module.hparams.get("run_config")
    if not stored:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: the checkpoint has no run_config (written by an older hyperpred); retrain, "
            "or evaluate with scripts/train.py"
        )
    run_cfg = OmegaConf.create(stored)
    with open_dict(run_cfg):
        run_cfg.paths = OmegaConf.to_container(cfg.paths, resolve=True)
        run_cfg.zoo.progress = bool(cfg.get("progress", False))
    return run_cfg


def time_predict_vs_train(
    predictor: TrainedPredictor, split: dict[str, Tensor], recipe: TrainRecipe, strategy: str = "auto", seed: int = 0
) -> dict[str, float]:
    """Seconds to get every target of ``split`` by one predictor pass vs by the zoo's training recipe.

    Both are batched over the split's tasks exactly as the zoo and the predictor run them; the
    ``one_`` numbers are the same for the split's first task alone (what a user waits for).
    """
    fam, task, container = predictor.family, predictor.task, predictor.container

    def predict(rows: slice) -> Tensor:
        d = split["descriptor"][rows] if predictor.oracle_features else None
        return predictor.predict_flat(split["archs"][rows], split["support_x"][rows], split["support_y"][rows], d)

    def train(rows: slice) -> Any:
        init = fam.unflatten(split["init"][rows], container)
        g = torch.Generator().manual_seed(seed)
        return train_targets(
            fam,
            task,
            split["archs"][rows],
            container,
            init,
            split["support_x"][rows],
            split["support_y"][rows],
            recipe,
            g,
            strategy=strategy,
        )

    everything, first = slice(None), slice(0, 1)
    out = {
        "predict_seconds": best_seconds(lambda: predict(everything), 3),
        "train_seconds": best_seconds(lambda: train(everything)),
        "predict_one_seconds": best_seconds(lambda: predict(first), 5),
        "train_one_seconds": best_seconds(lambda: train(first), 3),
        "train_steps": float(recipe.steps),
    }
    out["speedup"] = out["train_seconds"] / max(out["predict_seconds"], 1e-12)
    out["one_speedup"] = out["train_one_seconds"] / max(out["predict_one_seconds"], 1e-12)
    return out


def _loader(split: dict[str, Tensor], batch_size: int) -> DataLoader:
    dataset = TensorDictDataset(split)
    return DataLoader(
        dataset, sampler=BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False), batch_size=None
    )


def held_out_groups(task: Any, split: dict[str, Tensor], limit: int = 12) -> str | None:
    """The split's task groups, each shown by the descriptor of its first task (e.g. a pair of digits)."""
    groups = task.split_groups(split["descriptor"])
    if groups is None:
        return None
    uniq, inverse = torch.unique(groups, return_inverse=True)
    if len(uniq) > limit or split["descriptor"].shape[1] > 10:
        return f"{len(uniq)} task groups"
    first = torch.full((len(uniq),), len(groups)).scatter_reduce(0, inverse, torch.arange(len(groups)), "amin")
    reps = sorted(tuple(row) for row in split["descriptor"][first].tolist())
    return f"{len(uniq)} task groups (descriptor of one task each): " + ", ".join(
        "(" + ", ".join(f"{v:g}" for v in r) + ")" for r in reps
    )


def print_accuracy_and_timing(metrics: dict[str, float], splits: list[str]) -> None:
    """One line per split: accuracies (classification) and prediction vs training time."""
    for split in splits:
        m = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{split}/")}
        parts = []
        if "pred_accuracy" in m:
            parts.append(
                f"accuracy pred {m['pred_accuracy']:.4f} | trained {m['trained_accuracy']:.4f} | zoo-mean "
                f"{m['zoo_mean_accuracy']:.4f} "
                f"| init {m['init_accuracy']:.4f} | ratio pred/trained {m['accuracy_ratio']:.4f}"
            )
        if "predict_seconds" in m:
            parts.append(
                f"time for {int(m['num_tasks'])} tasks: predict {m['predict_seconds']:.4f}s, train "
                f"({int(m['train_steps'])} Adam steps) "
                f"{m['train_seconds']:.3f}s ({m['speedup']:.0f}x); one task: predict "
                f"{m['predict_one_seconds'] * 1e3:.2f} ms, "
                f"train {m['train_one_seconds'] * 1e3:.1f} ms ({m['one_speedup']:.0f}x)"
            )
        for line in parts:
            print(f"[{split}] {line}")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Load ``cfg.ckpt_path``, rebuild its zoo and split, and write ``metrics.json`` for ``cfg.split``."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is required: scripts/eval.py ckpt_path=<run>/checkpoints/best.ckpt")
    predictor = load_predictor(cfg.ckpt_path)
    run_cfg = run_config_of(predictor, cfg)
    if threads := resolve_num_threads(cfg):
        torch.set_num_threads(threads)
    parts = build_parts(run_cfg, from_file=True)  # the run config was read from the checkpoint
    datamodule = build_datamodule(run_cfg, parts, "test")
    wanted = list(datamodule.splits) if cfg.split == "all" else [cfg.split]
    missing = [s for s in wanted if s not in datamodule.splits]
    if missing:
        raise ConfigError(f"split={cfg.split}: this run's zoo has the splits {sorted(datamodule.splits)} (or 'all')")
    output_dir = Path(cfg.paths.output_dir)
    write_run_info(
        output_dir,
        cfg,
        {"checkpoint": str(cfg.ckpt_path), "zoo": {"key": datamodule.zoo.key, "folder": str(datamodule.zoo.folder)}},
    )

    module = predictor.module
    module.test_split_names = wanted
    module.evaluator.by_arch = bool(cfg.get("by_arch", False))
    batch_size = int(cfg.get("batch_size") or run_cfg.data.batch_size)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    trainer.test(module, dataloaders=[_loader(datamodule.splits[s], batch_size) for s in wanted], verbose=False)
    metrics = dict(module.test_metrics)
    if cfg.get("timing", True):
        recipe = TrainRecipe(
            steps=run_cfg.zoo.steps, lr=float(run_cfg.zoo.lr), batch_size=run_cfg.zoo.get("batch_size")
        )
        for s in wanted:
            timing = time_predict_vs_train(
                predictor, datamodule.splits[s], recipe, str(run_cfg.zoo.get("strategy", "auto"))
            )
            metrics.update({f"{s}/{k}": v for k, v in timing.items()})
    path = write_metrics(output_dir, metrics)
    print_metrics_table(metrics, wanted)
    for s in wanted:
        if groups := held_out_groups(predictor.task, datamodule.splits[s]):
            print(f"[{s}] {int(metrics[f'{s}/num_tasks'])} tasks in {groups}")
    print_accuracy_and_timing(metrics, wanted)
    log.info("Metrics written to %s", path)
    return metrics
