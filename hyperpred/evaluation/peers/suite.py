"""Run the configured peer baselines on one held-out split and summarize them next to the prediction.

Called once per test split from the LightningModule's ``on_test_epoch_end``; MAML and the CNP are
trained once per run (on the training split's tasks, or fresh ones) and reused for every split.
Per-task numbers are summarized like the module's own: means of losses, medians over tasks of
ratios ``predicted / baseline`` (below 1: the prediction wins).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.evaluation.peers.cnp import CNP, cnp_query_loss, train_cnp
from hyperpred.evaluation.peers.curves import finetune_curve
from hyperpred.evaluation.peers.episodes import EpisodeSource
from hyperpred.evaluation.peers.maml import MAML, MAMLConfig
from hyperpred.evaluation.peers.memorization import function_distances, memorization_summary
from hyperpred.evaluation.peers.nearest import nearest_by_features, nearest_by_function
from hyperpred.evaluation.peers.nets import FamilyNet, build_net
from hyperpred.metrics import best_seconds
from hyperpred.peer_config import KNOWN
from hyperpred.plots import curve_plot, memorization_plot
from hyperpred.zoo.training import per_target_loss

log = logging.getLogger(__name__)

EPS = 1e-12


def median_ratio(num: Tensor, den: Tensor) -> float:
    ok = torch.isfinite(num) & torch.isfinite(den)
    return (num[ok] / den[ok].clamp_min(EPS)).median().item() if ok.any() else float("nan")


def nanmean(x: Tensor) -> float:
    ok = torch.isfinite(x)
    return x[ok].mean().item() if ok.any() else float("nan")


class PeerSuite:
    """The baselines named in ``cfg`` (``baselines.<name>: {...}``) for one run."""

    def __init__(self, cfg: dict[str, Any], module: Any, train: dict[str, Tensor], output_dir: Path | None) -> None:
        unknown = sorted(set(cfg) - set(KNOWN))
        if unknown:
            raise ConfigError(f"baselines: unknown baseline(s) {unknown}; choose from {list(KNOWN)}")
        self.cfg, self.module, self.train, self.output_dir = cfg, module, train, output_dir
        self.family, self.task, self.container = module.family, module.task, module.container
        self.maml: MAML | None = None
        self.cnp: CNP | None = None
        self.cnp_seconds = 0.0

    # ------------------------------------------------------------------ training once per run
    def _source(self, key: str) -> EpisodeSource:
        fresh = bool(self.cfg[key].get("fresh_tasks", False))
        return EpisodeSource(self.train, self.family, self.task, self.container, fresh=fresh)

    def _train_maml(self) -> MAML:
        if self.maml is None:
            c = self.cfg["maml"]
            net = build_net(c.get("net", "family"), self.family, self.task, self.container)
            fields = MAMLConfig.__dataclass_fields__
            self.maml = MAML(net, MAMLConfig(**{k: v for k, v in c.items() if k in fields}))
            self.maml.train(self._source("maml"))
            log.info("MAML: %d meta-iterations in %.1f s", self.maml.steps_done, self.maml.train_seconds)
        return self.maml

    def _train_cnp(self) -> CNP:
        if self.cnp is None:
            c = self.cfg["cnp"]
            x, y = self.train["support_x"], self.train["support_y"]
            self.cnp = CNP(
                x[0, 0].numel(),
                y[0, 0].numel(),
                int(c.get("width", 128)),
                int(c.get("depth", 3)),
                self.task.classification,
            )
            self.cnp_seconds = train_cnp(
                self.cnp,
                self.task,
                self._source("cnp"),
                int(c.get("steps", 2000)),
                int(c.get("meta_batch", 25)),
                float(c.get("lr", 1e-3)),
                int(c.get("seed", 0)),
            )
            log.info("CNP: %d iterations in %.1f s", int(c.get("steps", 2000)), self.cnp_seconds)
        return self.cnp

    # ------------------------------------------------------------------ one split
    def evaluate(self, split: str, test: dict[str, Tensor], pred: Tensor) -> dict[str, float]:
        """Metrics ``{split}/...`` for the test rows ``test`` whose predicted flat params are ``pred``."""
        out: dict[str, float] = {}
        pred_loss = per_target_loss(
            self.family,
            self.task,
            self.family.unflatten(pred, self.container),
            test["archs"],
            self.container,
            test["query_x"],
            test["query_y"],
        )
        batch = {k: test[k].to(torch.get_default_dtype()) for k in ("support_x", "support_y", "query_x", "query_y")}
        with torch.inference_mode(False), torch.enable_grad():
            batch = {k: v.clone() for k, v in batch.items()}
            if "maml" in self.cfg:
                out.update(self._maml_metrics(batch, pred_loss))
            if "cnp" in self.cfg:
                out.update(self._cnp_metrics(batch, test, pred, pred_loss))
            if "finetune_curve" in self.cfg:
                out.update(self._curve_metrics(split, batch, test, pred))
        if "nearest" in self.cfg:
            out.update(self._nearest_metrics(test, pred_loss))
        if "memorization" in self.cfg:
            out.update(self._memorization_metrics(split, test, pred))
        trainer = getattr(self.module, "_trainer", None)
        if trainer is not None:
            out["predictor_steps"] = float(trainer.global_step)
        if getattr(self.module, "fit_seconds", None):
            out["predictor_train_seconds"] = float(self.module.fit_seconds)
        return {f"{split}/{k}": v for k, v in out.items()}

    def _maml_metrics(self, b: dict[str, Tensor], pred_loss: Tensor) -> dict[str, float]:
        maml = self._train_maml()
        steps = sorted(int(s) for s in self.cfg["maml"].get("eval_steps", [0, 1, 10]))
        res = maml.evaluate(b["support_x"], b["support_y"], b["query_x"], b["query_y"], steps)
        out = {}
        for k in steps:
            out[f"maml_query_loss_step{k}"] = nanmean(res[k]["loss"])
            out[f"maml_query_loss_step{k}_median"] = res[k]["loss"].median().item()
            if "accuracy" in res[k]:
                out[f"maml_accuracy_step{k}"] = nanmean(res[k]["accuracy"])
        last = res[steps[-1]]["loss"]
        first = res[steps[0]]["loss"]
        out["maml_diverged"] = float((~torch.isfinite(last) | (last > 10 * first)).sum())  # count of tasks
        out["maml_worse_share"] = (last > first).float().mean().item()  # adapting made the query loss worse
        out["ratio_vs_maml"] = median_ratio(pred_loss, last)
        out["maml_train_seconds"] = maml.train_seconds
        out["maml_steps"] = float(maml.steps_done)
        return out

    def _cnp_metrics(
        self, b: dict[str, Tensor], test: dict[str, Tensor], pred: Tensor, pred_loss: Tensor
    ) -> dict[str, float]:
        cnp = self._train_cnp()
        loss, acc = cnp_query_loss(cnp, self.task, b)
        n_points = b["query_x"].shape[0] * b["query_x"].shape[1]
        params = self.family.unflatten(pred.detach(), self.container)
        with torch.no_grad():
            cnp_s = best_seconds(lambda: cnp(b["support_x"], b["support_y"], b["query_x"]), 3)
            pred_s = best_seconds(lambda: self.family.forward(params, b["query_x"], test["archs"]), 3)
        out = {
            "cnp_query_loss": nanmean(loss),
            "ratio_vs_cnp": median_ratio(pred_loss, loss),
            "cnp_train_seconds": self.cnp_seconds,
            "cnp_steps": float(self.cfg["cnp"].get("steps", 2000)),
            "cnp_flops_per_query": cnp.flops_per_query(b["support_x"].shape[1]),
            "pred_flops_per_query": FamilyNet(self.family, self.task, self.container).flops_per_sample(),
            "cnp_us_per_query": 1e6 * cnp_s / n_points,
            "pred_us_per_query": 1e6 * pred_s / n_points,
        }
        if acc is not None:
            out["cnp_accuracy"] = nanmean(acc)
        return out

    def _nearest_metrics(self, test: dict[str, Tensor], pred_loss: Tensor) -> dict[str, float]:
        m, tr = self.module, self.train
        z_train = (tr["features"] - m.feature_mean) / m.feature_std
        z_test = (test["features"] - m.feature_mean) / m.feature_std
        chunk = self.cfg["nearest"].get("chunk")
        by_feat = nearest_by_features(z_train, z_test)
        by_fn = nearest_by_function(
            self.family,
            self.task,
            self.container,
            tr["params"],
            tr["archs"],
            test["support_x"],
            test["support_y"],
            chunk,
        )
        out = {}
        for name, idx in (("nearest", by_feat), ("nearest_fn", by_fn)):
            params = self.family.unflatten(tr["params"][idx], self.container)
            loss = per_target_loss(
                self.family, self.task, params, tr["archs"][idx], self.container, test["query_x"], test["query_y"]
            )
            out[f"{name}_query_loss"] = nanmean(loss)
            out[f"ratio_vs_{name}"] = median_ratio(pred_loss, loss)
            if self.task.classification:
                logits = self.family.forward(params, test["query_x"], tr["archs"][idx])
                acc = self.task.accuracy(
                    logits, test["query_y"], self.family.output_mask(tr["archs"][idx], self.container)
                )
                out[f"{name}_accuracy"] = nanmean(acc)
        return out

    def _memorization_metrics(self, split: str, test: dict[str, Tensor], pred: Tensor) -> dict[str, float]:
        d = function_distances(
            self.family,
            self.container,
            pred,
            test["params"],
            test["archs"],
            self.train["params"],
            self.train["archs"],
            test["query_x"],
            self.task.classification,
            self.cfg["memorization"].get("chunk"),
        )
        if self.output_dir is not None:
            memorization_plot(d, self.output_dir / f"{split}_memorization.png", f"memorization audit ({split})")
        return memorization_summary(d)

    def _curve_metrics(
        self, split: str, b: dict[str, Tensor], test: dict[str, Tensor], pred: Tensor
    ) -> dict[str, float]:
        c = self.cfg["finetune_curve"]
        steps = [int(s) for s in c.get("steps", [0, 1, 10, 100])]
        lr = float(c.get("lr") or (self.module.hparams.get("finetune") or {}).get("lr") or 1e-3)
        fam_net = FamilyNet(self.family, self.task, self.container, test["archs"])
        starts = {"pred": (fam_net, pred), "init": (fam_net, test["init"].to(pred.dtype))}
        if "maml" in self.cfg:
            maml = self._train_maml()
            starts["maml"] = (maml.net, maml.init.detach().unsqueeze(0).expand(len(pred), -1))
        out, losses, accs = {}, {}, {}
        start_time = time.perf_counter()
        for name, (net, start) in starts.items():
            res = finetune_curve(net, start, b["support_x"], b["support_y"], b["query_x"], b["query_y"], steps, lr)
            losses[name] = {k: nanmean(v["loss"]) for k, v in res.items()}
            for k, v in res.items():
                out[f"finetune_curve/{name}/step{k}"] = losses[name][k]
                if "accuracy" in v:
                    accs.setdefault(name, {})[k] = nanmean(v["accuracy"])
                    out[f"finetune_curve/{name}/accuracy_step{k}"] = accs[name][k]
        out["finetune_curve_seconds"] = time.perf_counter() - start_time
        if self.output_dir is not None:
            curve_plot(
                losses, self.output_dir / f"{split}_finetune_curve.png", f"fine-tuning on the support set ({split})"
            )
        return out


#: Training budgets of MAML and the CNP under ``trainer.fast_dev_run``: enough to run every line once.
SMOKE_STEPS = 2


def smoke_budget(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with MAML's and the CNP's training cut to :data:`SMOKE_STEPS`.

    ``fast_dev_run`` asks whether a run works end to end, in seconds; the peers' own training budgets
    (thousands of meta-iterations) would otherwise make a smoke test of ``sine_fewshot`` take an hour.
    """
    return {
        k: ({**v, "steps": min(int(v.get("steps", SMOKE_STEPS)), SMOKE_STEPS)} if k in ("maml", "cnp") else v)
        for k, v in cfg.items()
    }


def run_peers(module: Any, split: str) -> dict[str, float]:
    """The configured baselines (``run_config.baselines``) on ``split`` of the module's datamodule; {} when none."""
    run_config = module.hparams.get("run_config") or {}
    cfg = run_config.get("baselines") or {}
    trainer = getattr(module, "_trainer", None)
    if cfg and trainer is not None and getattr(trainer, "fast_dev_run", False):
        cfg = smoke_budget(dict(cfg))
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if not cfg or dm is None or "train" not in getattr(dm, "splits", {}) or split not in dm.splits:
        return {}
    suite = getattr(module, "_peer_suite", None)
    if suite is None:
        out_dir = (run_config.get("paths") or {}).get("output_dir")
        suite = PeerSuite(dict(cfg), module, dm.splits["train"], Path(out_dir) / "plots" if out_dir else None)
        module._peer_suite = suite
    test = dm.splits[split]
    with torch.no_grad():
        pred = torch.cat(
            [module.predict({k: v[s : s + 256] for k, v in test.items()}) for s in range(0, len(test["archs"]), 256)]
        )
    start = time.perf_counter()
    metrics = suite.evaluate(split, test, pred.detach().clone())
    log.info("Peer baselines on %s in %.1f s", split, time.perf_counter() - start)
    return metrics
