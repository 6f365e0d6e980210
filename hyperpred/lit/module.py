"""The LightningModule: wires a predictor to its objective and to the metrics. No maths of its own."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor

from hyperpred.lit.sampler import first_occurrences
from hyperpred.losses import PredictionLoss, masked_weight_mse
from hyperpred.metrics import summarize
from hyperpred.targets.base import Params, TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.training import per_target_loss


class WeightPredictionModule(pl.LightningModule):
    """Predicts flat target parameters from conditioning features.

    Every constructor argument is a plain dict or number, so the checkpoint alone rebuilds the
    family, the task, the predictor and the feature normalization (buffers).
    The predictor works in normalized units: ``params = param_mean + param_std · predictor(z)``
    with ``z`` the standardized features, so a zero output is the training zoo's mean weights.
    """

    def __init__(
        self,
        family: dict[str, Any],
        task: dict[str, Any],
        predictor: dict[str, Any],
        loss: dict[str, Any],
        optimizer: dict[str, Any],
        container: list[int],
        in_dim: int,
        out_dim: int,
        features: dict[str, Any] | None = None,
        probe: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        """``run_config`` (the run's resolved config, plain) is only stored: evaluation rebuilds the zoo from it."""
        super().__init__()
        self.save_hyperparameters()
        self.family: TargetFamily = instantiate(family)
        self.task: Task = instantiate(task)
        self.container = tuple(container)
        self.predictor = instantiate(predictor, in_dim=in_dim, out_dim=out_dim)
        self.objective = PredictionLoss(**loss)
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.register_buffer("param_mean", torch.zeros(out_dim))
        self.register_buffer("param_std", torch.ones(out_dim))
        self.test_split_names: list[str] = ["test"]
        self._test_outputs: dict[int, list[dict[str, Tensor]]] = {}
        self.test_metrics: dict[str, float] = {}

    def set_normalization(self, stats: dict[str, Tensor]) -> None:
        for name in ("feature_mean", "feature_std", "param_mean", "param_std"):
            getattr(self, name).copy_(stats[name])

    # ------------------------------------------------------------------ prediction
    def forward(self, features: Tensor) -> Tensor:
        """Raw (unnormalized) flat parameters ``[B, P]`` at the container architecture."""
        z = (features - self.feature_mean) / self.feature_std
        return self.param_mean + self.param_std * self.predictor(z)

    def unflatten(self, flat: Tensor) -> Params:
        return self.family.unflatten(flat, self.container)

    def query_loss(self, flat: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return per_target_loss(self.family, self.task, self.unflatten(flat), batch["archs"], self.container, batch["query_x"], batch["query_y"])

    def query_accuracy(self, flat: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Per-target query accuracy ``[B]`` (classification tasks only)."""
        logits = self.family.forward(self.unflatten(flat), batch["query_x"], batch["archs"])
        return self.task.accuracy(logits, batch["query_y"], self.family.output_mask(batch["archs"], self.container))

    # ------------------------------------------------------------------ training
    def _step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        pred = self(batch["features"])
        weight_mse = masked_weight_mse(pred, batch["params"], batch["mask"]).mean()
        func = self.query_loss(pred, batch).mean()
        loss = self.objective.combine(weight_mse, func)
        n = batch["archs"].shape[0]
        self.log_dict({f"{split}/loss": loss, f"{split}/weight_mse": weight_mse, f"{split}/query_loss": func}, batch_size=n, prog_bar=split == "val", on_epoch=True, on_step=False, sync_dist=True)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    # ------------------------------------------------------------------ evaluation
    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        pred = self(batch["features"])
        mean = torch.nan_to_num(batch["mean_params"], nan=0.0)
        has_mean = torch.isfinite(batch["mean_params"]).all(1)
        nan = torch.full_like(batch["query_loss"], float("nan"))
        out = {
            "pred_query_loss": self.query_loss(pred, batch),
            "trained_query_loss": batch["query_loss"],
            "init_query_loss": batch["init_query_loss"],
            "zoo_mean_query_loss": torch.where(has_mean, self.query_loss(mean, batch), nan),
            "weight_mse": masked_weight_mse(pred, batch["params"], batch["mask"]),
            "zoo_mean_weight_mse": torch.where(has_mean, masked_weight_mse(mean, batch["params"], batch["mask"]), nan),
            **(self._accuracies(pred, mean, has_mean, batch) if self.task.classification else {}),
            "index": batch["index"],
        }
        self._test_outputs.setdefault(dataloader_idx, []).append({k: v.detach() for k, v in out.items()})

    def _accuracies(self, pred: Tensor, mean: Tensor, has_mean: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Query accuracy of the predicted, trained, initial and zoo-mean weights, per target."""
        nan = torch.full_like(batch["query_loss"], float("nan"))
        return {
            "pred_accuracy": self.query_accuracy(pred, batch),
            "trained_accuracy": self.query_accuracy(batch["params"], batch),
            "init_accuracy": self.query_accuracy(batch["init"], batch),
            "zoo_mean_accuracy": torch.where(has_mean, self.query_accuracy(mean, batch), nan),
        }

    def on_test_epoch_start(self) -> None:
        self._test_outputs = {}
        self.test_metrics = {}

    def on_test_epoch_end(self) -> None:
        for idx, outputs in sorted(self._test_outputs.items()):
            per_target = {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
            per_target = {k: self.all_gather(v).flatten() if self.trainer.world_size > 1 else v for k, v in per_target.items()}
            keep = first_occurrences(per_target.pop("index"))  # DDP ranks pad with repeated targets: count each once
            per_target = {k: v[keep] for k, v in per_target.items()}
            split = self.test_split_names[idx]
            summary = {f"{split}/{k}": v for k, v in summarize(per_target).items()}
            self.test_metrics.update(summary)
            self.log_dict({k: v for k, v in summary.items() if v == v}, add_dataloader_idx=False, sync_dist=False)

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
