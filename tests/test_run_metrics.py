"""What train() reports for a sweeper (the best checkpoint's validation value) and the fit's timing."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from hyperpred.run.fit import BestValue
from hyperpred.run.results import optimized_value
from hyperpred.train import train


def _val_losses(out: Path) -> list[float]:
    (log,) = (out / "csv").rglob("metrics.csv")
    rows = list(csv.DictReader(log.open()))
    return [float(r["val/query_loss"]) for r in rows if r.get("val/query_loss")]


def test_optimized_value_is_the_best_checkpoints_validation_value(make_cfg):
    # lr 0.1: the validation loss is lowest at epoch 1 and then creeps up, so the last epoch is not the best one
    cfg = make_cfg("logger=csv", "trainer.max_epochs=6", "optimizer.lr=0.1")
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    losses = _val_losses(out)
    assert len(losses) == 6 and min(losses) < losses[-1]
    assert saved["val/query_loss_best"] == pytest.approx(min(losses), rel=1e-6)
    assert saved["val/query_loss"] == pytest.approx(losses[-1], rel=1e-6)  # the last epoch's, as before
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    (state,) = (v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint") and v["monitor"])
    assert saved["val/query_loss_best"] == float(state["best_model_score"])  # the checkpoint the test metrics use
    assert ckpt["callbacks"]["BestValue[val/query_loss]"]["best"] == saved["val/query_loss_best"]
    assert cfg.optimized_metric == "val/query_loss_best"
    assert optimized_value(cfg, metrics) == saved["val/query_loss_best"]


def test_fit_timing_is_in_metrics_json(make_cfg):
    cfg = make_cfg("trainer.max_epochs=2")
    train(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["fit/steps"] == ckpt["global_step"] > 0
    assert 0 < saved["fit/seconds"] < 600
    assert math.isclose(saved["fit/steps_per_second"], saved["fit/steps"] / saved["fit/seconds"], rel_tol=0.01)


def test_best_value_ignores_nan_and_follows_the_mode():
    class Stub:
        def __init__(self) -> None:
            self.callback_metrics: dict[str, torch.Tensor] = {}
            self.logged: dict[str, float] = {}

        def log(self, name: str, value: float, **_: object) -> None:
            self.logged[name] = value

    low, high = BestValue("val/acc", mode="min"), BestValue("val/acc", mode="max")
    stub = Stub()
    for value in (0.5, float("nan"), 0.3, 0.7):
        stub.callback_metrics["val/acc"] = torch.tensor(value)
        for cb in (low, high):
            cb.on_train_epoch_end(stub, stub)  # type: ignore[arg-type]
    assert (low.best, high.best) == (pytest.approx(0.3), pytest.approx(0.7))
    restored = BestValue("val/acc", mode="min")
    restored.load_state_dict(low.state_dict())
    assert restored.best == low.best
    with pytest.raises(ValueError, match="mode"):
        BestValue("val/acc", mode="best")


def test_optimized_metric_default_names_the_best_value():
    conf = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "train.yaml")
    assert conf.optimized_metric == "val/query_loss_best"


def test_without_checkpoints_the_optimized_best_value_is_still_reported(make_cfg):
    cfg = make_cfg("callbacks=none", "trainer.max_epochs=2")
    metrics = train(cfg)
    assert optimized_value(cfg, metrics) == metrics["val/query_loss_best"] <= metrics["val/query_loss"]


def test_run_callbacks_follow_the_checkpoints_and_the_optimized_metric():
    from pytorch_lightning.callbacks import ModelCheckpoint

    from hyperpred.run.fit import CarryResults, run_callbacks

    made = run_callbacks([ModelCheckpoint(monitor="val/loss", mode="min")], "val/pred_accuracy_best")
    best = {cb.monitor: cb.mode for cb in made if isinstance(cb, BestValue)}
    assert best == {"val/loss": "min", "val/pred_accuracy": "max"} and isinstance(made[-1], CarryResults)
    assert [type(cb) for cb in run_callbacks([], "val/query_loss")] == [CarryResults]
