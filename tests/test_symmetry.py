"""Permutation symmetry of hidden units: function and canonical form are both invariant."""

from __future__ import annotations

import pytest
import torch

from hyperpred.errors import ConfigError
from hyperpred.factory import build_parts
from hyperpred.lit.datamodule import ZooDataModule
from hyperpred.symmetry import KEYS, canonicalize, canonicalize_flat, permute_units, unit_key
from hyperpred.targets import ConvFamily, MLPFamily, arch_tensor
from hyperpred.units import UnitLayout

CONTAINER = (12,)


def _random_targets(seed: int = 0) -> tuple[MLPFamily, dict[str, torch.Tensor], torch.Tensor]:
    """Three padded MLPs (widths 12, 7, 3) with random weights: distinct sort keys almost surely."""
    family = MLPFamily()
    archs = arch_tensor([[12], [7], [3]])
    g = torch.Generator().manual_seed(seed)
    params = {k: torch.randn(3, *s, generator=g) for k, s in family.param_shapes(CONTAINER).items()}
    mask = family.param_masks(archs, CONTAINER)
    return family, {k: v * mask[k] for k, v in params.items()}, archs


def _permute_real_units(archs: torch.Tensor, seed: int) -> torch.Tensor:
    """A random permutation of each target's real units; padded slots stay where they are."""
    g = torch.Generator().manual_seed(seed)
    perms = []
    for h in archs[:, 0].tolist():  # building the test case only; the code under test is batched
        perms.append(torch.cat([torch.randperm(h, generator=g), torch.arange(h, CONTAINER[0])]))
    return torch.stack(perms)


@pytest.mark.parametrize("key", KEYS)
def test_permuting_hidden_units_keeps_function_and_canonical_form(key):
    family, params, archs = _random_targets()
    layout = UnitLayout(family, CONTAINER)
    permuted = permute_units(layout, params, _permute_real_units(archs, seed=1))
    assert not torch.equal(permuted["w1"], params["w1"])  # the permutation did move units
    x = torch.linspace(-5, 5, 50).view(1, -1, 1).expand(3, -1, -1)
    torch.testing.assert_close(
        family.forward(permuted, x, archs), family.forward(params, x, archs), rtol=1e-5, atol=1e-5
    )
    canon_a = canonicalize(family, params, archs, CONTAINER, key)
    canon_b = canonicalize(family, permuted, archs, CONTAINER, key)
    for name in params:
        assert torch.equal(canon_a[name], canon_b[name]), name
    # the canonical form is the same function, with the real units sorted and the padding left at zero
    torch.testing.assert_close(
        family.forward(canon_a, x, archs), family.forward(params, x, archs), rtol=1e-5, atol=1e-5
    )
    keys = unit_key(layout, canon_a, key)
    for row, h in enumerate(archs[:, 0].tolist()):
        assert torch.all(keys[row, 1:h] >= keys[row, : h - 1])
        assert torch.all(canon_a["w1"][row, h:] == 0) and torch.all(canon_a["w2"][row, :, h:] == 0)


def test_hinge_key_is_the_hinge_position():
    family, params, archs = _random_targets()
    keys = unit_key(UnitLayout(family, CONTAINER), params, "hinge")
    torch.testing.assert_close(keys[0], -params["b1"][0] / params["w1"][0, :, 0])


def test_flat_canonicalization_matches_named():
    family, params, archs = _random_targets()
    flat = canonicalize_flat(family, family.flatten(params), archs, CONTAINER, "hinge")
    assert torch.equal(flat, family.flatten(canonicalize(family, params, archs, CONTAINER, "hinge")))


def test_output_channels_have_no_permutation_symmetry():
    family = ConvFamily(image_size=5)
    container = (2, 4, 3)
    params = {k: torch.randn(1, *s) for k, s in family.param_shapes(container).items()}
    with pytest.raises(ConfigError, match="outputs"):
        canonicalize(family, params, arch_tensor([container]), container, "incoming_norm")


def test_unknown_key_fails_naming_the_config_key(make_cfg):
    with pytest.raises(ValueError, match="loss.canonicalize"):
        from hyperpred.losses import PredictionLoss

        PredictionLoss(canonicalize="alphabetical")


def test_datamodule_canonicalizes_zoo_targets_for_the_weight_loss(make_cfg):
    cfg = make_cfg("loss=weight", "loss.canonicalize=hinge", "zoo.init=random")
    parts = build_parts(cfg)
    dm = ZooDataModule(parts.builder, parts.features, parts.unseen_archs, canonicalize="hinge", **cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    raw = ZooDataModule(parts.builder, parts.features, parts.unseen_archs, **cfg.data)
    raw.prepare_data()
    raw.setup("fit")
    family, container = parts.family, dm.zoo.container
    split, raw_split = dm.splits["train"], raw.splits["train"]
    layout = UnitLayout(family, container)
    keys = unit_key(layout, family.unflatten(split["params"], container), "hinge")
    widths = split["archs"][:, 0]
    alive = torch.arange(container[0]).unsqueeze(0) < widths.unsqueeze(1)
    ordered = (keys[:, 1:] >= keys[:, :-1]) | ~alive[:, 1:]
    assert ordered.all()
    # same functions as the targets as trained
    x = split["query_x"]
    f_canon = family.forward(family.unflatten(split["params"], container), x, split["archs"])
    f_raw = family.forward(family.unflatten(raw_split["params"], container), x, split["archs"])
    torch.testing.assert_close(f_canon, f_raw, rtol=1e-4, atol=1e-4)
