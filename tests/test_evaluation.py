"""The evaluation part (hyperpred/evaluation/): a baseline is one class; the module reads declared flags.

A :class:`Baseline` written in this file (one class, nothing else changed) joins the built-in ones
in a real test of a tiny zoo: its per-target losses come out as ``test/zeros_query_loss`` and
``test/ratio_vs_zeros``, and every built-in number stays what it was without it.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor

from hyperpred.errors import ConfigError
from hyperpred.evaluation.baselines import BUILTIN, Baseline, EvalBatch
from hyperpred.evaluation.evaluator import Evaluator
from hyperpred.factory import build_parts
from hyperpred.run.build import build_datamodule, build_model


class ZeroWeights(Baseline):
    """Every weight 0: the target predicts a constant."""

    name = "zeros"

    def per_target(self, tb: EvalBatch) -> dict[str, Tensor]:
        return {"zeros_query_loss": tb.query_loss(torch.zeros_like(tb.pred))}


def _test(model: pl.LightningModule, datamodule) -> dict[str, float]:
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.test(model, datamodule=datamodule, verbose=False)
    return dict(model.test_metrics)


def test_a_new_baseline_is_one_class(make_cfg):
    cfg = make_cfg("finetune.enabled=false")
    dm = build_datamodule(cfg, build_parts(cfg), "test")
    model = build_model(cfg, dm)
    builtin = _test(model, dm)

    model.evaluator = Evaluator(dm.test_split_names, None, (*BUILTIN, ZeroWeights()))
    metrics = _test(model, dm)

    assert {k: v for k, v in metrics.items() if k in builtin} == builtin
    split = dm.splits["test"]
    with torch.no_grad():
        pred = model.query_loss(model.predict(split), split)
        zeros = model.query_loss(torch.zeros(len(split["archs"]), model.hparams.out_dim), split)
    assert metrics["test/zeros_query_loss"] == pytest.approx(zeros.mean().item(), rel=1e-5)
    assert metrics["test/ratio_vs_zeros"] == pytest.approx((pred / zeros).median().item(), rel=1e-4)


def test_width_augment_refuses_a_feature_that_describes_the_architecture(make_cfg):
    cfg = make_cfg("predictor=width_agnostic", "loss.width_augment=true", "features=[arch]")
    dm = build_datamodule(cfg, build_parts(cfg), "fit")
    with pytest.raises(ConfigError, match=r"features\.arch"):
        build_model(cfg, dm)


def test_a_predictor_must_declare_its_flags(make_cfg):
    cfg = make_cfg("predictor._target_=torch.nn.Identity")  # an nn.Module that takes any arguments
    dm = build_datamodule(cfg, build_parts(cfg), "fit")
    with pytest.raises(ConfigError, match="not a hyperpred.predictors.base.Predictor"):
        build_model(cfg, dm)
