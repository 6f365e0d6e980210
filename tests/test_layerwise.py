"""predictor=layerwise: every layer's weights from unit coordinates, for any width of every layer."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from hyperpred.predictors import LayerwiseDecoder
from hyperpred.targets import SequentialFamily
from hyperpred.train import train

MLP2 = [{"linear": "hidden1"}, "relu", {"linear": "hidden2"}, "relu", {"linear": 1}]
CNN = [{"conv2d": "c1", "kernel_size": 3, "padding": 1}, "relu", "global_avgpool", {"linear": "classes"}]


def _decoder(family: SequentialFamily, container: tuple[int, ...], in_dim: int = 5) -> LayerwiseDecoder:
    torch.manual_seed(0)
    return LayerwiseDecoder(in_dim, family.num_params(container), family, container)


def test_output_shape_and_exact_zero_padding_for_mixed_archs():
    family = SequentialFamily(MLP2, [1])
    container = (40, 40)
    decoder = _decoder(family, container)
    archs = torch.tensor([[40, 40], [24, 32], [8, 40], [33, 5]])
    flat = decoder(torch.randn(4, 5), {"archs": archs})
    assert flat.shape == (4, family.num_params(container))
    mask = family.flat_mask(archs, container)
    assert torch.all(flat[~mask] == 0)
    assert torch.all(flat[mask] != 0)  # every real entry is generated
    # a conv layer and a classifier head: kernel offsets enter, shapes still line up
    cnn = SequentialFamily(CNN, [1, 8, 8])
    dec = _decoder(cnn, (6, 3))
    archs = torch.tensor([[6, 3], [4, 2]])
    flat = dec(torch.randn(2, 5), {"archs": archs})
    assert torch.all(flat[~cnn.flat_mask(archs, (6, 3))] == 0)
    conv = cnn.unflatten(flat, (6, 3))["0_conv2d.weight"]
    assert conv.shape == (2, 6, 1, 3, 3) and conv[0, 0, 0].std() > 0  # varies over the kernel offsets


def test_widths_beyond_the_container_keep_the_function_scale():
    family = SequentialFamily(MLP2, [1])
    decoder = _decoder(family, (40, 40))
    z = torch.randn(8, 5)
    x = torch.linspace(-3, 3, 50).view(1, 50, 1).expand(8, -1, -1)
    with torch.no_grad():
        inside = decoder(z, {"archs": torch.tensor([[40, 40]] * 8)})
        wide = decoder(z, {"archs": torch.tensor([[64, 40]] * 8)}, container=(64, 40))
        wider = decoder(z, {"archs": torch.tensor([[64, 96]] * 8)}, container=(64, 96))
    assert wide.shape[1] == family.num_params((64, 40)) and torch.isfinite(wide).all() and torch.isfinite(wider).all()
    y_in = family.forward(family.unflatten(inside, (40, 40)), x)
    shape_in = y_in.std(dim=1).mean()  # how much each predicted function varies over x
    assert shape_in > 0
    for flat, box in ((wide, (64, 40)), (wider, (64, 96))):
        y = family.forward(family.unflatten(flat, box), x)
        ratio = float(y.std(dim=1).mean() / shape_in)
        assert 0.5 < ratio < 2.0, (box, ratio)
        # mean field: the wider network computes nearly the same function, not only one of the same scale
        assert float((y - y_in).abs().mean() / shape_in) < 0.25, box


def test_trains_through_config_and_improves_the_query_loss(make_cfg):
    # small batches: the tiny zoo (96 targets) gives ~20 optimizer steps per epoch
    cfg = make_cfg(
        "target=sequential",
        "target.archs=[{hidden1:8,hidden2:16},{hidden1:16,hidden2:8}]",
        "target.unseen_archs=[{hidden1:24,hidden2:24}]",
        "task=sine",
        "predictor=layerwise",
        "loss=functional",
        "trainer.max_epochs=4",
        "data.batch_size=4",
        "logger=csv",
    )
    metrics = train(cfg)
    (log,) = (Path(cfg.paths.output_dir) / "csv").rglob("metrics.csv")
    losses = [float(r["train/query_loss"]) for r in csv.DictReader(log.open()) if r.get("train/query_loss")]
    assert len(losses) == 4 and losses[-1] < 0.95 * losses[0], losses
    assert metrics["test/pred_query_loss"] < metrics["test/init_query_loss"]  # better than the module's own init
    assert 0 < metrics["test_unseen_arch/pred_query_loss"] < float("inf")
