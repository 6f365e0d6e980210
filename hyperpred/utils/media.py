"""Images of a finished run sent to loggers: every PNG the run wrote (drawn by :mod:`hyperpred.plots`).

PNG files in the run folder are the source of truth (csv/none loggers keep them too); wandb and
TensorBoard get copies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Subfolder of the run folder that holds its figures.
PLOTS_DIR = "plots"


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
