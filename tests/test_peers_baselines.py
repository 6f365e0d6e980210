"""Each peer baseline on a case where a broken implementation gives a different answer."""

from __future__ import annotations

import math

import pytest
import torch

from hyperpred.errors import ConfigError
from hyperpred.evaluation.peers.cnp import CNP, cnp_query_loss, train_cnp
from hyperpred.evaluation.peers.curves import finetune_curve
from hyperpred.evaluation.peers.episodes import EpisodeSource, fresh_episodes
from hyperpred.evaluation.peers.maml import MAML, MAMLConfig
from hyperpred.evaluation.peers.memorization import function_distances, memorization_summary
from hyperpred.evaluation.peers.nearest import nearest_by_features, nearest_by_function
from hyperpred.evaluation.peers.nets import FamilyNet, StackedMLP, build_net
from hyperpred.targets.mlp import MLPFamily
from hyperpred.tasks.sine import SineTask

FAMILY, CONTAINER = MLPFamily(), (16,)


def _sine_split(n: int, seed: int, k: int = 10) -> dict[str, torch.Tensor]:
    task = SineTask(n_support=k, n_query=50)
    archs = torch.full((n, 1), CONTAINER[0])
    return {"archs": archs, **fresh_episodes(task, FAMILY, archs, CONTAINER, torch.Generator().manual_seed(seed))}


def _mean_function_loss(test: dict[str, torch.Tensor]) -> float:
    """Query MSE of the best task-independent function, E[a] E[sin(x + phase)] = 2.55 * (2 / pi) * cos(x)."""
    guess = 2.55 * (2 / math.pi) * torch.cos(test["query_x"])
    return (guess - test["query_y"]).square().mean().item()


def test_maml_adapted_loss_falls_with_steps_and_beats_an_untrained_init():
    torch.manual_seed(0)
    task = SineTask(n_support=10, n_query=50)
    source = EpisodeSource(_sine_split(400, 0), FAMILY, task, CONTAINER, fresh=True)
    test = _sine_split(200, 1)
    args = (test["support_x"], test["support_y"], test["query_x"], test["query_y"], [0, 1, 10])
    net = StackedMLP([1, 40, 40, 1], task)
    untrained = MAML(net, MAMLConfig(steps=0)).evaluate(*args)
    maml = MAML(net, MAMLConfig(steps=300, first_order=False))
    maml.train(source)
    res = {k: v["loss"].mean().item() for k, v in maml.evaluate(*args).items()}
    assert res[10] < res[1] < res[0]
    assert res[10] < 0.7 * untrained[10]["loss"].mean().item()  # meta-training, not just the 10 steps, helps
    assert res[0] < 1.2 * _mean_function_loss(test)  # the unadapted init is about the mean function


def test_first_order_maml_learns_too():
    task = SineTask(n_support=10, n_query=50)
    source = EpisodeSource(_sine_split(400, 0), FAMILY, task, CONTAINER)
    test = _sine_split(200, 1)
    net = build_net([1, 40, 40, 1], FAMILY, task, CONTAINER)
    assert isinstance(build_net("family", FAMILY, task, CONTAINER), FamilyNet)  # the run's own family
    args = (test["support_x"], test["support_y"], test["query_x"], test["query_y"], [10])
    before = MAML(net, MAMLConfig(steps=0)).evaluate(*args)[10]["loss"].mean()
    maml = MAML(net, MAMLConfig(steps=300, first_order=True))
    maml.train(source)
    assert maml.evaluate(*args)[10]["loss"].mean() < 0.8 * before


def test_cnp_beats_the_mean_function_after_a_short_training():
    torch.manual_seed(0)
    task = SineTask(n_support=10, n_query=50)
    source = EpisodeSource(_sine_split(400, 0), FAMILY, task, CONTAINER, fresh=True)
    test = _sine_split(200, 1)
    model = CNP(1, 1, width=64)
    train_cnp(model, task, source, steps=750, meta_batch=25, lr=1e-3, seed=0)
    loss, acc = cnp_query_loss(model, task, test)
    assert acc is None
    assert loss.mean().item() < 0.6 * _mean_function_loss(test)


def _targets(n: int, seed: int) -> torch.Tensor:
    archs = torch.full((n, 1), CONTAINER[0])
    return FAMILY.flatten(FAMILY.init(archs, CONTAINER, torch.Generator().manual_seed(seed))) * 3


def test_nearest_returns_the_true_nearest_on_a_constructed_case():
    train = _targets(50, 0)
    archs = torch.full((50, 1), CONTAINER[0])
    pick = torch.tensor([7, 31, 7, 0])
    x = torch.linspace(-5, 5, 40).view(1, 40, 1).expand(4, -1, -1).contiguous()
    # support data made by training targets 7, 31, 7, 0 (slightly perturbed): each is its own nearest
    y = FAMILY.forward(FAMILY.unflatten(train[pick], CONTAINER), x, archs[:4]) + 0.01 * torch.randn(4, 40, 1)
    found = nearest_by_function(FAMILY, SineTask(), CONTAINER, train, archs, x, y, chunk=3)
    assert found.tolist() == pick.tolist()
    feats = torch.randn(50, 5)
    assert nearest_by_features(feats, feats[pick] + 1e-3).tolist() == pick.tolist()


def test_memorization_share_is_one_for_copies_and_zero_for_own_targets():
    train, own = _targets(40, 0), _targets(20, 1)
    archs = torch.full((20, 1), CONTAINER[0])
    x = torch.rand(20, 30, 1) * 10 - 5
    args = dict(train_flat=train, train_archs=torch.full((40, 1), CONTAINER[0]), x=x, chunk=7)
    copies = train[torch.arange(20) * 2]  # predictions that copy training targets
    d = function_distances(FAMILY, CONTAINER, copies, own, archs, **args)
    s = memorization_summary(d)
    assert s["memorization_share"] == 1.0 and s["closer_to_train_share"] == 1.0
    assert d["nearest"].tolist() == (torch.arange(20) * 2).tolist()
    exact = memorization_summary(function_distances(FAMILY, CONTAINER, own, own, archs, **args))
    assert exact["memorization_share"] == 0.0 and exact["closer_to_train_share"] == 0.0
    near = memorization_summary(function_distances(FAMILY, CONTAINER, own + 1e-3, own, archs, **args))
    assert near["closer_to_train_share"] == 0.0


def test_finetune_curve_falls_from_init_and_stays_at_a_solution():
    task = SineTask(n_support=50, n_query=50)
    test = _sine_split(30, 2, k=50)
    net = FamilyNet(FAMILY, task, CONTAINER, torch.full((30, 1), CONTAINER[0]))
    init = torch.stack([net.init(torch.Generator().manual_seed(i)) for i in range(30)])
    curve = finetune_curve(
        net, init, test["support_x"], test["support_y"], test["query_x"], test["query_y"], [0, 1, 10, 100], lr=0.05
    )
    means = [curve[k]["loss"].mean().item() for k in (0, 1, 10, 100)]
    assert means[3] < means[2] < means[0] and means[3] < 0.5 * means[0]


def test_bad_maml_net_is_a_config_error():
    with pytest.raises(ConfigError, match="baselines.maml.net"):
        build_net("conv", FAMILY, SineTask(), CONTAINER)


def test_meta_gradients_match_an_independent_torch_func_computation():
    """Second order: the exact gradient of the post-adaptation query loss; first order: the query gradient at the
    adapted weights, applied to the init (what FOMAML means, not joint training on the query loss)."""
    from torch.func import grad, vmap

    task = SineTask(n_support=10, n_query=20)
    net = StackedMLP([1, 8, 8, 1], task)
    ep = {k: v for k, v in _sine_split(5, 3).items() if k != "archs"}
    ep = {k: v[:, :20] for k, v in ep.items()}

    def task_loss(theta, x, y):
        return net.loss(theta.unsqueeze(0), x.unsqueeze(0), y.unsqueeze(0))[0]

    def adapted(theta, sx, sy):
        return theta - 0.01 * grad(task_loss)(theta, sx, sy)

    def post(theta, sx, sy, qx, qy):
        return task_loss(adapted(theta, sx, sy), qx, qy)

    args = (ep["support_x"], ep["support_y"], ep["query_x"], ep["query_y"])
    for first_order in (False, True):
        maml = MAML(net, MAMLConfig(first_order=first_order, inner_lr=0.01))
        maml.meta_loss(ep).backward()
        theta = maml.init.detach()
        if first_order:
            thetas = vmap(adapted, in_dims=(None, 0, 0))(theta, *args[:2])
            want = vmap(grad(task_loss))(thetas, *args[2:]).mean(0)
        else:
            want = vmap(grad(post), in_dims=(None, 0, 0, 0, 0))(theta, *args).mean(0)
        torch.testing.assert_close(maml.init.grad, want, rtol=1e-4, atol=1e-6)
