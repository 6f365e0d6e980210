"""Figures that show predictions working as functions: a grid of held-out 1-D regression tasks.

Each panel is one task: its true function (dense), the support points the predictor saw, the
trained target of the zoo and the predicted target, with both query losses in the title. Files
land in the run's ``plots/`` folder; the run then sends every PNG there to wandb/TensorBoard.
Only 1-input, 1-output regression families are drawn (the sine MLP); others are skipped.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

#: Splits drawn, each to ``<folder>/<split>_tasks.png``.
SPLITS = ("test", "test_unseen_arch")


def is_plottable(module: Any) -> bool:
    """True for scalar-in, scalar-out regression targets."""
    c, fam = module.container, module.family
    return (
        fam.input_shape(c) == (1,) and fam.output_shape(c) == (1,) and not getattr(module.task, "classification", False)
    )


def pick_rows(split: dict[str, Tensor], count: int) -> Tensor:
    """``count`` rows spread over architectures and over the range of the first descriptor value."""
    archs = split["archs"]
    unique = torch.unique(archs, dim=0)
    per_arch = max(1, count // len(unique))
    rows = []
    for arch in unique:
        idx = torch.nonzero((archs == arch).all(1)).squeeze(1)
        idx = idx[torch.argsort(split["descriptor"][idx, 0])] if split["descriptor"].numel() else idx
        take = torch.linspace(0, len(idx) - 1, min(per_arch, len(idx))).round().long()
        rows.append(idx[take])
    return torch.cat(rows)[:count]


def true_function(task: Any, descriptor: Tensor, x: Tensor) -> Tensor | None:
    """``[B, n]`` values of each task's true function at ``x [n]``, for tasks whose descriptor defines it."""
    from hyperpred.tasks.sine import SineTask

    if isinstance(task, SineTask):
        return descriptor[:, :1] * torch.sin(x.unsqueeze(0) + descriptor[:, 1:2])
    return None


@torch.no_grad()
def prediction_grid(
    module: Any, split: dict[str, Tensor], path: Path, title: str, count: int = 12, cols: int = 4
) -> Path | None:
    """Draw ``count`` tasks of ``split`` (see module doc) to ``path``; None when there is nothing to draw."""
    from matplotlib.figure import Figure

    if split is None or len(split["archs"]) == 0:
        return None
    rows = pick_rows(split, count)
    batch = {k: v[rows].to(module.device) for k, v in split.items()}
    was_training = module.training
    module.eval()
    try:
        pred = module.predict(batch)
        pred_loss = module.query_loss(pred, batch).cpu()
    finally:
        module.train(was_training)
    batch = {k: v.cpu() for k, v in batch.items()}
    family, container = module.family, module.container
    xs = torch.cat([batch["support_x"], batch["query_x"]], dim=1).flatten()
    grid = torch.linspace(float(xs.min()), float(xs.max()), 400)
    xg = grid.view(1, -1, 1).expand(len(rows), -1, -1)
    y_pred = family.forward(family.unflatten(pred.cpu(), container), xg, batch["archs"]).squeeze(-1)
    y_trained = family.forward(family.unflatten(batch["params"], container), xg, batch["archs"]).squeeze(-1)
    y_true = true_function(module.task, batch["descriptor"], grid)

    n_rows = math.ceil(len(rows) / cols)
    fig = Figure(figsize=(3.3 * cols, 2.6 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, cols, squeeze=False).flatten()
    for i, ax in enumerate(axes):
        if i >= len(rows):
            ax.axis("off")
            continue
        if y_true is not None:
            ax.plot(grid, y_true[i], color="black", lw=2.2, alpha=0.35, label="true function")
        else:
            order = torch.argsort(batch["query_x"][i, :, 0])
            ax.plot(
                batch["query_x"][i, order, 0],
                batch["query_y"][i, order, 0],
                color="black",
                lw=2.2,
                alpha=0.35,
                label="query data",
            )
        ax.scatter(
            batch["support_x"][i, :, 0], batch["support_y"][i, :, 0], s=6, color="tab:gray", alpha=0.7, label="support"
        )
        ax.plot(grid, y_trained[i], color="tab:blue", lw=1.2, label="trained target")
        ax.plot(grid, y_pred[i], color="tab:orange", lw=1.2, ls="--", label="predicted target")
        arch = ", ".join(f"{k}={v}" for k, v in family.arch_to_dict(batch["archs"][i].tolist()).items())
        ax.set_title(f"{arch}\nquery MSE pred {pred_loss[i]:.3g} | trained {batch['query_loss'][i]:.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def prediction_grids(module: Any, splits: dict[str, dict[str, Tensor]], folder: Path, count: int = 12) -> list[Path]:
    """One grid per held-out split (``SPLITS``) for 1-D regression families; [] otherwise."""
    if not is_plottable(module):
        return []
    out = []
    for name in SPLITS:
        titles = {"test": "held-out tasks", "test_unseen_arch": "held-out tasks at architectures never trained on"}
        path = prediction_grid(module, splits.get(name), folder / f"{name}_tasks.png", titles[name], count)
        if path is not None:
            out.append(path)
            log.info("Prediction grid written to %s", path)
    return out
