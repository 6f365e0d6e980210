"""Features have the advertised shape and need nothing but the architecture and support data."""

from __future__ import annotations

import pytest
import torch

from hyperpred.factory import build_parts

FAMILIES = {
    "mlp-sine": ["target=mlp", "task=sine"],
    "linear-sinsum": ["target=linear", "task=sinsum"],
    "conv-teacher": [
        "target=conv",
        "task=teacher",
        "target.family.image_size=6",
        "task.n_support=4",
        "task.n_query=4",
        "target.archs=[{in_channels:2,out_channels:3,kernel_size:3},{in_channels:2,out_channels:5,kernel_size:3}]",
    ],
}
FEATURES = ["arch", "activation_stats", "gradient_stats", "oracle", "noise"]


@pytest.mark.parametrize("setup", list(FAMILIES), ids=str)
def test_feature_shapes_and_no_trained_target_needed(make_cfg, setup):
    cfg = make_cfg(*FAMILIES[setup], f"features=[{','.join(FEATURES)}]")
    parts = build_parts(cfg)
    family, task, container = parts.family, parts.task, parts.container
    # fresh, untrained tasks: the batch has no trained (or even initial) parameters in it
    archs = torch.tensor([list(parts.archs[i % len(parts.archs)]) for i in range(6)])
    batch = task.sample(family, archs, container, torch.Generator().manual_seed(3)).as_dict()
    batch.update(archs=archs, index=torch.arange(6))
    assert not {"params", "init"} & batch.keys()
    values = parts.features.compute(batch)
    assert values.shape == (6, parts.features.dim)
    assert torch.isfinite(values).all()
    start = 0
    for name, dim in parts.features.dims.items():
        block = parts.features.features[name](batch)
        assert block.shape == (6, dim), name
        torch.testing.assert_close(values[:, start : start + dim], block.float())
        start += dim


def test_data_features_tell_tasks_apart_and_noise_is_per_target(make_cfg):
    parts = build_parts(make_cfg("features=[activation_stats,gradient_stats,noise]"))
    archs = torch.tensor([[16]] * 4)
    batch = parts.task.sample(parts.family, archs, parts.container, torch.Generator().manual_seed(0)).as_dict()
    batch.update(archs=archs, index=torch.tensor([0, 1, 2, 0]))
    feats = parts.features.features
    act, grad, noise = feats["activation_stats"](batch), feats["gradient_stats"](batch), feats["noise"](batch)
    assert not torch.allclose(act[0], act[1]) and not torch.allclose(grad[0], grad[1])
    assert torch.equal(noise[0], noise[3]) and not torch.equal(noise[0], noise[1])


def test_gradient_feature_is_the_probe_gradient(make_cfg):
    """Checked against autograd on the probe as an nn.Module, one task at a time."""
    parts = build_parts(make_cfg("target=linear", "task=sinsum", "features=[gradient_stats]"))
    family, ctx = parts.family, parts.features.ctx
    archs = torch.tensor([list(parts.archs[0])] * 2)
    batch = parts.task.sample(family, archs, parts.container, torch.Generator().manual_seed(0)).as_dict()
    batch["archs"] = archs
    got = parts.features.features["gradient_stats"](batch)
    module = family.to_module(ctx.probe_arch, {k: v[0] for k, v in ctx.probe_params.items()})
    loss = torch.nn.functional.mse_loss(module(batch["support_x"][1]), batch["support_y"][1])
    loss.backward()
    expected = torch.cat([module.weight.grad.flatten(), module.bias.grad, loss.detach().view(1)])
    torch.testing.assert_close(got[1], expected, rtol=1e-5, atol=1e-6)
