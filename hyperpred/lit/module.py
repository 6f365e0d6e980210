"""The LightningModule: wires a predictor to its objective; its test hooks hand batches to the evaluator.

Training and validation steps live here; every test number (baselines, accuracies, fine-tuning,
peers, summaries) comes from :mod:`hyperpred.evaluation`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.evaluation.evaluator import Evaluator
from hyperpred.losses import PredictionLoss, masked_weight_mse
from hyperpred.predictors.base import Predictor, build_predictor
from hyperpred.registry import build, lookup
from hyperpred.targets.base import Params, TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.training import per_target_loss


def feature_class(node: Any, key: str, from_file: bool) -> type | None:
    """The class a ``features.<name>`` config names (a registered one when read from a file); None without one."""
    target = node.get("_target_") if isinstance(node, Mapping) else None
    if not target:
        return None
    return lookup("feature", target, key) if from_file else get_class(str(target))


class WeightPredictionModule(pl.LightningModule):
    """Predicts flat target parameters from conditioning features.

    Every constructor argument is a plain dict or number, so the checkpoint alone rebuilds the
    family, the task, the predictor and the feature normalization (buffers).
    A predictor with ``output_space == "normalized"`` works in normalized units:
    ``params = param_mean + param_std · predictor(z)`` with ``z`` the standardized features, so a
    zero output is the training zoo's mean weights. A ``"raw"`` predictor (the width-agnostic
    decoder) returns parameters directly, at any container it is asked for.
    ``finetune`` (lr, steps, batch_size of the zoo's recipe; ``max_factor``) turns on the
    ``finetune_steps_fraction`` test metric.
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
        finetune: dict[str, Any] | None = None,
        from_file: bool = False,
        stats: dict[str, Tensor] | None = None,
        test_split_names: list[str] | None = None,
    ) -> None:
        """``run_config`` (the run's resolved config, plain) is only stored: evaluation rebuilds the zoo from it.

        Not stored (they describe this process, not the model): ``from_file``, the arguments were
        read from a checkpoint, so every class they name is built through :mod:`hyperpred.registry`
        only; ``stats``, the training split's normalization (a checkpoint restores it as buffers);
        ``test_split_names``, the names of the test dataloaders in order.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["from_file", "stats", "test_split_names"])
        self.from_file = from_file
        self.family: TargetFamily = build(family, "family", "family", from_file=from_file)
        self.task: Task = build(task, "task", "task", from_file=from_file)
        self.container = tuple(container)
        self.predictor = build_predictor(
            predictor, in_dim=in_dim, out_dim=out_dim, family=self.family, container=self.container, from_file=from_file
        )
        self.objective = PredictionLoss(**loss)
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.register_buffer("param_mean", torch.zeros(out_dim))
        self.register_buffer("param_std", torch.ones(out_dim))
        # range of the training architectures (for loss.width_augment)
        self.register_buffer("arch_min", torch.zeros(len(self.family.arch_fields), dtype=torch.long))
        self.register_buffer("arch_max", torch.zeros(len(self.family.arch_fields), dtype=torch.long))
        self._check_predictor(features, from_file)
        self.evaluator = Evaluator(list(test_split_names or ["test"]), finetune)
        if stats is not None:
            self.set_normalization(stats)

    def _check_predictor(self, features: dict[str, Any] | None, from_file: bool) -> None:
        """The predictor declares its flags (:class:`Predictor`); ``loss.width_augment`` needs a width-agnostic one
        and no feature that describes the architecture (the widths it encodes would be the zoo's, not the drawn ones).
        """
        if not isinstance(self.predictor, Predictor):
            raise ConfigError(
                f"predictor._target_ builds a {type(self.predictor).__name__}, not a "
                "hyperpred.predictors.base.Predictor: subclass it (it declares output_space, needs_support, "
                "width_agnostic)"
            )
        if not self.objective.width_augment:
            return
        if not self.predictor.width_agnostic:
            raise ConfigError(
                "loss.width_augment=true needs a width-agnostic predictor (e.g. predictor=width_agnostic), not "
                f"{type(self.predictor).__name__}"
            )
        for name, node in (features or {}).items():
            if getattr(feature_class(node, f"features.{name}._target_", from_file), "describes_architecture", False):
                raise ConfigError(
                    f"loss.width_augment=true changes the widths that features.{name} encodes: drop that feature"
                )

    def set_normalization(self, stats: dict[str, Tensor]) -> None:
        for name in ("feature_mean", "feature_std", "param_mean", "param_std"):
            getattr(self, name).copy_(stats[name])
        for name in ("arch_min", "arch_max"):
            if name in stats:
                getattr(self, name).copy_(stats[name])
        self.predictor.set_data_stats(stats)

    # ------------------------------------------------------------------ prediction
    def forward(
        self, features: Tensor, batch: dict[str, Tensor] | None = None, container: tuple[int, ...] | None = None
    ) -> Tensor:
        """Raw flat parameters ``[B, P]`` at ``container`` (default: the training container).

        ``batch`` gives ``archs`` and the support pairs to predictors that read them; only a
        width-agnostic predictor can answer for another container (e.g. wider than any in training).
        """
        container = self.container if container is None else tuple(container)
        if batch is None and (self.predictor.needs_support or self.predictor.width_agnostic):
            raise ConfigError(
                f"predictor {type(self.predictor).__name__} reads the batch (archs, support_x, support_y): call "
                "module(features, batch)"
            )
        z = (features - self.feature_mean) / self.feature_std
        out = self.predictor(z, batch, container)
        if self.predictor.output_space == "raw":
            return out
        if container != self.container:
            raise ConfigError(
                f"predictor {type(self.predictor).__name__} predicts only the training container {self.container}, "
                f"not {container}; use a width-agnostic predictor"
            )
        return self.param_mean + self.param_std * out

    @property
    def test_split_names(self) -> list[str]:
        """Names of the test dataloaders in order; the evaluator keys its metrics by them."""
        return self.evaluator.split_names

    @test_split_names.setter
    def test_split_names(self, names: list[str]) -> None:  # scripts/eval.py tests other splits than training did
        self.evaluator.split_names = list(names)

    def predict(self, batch: dict[str, Tensor], container: tuple[int, ...] | None = None) -> Tensor:
        """Flat parameters for a batch dict (``features``, ``archs``, ``support_x``, ``support_y``)."""
        return self(batch["features"], batch, container)

    def unflatten(self, flat: Tensor) -> Params:
        return self.family.unflatten(flat, self.container)

    def query_loss(self, flat: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return per_target_loss(
            self.family,
            self.task,
            self.unflatten(flat),
            batch["archs"],
            self.container,
            batch["query_x"],
            batch["query_y"],
        )

    # ------------------------------------------------------------------ training
    def augmented_archs(self, archs: Tensor) -> Tensor:
        """Each field drawn uniformly from the training range ``[arch_min, arch_max]`` (loss.width_augment)."""
        span = (self.arch_max - self.arch_min + 1).to(torch.get_default_dtype())
        return self.arch_min + (torch.rand(archs.shape, device=archs.device) * span).long().clamp_max(
            self.arch_max - self.arch_min
        )

    def _step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        n = batch["archs"].shape[0]
        augment = split == "train" and self.objective.width_augment
        logs = {}
        weight_mse = torch.zeros((), device=batch["features"].device)
        if not augment or self.objective.weight:
            pred = self(batch["features"], batch)
            weight_mse = masked_weight_mse(pred, batch["params"], batch["mask"]).mean()
            logs[f"{split}/weight_mse"] = weight_mse
        if augment:  # the functional term at other widths of the training range
            batch = {**batch, "archs": self.augmented_archs(batch["archs"])}
            pred = self(batch["features"], batch)
        per_task = self.query_loss(pred, batch)
        func = per_task.mean()
        loss = self.objective.combine(
            weight_mse,
            self.objective.functional_term(per_task, batch["support_y"]) if self.objective.functional else func,
        )
        logs.update({f"{split}/loss": loss, f"{split}/query_loss": func})
        self.log_dict(logs, batch_size=n, prog_bar=split == "val", on_epoch=True, on_step=False, sync_dist=True)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    # ------------------------------------------------------------------ evaluation (hyperpred.evaluation)
    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluator.collect(self, batch, dataloader_idx)

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()

    def on_fit_end(self) -> None:
        """Wall time of fit, reported next to the peer baselines' training time."""
        self.fit_seconds = time.perf_counter() - getattr(self, "_fit_start", time.perf_counter())

    def on_test_epoch_start(self) -> None:
        self.evaluator.reset()

    def on_test_epoch_end(self) -> None:
        gather = self.all_gather if self.trainer.world_size > 1 else None
        summary = self.evaluator.finish(self, gather)
        self.log_dict({k: v for k, v in summary.items() if v == v}, add_dataloader_idx=False, sync_dist=False)

    @property
    def test_metrics(self) -> dict[str, float]:
        """``{split}/{metric}`` of the last test (empty before one)."""
        return self.evaluator.metrics

    # ------------------------------------------------------------------ optimization
    def configure_optimizers(self) -> Any:
        optimizer = self._torch_partial(self.hparams.optimizer, "optimizer")(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = self._torch_partial(self.hparams.scheduler, "scheduler")(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def _torch_partial(self, node: dict[str, Any], key: str) -> Any:
        """The optimizer/scheduler factory; one read from a checkpoint may only name a class of ``torch.optim``."""
        if self.from_file:
            target = str(node.get("_target_", ""))
            owner, _, name = target.rpartition(".")
            found = {"torch.optim": torch.optim, "torch.optim.lr_scheduler": torch.optim.lr_scheduler}.get(owner)
            if found is None or not isinstance(getattr(found, name, None), type):
                raise ConfigError(f"{key}._target_={target!r}: a checkpoint may only name a torch.optim class here")
            kwargs = {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}
            return functools.partial(getattr(found, name), **kwargs)
        return instantiate(node)
