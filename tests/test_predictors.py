"""Predictors: the set encoder's invariance, the width-agnostic decoder at widths never seen."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hyperpred.errors import ConfigError
from hyperpred.predictors import MLPPredictor, SetEncoder, UnitLayout, WidthAgnosticDecoder, build_predictor
from hyperpred.targets import ConvFamily, LinearFamily, MLPFamily, arch_tensor
from hyperpred.train import train
from tests.conftest import compose_config


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_set_encoder_ignores_the_order_of_support_pairs(pooling):
    torch.manual_seed(0)
    enc = SetEncoder(x_dim=1, y_dim=1, out_dim=8, hidden=(16, 16), pooling=pooling, x_fourier=4).eval()
    x, y = torch.randn(3, 20, 1), torch.randn(3, 20, 1)
    perm = torch.randperm(20)
    torch.testing.assert_close(enc(x, y), enc(x[:, perm], y[:, perm]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(enc(x, y)[0], enc(x, -y)[0])  # it does look at y


@pytest.mark.parametrize("name", ["mlp", "set_mlp", "width_agnostic", "set_width_agnostic"])
def test_every_predictor_config_builds_with_sizes_from_the_data(tmp_path, name):
    cfg = compose_config([f"predictor={name}"], tmp_path)
    family = instantiate(cfg.target.family)
    container = (32,)
    out_dim = family.num_params(container)
    pred = build_predictor(
        OmegaConf.to_container(cfg.predictor, resolve=True),
        in_dim=5,
        out_dim=out_dim,
        family=family,
        container=container,
    )
    batch = {"archs": arch_tensor([[8], [32]]), "support_x": torch.randn(2, 10, 1), "support_y": torch.randn(2, 10, 1)}
    assert pred(torch.randn(2, 5), batch, container).shape == (2, out_dim)


def _decoder(container=(32,), **kw) -> tuple[MLPFamily, WidthAgnosticDecoder]:
    torch.manual_seed(0)
    family = MLPFamily()
    dec = WidthAgnosticDecoder(
        in_dim=3, out_dim=family.num_params(container), family=family, container=container, **kw
    ).eval()
    with torch.no_grad():  # the output layers start at zero (the grid template): move them like training would
        for head in (dec.unit_head, dec.shared_head):
            head.weight.normal_(0, 0.1)
            head.bias.normal_(0, 0.1)
    return family, dec


def test_decoder_gives_valid_parameters_for_a_width_never_seen():
    family, dec = _decoder(container=(32,))
    archs = arch_tensor([[100], [57]])
    container = (128,)  # four times the container it was built with
    with torch.no_grad():
        flat = dec(torch.randn(2, 3), {"archs": archs}, container)
    assert flat.shape == (2, family.num_params(container))
    assert torch.isfinite(flat).all()
    params = family.unflatten(flat, container)
    mask = family.param_masks(archs, container)
    for name, p in params.items():
        assert torch.all(p[~mask[name]] == 0), f"{name}: padding must stay zero"
        assert p[mask[name]].abs().sum() > 0, f"{name}: real units must be generated"
    # a real nn.Module of the never-seen width computes what the functional forward says
    model = family.to_module((100,), {k: v[0] for k, v in params.items()})
    x = torch.linspace(-5, 5, 33).view(-1, 1)
    torch.testing.assert_close(
        model(x), family.forward(params, x.unsqueeze(0).expand(2, -1, -1), archs)[0], rtol=1e-5, atol=1e-5
    )


def test_mean_field_decoding_converges_as_width_grows():
    """With 1/H output scaling the predicted function is a Riemann sum: wide nets agree."""
    family, dec = _decoder()
    z = torch.randn(1, 3)
    x = torch.linspace(-5, 5, 64).view(1, -1, 1)

    def function(h: int) -> torch.Tensor:
        archs = arch_tensor([[h]])
        with torch.no_grad():
            flat = dec(z, {"archs": archs}, (h,))
        return family.forward(family.unflatten(flat, (h,)), x, archs)

    f256, f512, f1024 = function(256), function(512), function(1024)
    scale = f1024.abs().mean()
    assert (f512 - f1024).abs().mean() < 0.05 * scale
    assert (f512 - f1024).abs().mean() < (f256 - f1024).abs().mean()


def test_decoder_refuses_a_container_that_changes_a_fixed_field():
    family = ConvFamily(image_size=5)
    container = (2, 4, 3)
    dec = WidthAgnosticDecoder(in_dim=2, out_dim=family.num_params(container), family=family, container=container)
    with pytest.raises(ConfigError, match="in_channels"):
        dec(torch.randn(1, 2), {"archs": arch_tensor([[3, 4, 3]])}, (3, 4, 3))


def test_unit_layouts_are_read_off_the_shapes():
    mlp = UnitLayout(MLPFamily(), (16,))
    assert mlp.hidden and {t.name: t.axis for t in mlp.tensors} == {"w1": 0, "b1": 0, "w2": 1, "b2": None}
    assert [t.name for t in mlp.tensors if mlp.fan_in(t)] == ["w2"]
    conv = UnitLayout(ConvFamily(image_size=5), (2, 4, 3))
    assert not conv.hidden and conv.width_field == "out_channels" and conv.unit_size == 2 * 3 * 3 + 1
    linear = UnitLayout(LinearFamily(), (10, 5))
    assert not linear.hidden and linear.shared_size == 0
    # output channels get index coordinates and no mean-field scaling by default
    dec = WidthAgnosticDecoder(
        in_dim=2, out_dim=LinearFamily().num_params((10, 5)), family=LinearFamily(), container=(10, 5)
    )
    assert dec.coordinate == "index" and not dec.mean_field


def test_mlp_predictor_starts_at_the_zoo_mean():
    pred = MLPPredictor(in_dim=4, out_dim=7)
    assert torch.all(pred(torch.randn(3, 4)) == 0)


def test_trained_module_predicts_beyond_its_container_only_when_width_agnostic(tmp_path):
    """A real tiny run on widths 4 and 8; the checkpoint then serves width 40 (5x the container)."""
    common = ["target.archs=[{hidden:4},{hidden:8}]", "loss=functional", "trainer.max_epochs=3"]
    cfg = compose_config([*common, "predictor=set_width_agnostic"], tmp_path / "wa")
    metrics = train(cfg)
    assert metrics["test/pred_query_loss"] == metrics["test/pred_query_loss"]
    from hyperpred.lit.module import WeightPredictionModule

    module = WeightPredictionModule.load_from_checkpoint(f"{cfg.paths.output_dir}/checkpoints/last.ckpt").eval()
    assert module.container == (8,)
    n = 3
    batch = {
        "features": torch.randn(n, module.hparams.in_dim),
        "archs": arch_tensor([[40]] * n),
        "support_x": torch.rand(n, 100, 1) * 10 - 5,
        "support_y": torch.randn(n, 100, 1),
    }
    with torch.no_grad():
        flat = module.predict(batch, container=(40,))
    assert flat.shape == (n, module.family.num_params((40,))) and torch.isfinite(flat).all()

    cfg = compose_config([*common, "predictor=mlp", "trainer.max_epochs=1"], tmp_path / "mlp")
    train(cfg)
    mlp_module = WeightPredictionModule.load_from_checkpoint(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")
    batch["features"] = torch.randn(n, mlp_module.hparams.in_dim)
    with pytest.raises(ConfigError, match="width-agnostic"):
        mlp_module.predict(batch, container=(40,))
