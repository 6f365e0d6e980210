"""Images of a finished run: weight histograms made here, plus every PNG the run wrote, sent to loggers.

PNG files in the run folder are the source of truth (csv/none loggers keep them too); wandb and
TensorBoard get copies. Figures use matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

#: Subfolder of the run folder that holds its figures.
PLOTS_DIR = "plots"


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


def run_images(output_dir: Path) -> list[Path]:
    """Every PNG the run wrote under its folder (loggers' own folders excluded), sorted."""
    skip = {"wandb", "checkpoints", "tensorboard", "csv", ".hydra"}
    return sorted(p for p in output_dir.rglob("*.png") if not skip & set(p.relative_to(output_dir).parts[:-1]))


def log_images(loggers: Iterable[Any], images: list[Path], output_dir: Path, step: int | None = None) -> int:
    """Send PNGs to wandb (``wandb.Image``) and TensorBoard (``add_image``); returns how many were sent."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    sent = 0
    for lg in loggers:
        for path in images:
            key = path.relative_to(output_dir).with_suffix("").as_posix()  # e.g. plots/weight_histograms
            try:
                if isinstance(lg, WandbLogger):
                    lg.log_image(key=key, images=[str(path)], step=step)
                elif isinstance(lg, TensorBoardLogger):
                    from matplotlib.image import imread

                    lg.experiment.add_image(key, imread(str(path))[..., :3], global_step=step or 0, dataformats="HWC")
                else:
                    continue
                sent += 1
            except Exception as e:  # an image that fails to upload must not fail a finished run
                log.warning("Could not log image %s to %s: %s", path, type(lg).__name__, e)
    return sent
