"""Stop training at the first non-finite loss or gradient, keeping the last good state on disk.

Checked before the optimizer touches the parameters (``on_before_optimizer_step``: the step's losses
and every gradient in one check, so that a GPU waits for the host once per step, not once per
parameter), so the checkpoint written on the way out holds parameters that were never updated with
a NaN or Inf: resume from it with a smaller lr.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor

from hyperpred.errors import HyperpredError


class NonFiniteTrainingError(HyperpredError):
    """The predictor's loss or gradients became NaN or Inf."""


class NonFiniteGuard(pl.Callback):
    def __init__(self, dirpath: str | None = None, filename: str = "last_good.ckpt") -> None:
        self.dirpath = dirpath
        self.filename = filename
        self._losses: list[Tensor] = []

    def _stop(self, trainer: pl.Trainer, what: str) -> None:
        path = Path(self.dirpath or Path(trainer.default_root_dir) / "checkpoints") / self.filename
        trainer.save_checkpoint(path)
        raise NonFiniteTrainingError(
            f"{what} at epoch {trainer.current_epoch}, step {trainer.global_step}: training stopped. "
            f"The last good state is saved in {path}; lower optimizer.lr or check the features, then resume with "
            f"ckpt_path={path}"
        )

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        # kept on the device: checked together with the gradients, with one host sync per optimizer step
        self._losses.append(loss.detach())

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        losses, self._losses = self._losses, []
        grads = [(name, p.grad) for name, p in pl_module.named_parameters() if p.grad is not None]
        checks = [torch.isfinite(t).all() for t in (*losses, *(g for _, g in grads))]
        if not checks or bool(torch.stack(checks).all()):  # the only sync of the step on an accelerator
            return
        for loss in losses:
            if not torch.isfinite(loss).all():
                self._stop(trainer, f"the training loss is {loss.flatten()[0].item()}")
        for name, g in grads:
            if not torch.isfinite(g).all():
                self._stop(trainer, f"the gradient of {name} is not finite")
