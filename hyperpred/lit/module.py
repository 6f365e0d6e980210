"""The LightningModule: wires a predictor to its objective and to the metrics. No maths of its own."""

from __future__ import annotations

import functools
import time
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.evaluation.peers import run_peers
from hyperpred.finetune import finetune_steps
from hyperpred.lit.sampler import first_occurrences
from hyperpred.losses import PredictionLoss, masked_weight_mse
from hyperpred.metrics import summarize
from hyperpred.predictors.base import build_predictor
from hyperpred.registry import build
from hyperpred.targets.base import Params, TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.training import per_target_loss


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
        if self.objective.width_augment:
            if not getattr(self.predictor, "width_agnostic", False):
                raise ConfigError(
                    "loss.width_augment=true needs a width-agnostic predictor (e.g. predictor=width_agnostic), not "
                    f"{type(self.predictor).__name__}"
                )
            arch_features = [
                k for k, v in (features or {}).items() if str(v.get("_target_", "")).endswith("ArchFeature")
            ]
            if arch_features:
                raise ConfigError(
                    f"loss.width_augment=true changes the widths that features.{arch_features[0]} encodes: drop that "
                    "feature"
                )
        self.test_split_names: list[str] = list(test_split_names or ["test"])
        self._test_outputs: dict[int, list[dict[str, Tensor]]] = {}
        self._finetune_inputs: dict[int, list[dict[str, Tensor]]] = {}
        self.test_metrics: dict[str, float] = {}
        if stats is not None:
            self.set_normalization(stats)

    def set_normalization(self, stats: dict[str, Tensor]) -> None:
        for name in ("feature_mean", "feature_std", "param_mean", "param_std"):
            getattr(self, name).copy_(stats[name])
        for name in ("arch_min", "arch_max"):
            if name in stats:
                getattr(self, name).copy_(stats[name])
        if hasattr(self.predictor, "set_data_stats"):
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
        if batch is None and (
            getattr(self.predictor, "needs_support", False) or getattr(self.predictor, "width_agnostic", False)
        ):
            raise ConfigError(
                f"predictor {type(self.predictor).__name__} reads the batch (archs, support_x, support_y): call "
                "module(features, batch)"
            )
        z = (features - self.feature_mean) / self.feature_std
        out = self.predictor(z, batch, container)
        if getattr(self.predictor, "output_space", "normalized") == "raw":
            return out
        if container != self.container:
            raise ConfigError(
                f"predictor {type(self.predictor).__name__} predicts only the training container {self.container}, "
                f"not {container}; use a width-agnostic predictor"
            )
        return self.param_mean + self.param_std * out

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

    def query_accuracy(self, flat: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Per-target query accuracy ``[B]`` (classification tasks only)."""
        logits = self.family.forward(self.unflatten(flat), batch["query_x"], batch["archs"])
        return self.task.accuracy(logits, batch["query_y"], self.family.output_mask(batch["archs"], self.container))

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

    # ------------------------------------------------------------------ evaluation
    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        pred = self(batch["features"], batch)
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
        if self._finetune_budget():
            keep = ("archs", "support_x", "support_y", "query_x", "query_y", "query_loss")
            self._finetune_inputs.setdefault(dataloader_idx, []).append(
                {"pred": pred.detach(), **{k: batch[k] for k in keep}}
            )

    def _finetune_budget(self) -> int:
        """Adam steps allowed when fine-tuning from predictions (0: metric off)."""
        ft = self.hparams.get("finetune") or {}
        if not ft.get("enabled", True) or not ft.get("steps"):
            return 0
        return max(1, round(float(ft.get("max_factor", 1.0)) * int(ft["steps"])))

    def _finetune_fraction(self, inputs: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Per target: Adam steps from the prediction to the trained query loss / the zoo's steps.

        Targets that do not get there within the budget count at the budget, flagged in ``finetune_reached``.
        """
        ft = self.hparams.finetune
        with torch.inference_mode(False):  # Lightning tests under inference mode; fine-tuning needs autograd
            b = {k: torch.cat([i[k] for i in inputs]).clone() for k in inputs[0]}
            steps = self._run_finetune(b, ft)
        reached = torch.isfinite(steps)
        steps = torch.where(reached, steps, torch.full_like(steps, float(self._finetune_budget())))
        return {"finetune_steps_fraction": steps / int(ft["steps"]), "finetune_reached": reached.to(steps.dtype)}

    def _run_finetune(self, b: dict[str, Tensor], ft: dict[str, Any]) -> Tensor:
        return finetune_steps(
            self.family,
            self.task,
            b["pred"],
            b["archs"],
            self.container,
            b["support_x"],
            b["support_y"],
            b["query_x"],
            b["query_y"],
            threshold=b["query_loss"],
            lr=float(ft["lr"]),
            max_steps=self._finetune_budget(),
            batch_size=ft.get("batch_size"),
            check_every=int(ft.get("check_every", 1)),
            seed=int(ft.get("seed", 0)),
        )

    def _accuracies(self, pred: Tensor, mean: Tensor, has_mean: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Query accuracy of the predicted, trained, initial and zoo-mean weights, per target."""
        nan = torch.full_like(batch["query_loss"], float("nan"))
        return {
            "pred_accuracy": self.query_accuracy(pred, batch),
            "trained_accuracy": self.query_accuracy(batch["params"], batch),
            "init_accuracy": self.query_accuracy(batch["init"], batch),
            "zoo_mean_accuracy": torch.where(has_mean, self.query_accuracy(mean, batch), nan),
        }

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()

    def on_fit_end(self) -> None:
        """Wall time of fit, reported next to the peer baselines' training time."""
        self.fit_seconds = time.perf_counter() - getattr(self, "_fit_start", time.perf_counter())

    def on_test_epoch_start(self) -> None:
        self._test_outputs = {}
        self._finetune_inputs = {}
        self.test_metrics = {}

    def on_test_epoch_end(self) -> None:
        for idx, outputs in sorted(self._test_outputs.items()):
            per_target = {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
            if idx in self._finetune_inputs:  # per rank, before gathering: each rank fine-tunes its own targets
                per_target.update(self._finetune_fraction(self._finetune_inputs.pop(idx)))
            per_target = {
                k: self.all_gather(v).flatten() if self.trainer.world_size > 1 else v for k, v in per_target.items()
            }
            keep = first_occurrences(
                per_target.pop("index")
            )  # under DDP every rank tests the whole split: count each target once
            per_target = {k: v[keep] for k, v in per_target.items()}
            split = self.test_split_names[idx]
            summary = {f"{split}/{k}": v for k, v in summarize(per_target).items()}
            summary.update(run_peers(self, split))  # peer baselines (run_config.baselines), {} when none
            self.test_metrics.update(summary)
            self.log_dict({k: v for k, v in summary.items() if v == v}, add_dataloader_idx=False, sync_dist=False)

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
