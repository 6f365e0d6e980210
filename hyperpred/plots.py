"""Every figure a run draws, in one place (matplotlib's object API: no pyplot state, no display needed).

* :func:`prediction_grids`: predictions working as functions, a grid of held-out 1-D regression tasks;
* :func:`weight_histograms`: predicted vs trained target weights, per parameter tensor;
* :func:`memorization_plot` and :func:`curve_plot`: the peer baselines' memorization audit and
  fine-tuning curves (:mod:`hyperpred.evaluation.peers`).

In a prediction grid each panel is one task: its true function (dense), the support points the predictor saw, the
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


@torch.no_grad()
def weight_histograms(module: Any, split: dict[str, Tensor], path: Path, max_tensors: int = 6) -> Path | None:
    """Histogram per parameter tensor of predicted vs trained target weights on one split.

    Only entries that exist in each target's own architecture (the mask) count; padding would
    pile up at zero. Returns the PNG path, or None when the split is empty.
    """
    from matplotlib.figure import Figure

    if split is None or len(split["features"]) == 0:
        return None
    was_training = module.training
    module.eval()
    try:
        pred = module.predict(
            {k: v.to(module.device) for k, v in split.items()}
        ).cpu()  # the batch: some predictors read archs/support
    finally:
        module.train(was_training)
    family, container = module.family, module.container
    named = list(
        zip(
            family.unflatten(pred, container).items(),
            family.unflatten(split["params"], container).values(),
            family.unflatten(split["mask"].to(pred.dtype), container).values(),
        )
    )[:max_tensors]
    fig = Figure(figsize=(3.2 * len(named), 2.8), layout="constrained")
    axes = fig.subplots(1, len(named), squeeze=False)[0]
    for ax, ((name, p), t, m) in zip(axes, named):
        keep = m.bool()
        p, t = p[keep], t[keep]
        finite = torch.isfinite(p)
        lo, hi = (
            torch.quantile(torch.cat([p[finite], t]), torch.tensor([0.005, 0.995])).tolist() if len(t) else (0.0, 1.0)
        )
        bins = torch.linspace(lo, hi + 1e-12, 41).numpy()
        ax.hist(t.numpy(), bins=bins, alpha=0.55, label="trained", color="tab:blue")
        ax.hist(p[finite].numpy(), bins=bins, alpha=0.55, label="predicted", color="tab:orange")
        ax.set_title(name, fontsize=9)
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    fig.suptitle("target weights on held-out tasks", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def memorization_plot(d: dict[str, Tensor], path: Path, title: str) -> Path:
    """d(p, own trained) against d(p, nearest training target): points below the diagonal sit on a training target."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    x, y = d["pred_to_own"].clamp_min(1e-8).numpy(), d["pred_to_train"].clamp_min(1e-8).numpy()
    ax.scatter(x, y, s=8, alpha=0.6, color="tab:orange", label="predictions")
    lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--", label="equal distance")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="distance to own trained target",
        ylabel="distance to nearest training target",
    )
    share = float((d["pred_to_train"] < d["pred_to_own"]).float().mean())
    ax.set_title(f"{title}\nshare closer to a training target: {share:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def curve_plot(curves: dict[str, dict[int, float]], path: Path, title: str, ylabel: str = "mean query loss") -> Path:
    """Query loss against fine-tuning steps (log-log, step 0 drawn at 0.5), one line per start."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.subplots()
    for name, points in curves.items():
        steps = sorted(points)
        ax.plot([max(s, 0.5) for s in steps], [points[s] for s in steps], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="Adam steps on the support set (0 at 0.5)", ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
