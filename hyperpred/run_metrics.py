"""What a run reports besides the module's own logs: the best validation value and the fit's timing.

A sweeper must optimize what the run reports. The test metrics come from the best checkpoint, so the
value a sweep ranks a trial by is that checkpoint's validation value: ``<monitor>_best`` (e.g.
``val/query_loss_best``), the best value of each ``ModelCheckpoint``'s monitor so far, logged every
epoch like any metric. ``fit/seconds``, ``fit/steps`` and ``fit/steps_per_second`` time ``trainer.fit``.

Under ``strategy: ddp_spawn`` (``trainer=ddp_sim``) fit and test run in spawned worker processes;
only ``trainer.callback_metrics`` of rank 0 comes back to the process that called them. So the
callbacks below put what train() needs (the step counts, the module's test metrics, NaN included)
into ``callback_metrics``, and train() reads it from there in every strategy.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

#: Keys of ``callback_metrics`` that :class:`CarryResults` fills (not logged to the loggers).
STEPS_KEY = "fit/steps"
START_STEP_KEY = "fit/start_step"


def best_name(monitor: str) -> str:
    """The name under which the best value of ``monitor`` is logged."""
    return f"{monitor}_best"


class BestValue(pl.Callback):
    """Logs ``<monitor>_best``: the best ``monitor`` value so far, the one its ModelCheckpoint keeps.

    It reads the value at the end of each training epoch, after that epoch's validation, and keeps
    NaN out as ModelCheckpoint does (it ranks NaN last). Its state is saved in checkpoints, so a
    resumed run goes on from the best value before the interruption.
    """

    def __init__(self, monitor: str, mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None

    @property
    def state_key(self) -> str:
        return f"BestValue[{self.monitor}]"

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:  # no validation yet (check_val_every_n_epoch > 1, limit_val_batches=0)
            return
        value = float(value)
        if math.isfinite(value) and self._better(value):
            self.best = value
        if self.best is not None:
            pl_module.log(best_name(self.monitor), self.best, on_step=False, on_epoch=True, sync_dist=False)

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")


class CarryResults(pl.Callback):
    """Puts the step counts and the module's test metrics into ``callback_metrics`` (see the module docstring)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.callback_metrics[START_STEP_KEY] = torch.tensor(float(trainer.global_step))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.callback_metrics[STEPS_KEY] = torch.tensor(float(trainer.global_step))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key, value in (getattr(pl_module, "test_metrics", None) or {}).items():
            trainer.callback_metrics[key] = torch.tensor(float(value), dtype=torch.float64)


def run_callbacks(callbacks: list[pl.Callback], optimized_metric: str | None = None) -> list[pl.Callback]:
    """The callbacks train() adds to the configured ones: a :class:`BestValue` per checkpoint monitor, and
    :class:`CarryResults`.

    An ``optimized_metric`` named ``<monitor>_best`` whose monitor no checkpoint watches (``callbacks=none``)
    gets its own :class:`BestValue` (``max`` for accuracies), so that a run without checkpoints still
    reports the value its sweeper asks for.
    """
    monitors: dict[str, str] = {}
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor:
            monitors.setdefault(cb.monitor, cb.mode)
    if optimized_metric and optimized_metric.endswith("_best"):
        monitor = optimized_metric.removesuffix("_best")
        monitors.setdefault(monitor, "max" if "accuracy" in monitor or monitor.endswith("/acc") else "min")
    return [*(BestValue(m, mode) for m, mode in monitors.items()), CarryResults()]


def run_fit(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: Any, ckpt_path: str | None, **fit_kwargs: Any
) -> dict[str, float]:
    """``trainer.fit``, then the last epoch's ``train/``, ``val/`` values, ``<monitor>_best`` and the fit's timing.

    ``fit/steps`` is ``trainer.global_step`` at the end (it counts the steps before a resume too);
    ``fit/steps_per_second`` counts only the steps of this call.
    """
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, **fit_kwargs)
    seconds = time.perf_counter() - t0
    # trainer.test() resets callback_metrics: keep them now
    cm = trainer.callback_metrics
    metrics = {k: float(v) for k, v in cm.items() if k.startswith(("train/", "val/"))}
    steps = float(cm.get(STEPS_KEY, trainer.global_step))
    start = float(cm.get(START_STEP_KEY, 0.0))
    metrics["fit/seconds"] = round(seconds, 3)
    metrics["fit/steps"] = steps
    metrics["fit/steps_per_second"] = round((steps - start) / seconds, 3) if seconds > 0 else float("nan")
    return metrics


def run_test(
    trainer: pl.Trainer, module: pl.LightningModule, datamodule: Any, ckpt_path: str | None, **test_kwargs: Any
) -> dict[str, float]:
    """``trainer.test`` and the module's test metrics, also when the test ran in spawned processes."""
    trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, **test_kwargs)
    if getattr(module, "test_metrics", None):  # the test ran in this process
        return dict(module.test_metrics)
    if ckpt_path:  # the workers tested these weights; plots made here afterwards must show them too
        module.load_state_dict(torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"])
    prefixes = tuple(f"{name}/" for name in getattr(module, "test_split_names", ["test"]))
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefixes)}
