"""The test evaluation of a run: per-target numbers of every baseline over the test batches, one summary per split.

The LightningModule's test hooks only hand batches to a :class:`Evaluator` and log what it
returns. Per split: the built-in baselines (:mod:`.baselines`) per batch, the fine-tuning metric
(:mod:`.finetune`) per split, the summary (:func:`hyperpred.metrics.summarize`), then the
configured peer baselines (:mod:`.peers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from hyperpred.evaluation.baselines import BUILTIN, Baseline, EvalBatch
from hyperpred.evaluation.finetune import FinetuneFraction
from hyperpred.evaluation.peers import run_peers
from hyperpred.metrics import summarize


def first_occurrences(index: Tensor) -> Tensor:
    """Positions of the first occurrence of each distinct value of ``index``, in order of position."""
    _, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(len(index), device=index.device)
    first = torch.full(
        (int(inverse.max()) + 1 if len(index) else 0,), len(index), dtype=torch.long, device=index.device
    )
    return first.scatter_reduce_(0, inverse, positions, reduce="amin").sort().values


def gather_once(per_target: dict[str, Tensor], gather: Callable[[Tensor], Tensor] | None) -> dict[str, Tensor]:
    """Every rank's rows (Lightning's ``all_gather``; None: one process), each target (``index``) counted once.

    Under DDP every rank tests the whole split (the data module shards only training), so the gathered
    rows hold each target once per rank; keeping the first occurrence of each index leaves one copy,
    and stays right should a loader ever shard or pad a test split.
    """
    if gather is not None:  # [world, rows, ...] -> [world * rows, ...]
        per_target = {k: gather(v).flatten(0, 1) for k, v in per_target.items()}
    keep = first_occurrences(per_target.pop("index"))
    return {k: v[keep] for k, v in per_target.items()}


class Evaluator:
    """Collects a run's test batches per split (``collect``) and summarizes each split (``finish``).

    ``module`` is the LightningModule: its prediction (``module(features, batch)``), ``query_loss``,
    ``family``, ``task`` and ``container``. ``finetune`` configures the ``finetune_steps_fraction``
    metric (:class:`~hyperpred.evaluation.finetune.FinetuneFraction`).
    """

    def __init__(
        self, split_names: Sequence[str], finetune: dict[str, Any] | None, baselines: Sequence[Baseline] = BUILTIN
    ) -> None:
        self.split_names = list(split_names)
        #: also summarize each distinct architecture of a split (``{split}/arch=<fields>/<metric>``)
        self.by_arch = False
        self.baselines = tuple(baselines)
        self.finetune = FinetuneFraction(finetune)
        self.outputs: dict[int, list[dict[str, Tensor]]] = {}
        self.metrics: dict[str, float] = {}

    def reset(self) -> None:
        self.outputs, self.finetune.inputs, self.metrics = {}, {}, {}

    def collect(self, module: Any, batch: dict[str, Tensor], idx: int) -> None:
        """Per-target numbers of every baseline on one test batch of split ``idx``."""
        pred = module(batch["features"], batch)
        tb = EvalBatch(
            batch,
            pred,
            lambda flat: module.query_loss(flat, batch),
            (lambda flat: query_accuracy(module, flat, batch)) if module.task.classification else None,
        )
        out: dict[str, Tensor] = {}
        for baseline in self.baselines:
            out.update(baseline.per_target(tb))
        out["index"] = batch["index"]
        if self.by_arch:
            out["archs"] = batch["archs"]
        self.outputs.setdefault(idx, []).append({k: v.detach() for k, v in out.items()})
        self.finetune.collect(idx, pred, batch)

    def finish(self, module: Any, gather: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        """``{split}/{metric}`` of every split collected; ``gather`` is Lightning's ``all_gather`` under DDP."""
        for idx, outputs in sorted(self.outputs.items()):
            per_target = {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
            # per rank, before gathering: each rank fine-tunes its own targets
            per_target.update(self.finetune.per_target(idx, module.family, module.task, module.container))
            per_target = gather_once(per_target, gather)
            split = self.split_names[idx]
            archs = per_target.pop("archs", None)
            summary = {f"{split}/{k}": v for k, v in summarize(per_target).items()}
            if archs is not None:
                summary.update(summarize_by_arch(split, per_target, archs))
            summary.update(run_peers(module, split))  # peer baselines (run_config.baselines), {} when none
            self.metrics.update(summary)
        return dict(self.metrics)


def query_accuracy(module: Any, flat: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """Per-target query accuracy ``[B]`` of flat parameters (classification tasks only)."""
    family, container = module.family, module.container
    logits = family.forward(family.unflatten(flat, container), batch["query_x"], batch["archs"])
    return module.task.accuracy(logits, batch["query_y"], family.output_mask(batch["archs"], container))


def summarize_by_arch(split: str, per_target: dict[str, Tensor], archs: Tensor) -> dict[str, float]:
    """The split's summary per distinct architecture, plus the medians of every query loss.

    Medians next to the means because a few poorly converged trained targets dominate a mean.
    """
    out: dict[str, float] = {}
    for arch in torch.unique(archs, dim=0):
        rows = (archs == arch).all(dim=1)
        part = {k: v[rows] for k, v in per_target.items()}
        name = f"{split}/arch={'-'.join(str(int(a)) for a in arch)}"
        out.update({f"{name}/{k}": v for k, v in summarize(part).items()})
        losses = {k: v for k, v in part.items() if k.endswith("_query_loss")}
        out.update({f"{name}/{k}_median": v.nanmedian().item() for k, v in losses.items()})
    return out
