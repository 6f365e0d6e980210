"""target=sequential: a YAML layer list as a ModuleFamily, exact against its own nn.Sequential."""

from __future__ import annotations

import pytest

from hyperpred.factory import build_parts
from hyperpred.targets import SequentialFamily
from hyperpred.train import train
from tests.test_module_family import assert_padded_forward_exact

MLP2 = [{"linear": "hidden1"}, "relu", {"linear": "hidden2"}, "relu", {"linear": 1}]
CNN = [
    {"conv2d": "c1", "kernel_size": 3, "padding": 1},
    "relu",
    {"maxpool2d": 2},
    {"conv2d": "c2", "kernel_size": 3, "padding": 1},
    "relu",
    "global_avgpool",
    {"linear": "classes"},
]


def test_mlp2_mixed_widths_exact():
    family = SequentialFamily(MLP2, [1])
    assert family.arch_fields == ("hidden1", "hidden2")
    assert family.num_params((40, 40)) == 2 * 40 + 40 * 41 + 41
    assert_padded_forward_exact(family, [(40, 40), (24, 24), (8, 40), (33, 5)])


def test_cnn_layer_list_with_norms_exact():
    layers = [*CNN[:2], "batchnorm", *CNN[2:]]
    family = SequentialFamily(layers, [1, 8, 8])
    assert family.output_shape((4, 6, 3)) == (3,)
    assert_padded_forward_exact(family, [(2, 3, 2), (4, 6, 3), (3, 2, 3)])


def test_width_zero_drops_a_layer_but_depth_cannot_mix_within_a_run():
    family = SequentialFamily(MLP2, [1])
    arch = family.arch_from_mapping({"hidden1": 8, "hidden2": 0})
    assert arch == (8, 0) and family.num_params(arch) == 8 + 8 + 8 + 1
    assert_padded_forward_exact(family, [(8, 0), (3, 0)])
    with pytest.raises(ValueError, match="'hidden2' is 0"):
        family.container([(8, 0), (8, 8)])


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ([{"linear": "h"}, "swish"], r"layers\[1\]='swish' is not a layer"),
        ([{"linear": "h", "bias": False}], r"layers\[0\]: unknown keys \['bias'\]"),
        ([{"linear": 1}], "names no width"),
    ],
)
def test_bad_layer_lists_name_the_entry(layers, match):
    with pytest.raises(ValueError, match=match):
        SequentialFamily(layers, [1])


def test_layernorm_over_a_varying_width_is_refused():
    family = SequentialFamily([{"linear": "h"}, "layernorm", "relu", {"linear": 1}], [1])
    with pytest.raises(ValueError, match="LayerNorm.*fixed_fields"):
        family.container([(4,), (6,)])


def test_target_sequential_trains_through_config_with_a_width_agnostic_layer(make_cfg):
    # the existing decoder generates one width field's units (here the second hidden layer); the
    # other widths are padded like any flat vector (predictor=mlp: tests/test_module_family.py)
    cfg = make_cfg(
        "target=sequential",
        "target.archs=[{hidden1:8,hidden2:16},{hidden1:16,hidden2:8}]",
        "target.unseen_archs=[{hidden1:16,hidden2:24}]",
        "task=sine",
        "predictor=width_agnostic",
        "predictor.width_field=hidden2",
    )
    parts = build_parts(cfg)
    assert parts.container == (16, 24) and parts.family.name == "sequential"
    metrics = train(cfg)
    assert 0 < metrics["test_unseen_arch/pred_query_loss"] < float("inf")


def test_layer_by_layer_canonicalization_of_a_two_hidden_layer_network():
    import torch

    from hyperpred.predictors.units import UnitLayout
    from hyperpred.symmetry import canonicalize_layers, hidden_width_fields, permute_units
    from hyperpred.targets import arch_tensor

    family = SequentialFamily(MLP2, [1])
    archs = [(6, 5), (4, 5), (6, 3)]
    container, a = family.container(archs), arch_tensor(archs)
    assert hidden_width_fields(family, container) == ["hidden1", "hidden2"]
    params = family.init(a, container, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    shuffled = params
    for field, index in (("hidden1", 0), ("hidden2", 1)):  # a random permutation of each target's real units
        layout = UnitLayout(family, container, field)
        keys = torch.rand(len(archs), container[index], generator=g)
        keys = torch.where(torch.arange(container[index]) < a[:, index : index + 1], keys, torch.tensor(2.0))
        shuffled = permute_units(layout, shuffled, keys.argsort(1))
    x = torch.randn(len(archs), 9, 1, generator=g)
    torch.testing.assert_close(family.forward(shuffled, x), family.forward(params, x))  # same functions
    assert not torch.equal(family.flatten(shuffled), family.flatten(params))
    one, two = canonicalize_layers(family, params, a, container), canonicalize_layers(family, shuffled, a, container)
    torch.testing.assert_close(family.flatten(one), family.flatten(two))
    torch.testing.assert_close(family.forward(one, x), family.forward(params, x))
