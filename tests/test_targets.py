"""Each family's batched functional forward is the nn.Module forward, padded or not."""

from __future__ import annotations

import pytest
import torch

from hyperpred.targets import ConvClassifierFamily, ConvFamily, LinearFamily, MLPFamily, arch_tensor

CASES = [
    (MLPFamily(), [(3,), (8,), (5,)]),
    (LinearFamily(), [(6, 2), (6, 4), (6, 3)]),
    (ConvFamily(image_size=7), [(2, 3, 3), (2, 5, 3), (2, 1, 3)]),
    (ConvClassifierFamily(image_size=6), [(2, 3, 3, 2), (2, 5, 3, 4), (2, 1, 3, 3)]),
    (ConvClassifierFamily(image_size=6, padding=0, pool="max"), [(3, 4, 3, 3), (3, 2, 3, 2)]),
]


@pytest.mark.parametrize(("family", "archs"), CASES, ids=lambda v: getattr(v, "name", ""))
def test_functional_forward_equals_module_forward(family, archs):
    g = torch.Generator().manual_seed(0)
    container = family.container(archs)
    table = arch_tensor(archs)
    params = {
        k: v + 0.1 * torch.randn(v.shape, generator=g) * family.param_masks(table, container)[k]
        for k, v in family.init(table, container, g).items()
    }
    x = torch.randn(len(archs), 4, *family.input_shape(container), generator=g)
    batched = family.forward(params, x, table)
    for i, arch in enumerate(archs):
        module = family.to_module(arch, {k: v[i] for k, v in params.items()})
        expected = module(x[i])
        got = batched[i][tuple(slice(0, s) for s in expected.shape)]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        # outputs beyond this target's architecture are switched off, not garbage
        assert got.numel() == expected.numel()
        assert batched[i].abs().sum().item() == pytest.approx(expected.abs().sum().item(), rel=1e-5)


@pytest.mark.parametrize(("family", "archs"), CASES, ids=lambda v: getattr(v, "name", ""))
def test_module_round_trip_and_flat_layout(family, archs):
    container = family.container(archs)
    table = arch_tensor(archs)
    params = family.init(table, container, torch.Generator().manual_seed(1))
    flat = family.flatten(params)
    assert flat.shape == (len(archs), family.num_params(container))
    back = family.unflatten(flat, container)
    for k in params:
        torch.testing.assert_close(back[k], params[k])
    mask = family.flat_mask(table, container)
    assert mask.sum(1).tolist() == [family.num_params(a) for a in archs]
    assert (flat[~mask] == 0).all(), "padding must be zero"
    arch0 = archs[0]
    module = family.to_module(arch0, {k: v[0] for k, v in params.items()})
    arch_read, own = family.from_module(module)
    assert arch_read == arch0
    padded = family.pad(own, container)
    for k in params:
        torch.testing.assert_close(padded[k], params[k][0])


def test_default_init_matches_pytorch_bounds():
    family = MLPFamily()
    table = arch_tensor([(16,)] * 512)
    params = family.init(table, (16,), torch.Generator().manual_seed(0))
    assert params["w1"].abs().max() <= 1.0 and params["w1"].abs().max() > 0.95
    assert params["w2"].abs().max() <= 0.25 + 1e-6 and params["w2"].abs().max() > 0.24


def test_bad_architectures_name_the_field():
    with pytest.raises(ValueError, match="hidden"):
        MLPFamily().arch_from_mapping({"hidden": 0})
    with pytest.raises(ValueError, match="kernel_size"):
        ConvFamily().container([(3, 4, 3), (3, 4, 5)])
