"""The run's ``tags`` in the CSV and TensorBoard logs, as wandb and MLflow get them from their logger config.

CSV: ``tags`` in the logger's ``hparams.yaml``. TensorBoard: the same, and a text entry ``tags``
(its hparams file is not shown in TensorBoard's UI).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger


class LogTags(pl.Callback):
    """Writes ``tags`` to every CSV and TensorBoard logger when fitting starts (rank 0)."""

    def __init__(self, tags: Iterable[str] | None = None) -> None:
        self.tags = [str(tag) for tag in tags or []]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:  # fast_dev_run's DummyLogger is neither: nothing to write
            if isinstance(logger, (CSVLogger, TensorBoardLogger)):
                logger.log_hyperparams({"tags": self.tags})
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("tags", ", ".join(self.tags), global_step=0)
