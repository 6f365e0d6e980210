"""The zoo: batched training equals the seed's per-target loop; builds are deterministic and cached."""

from __future__ import annotations

import torch

from hyperpred.factory import build_parts
from hyperpred.targets import MLPFamily, arch_tensor
from hyperpred.tasks import SineTask, TeacherTask
from hyperpred.zoo import TrainRecipe, build_shard, train_targets


def test_batched_adam_equals_one_optimizer_per_target():
    family, task = MLPFamily(), SineTask(n_support=20, n_query=5)
    archs = [(4,), (7,), (5,)]
    container = family.container(archs)
    table = arch_tensor(archs)
    g = torch.Generator().manual_seed(0)
    batch = task.sample(family, table, container, g)
    init = family.init(table, container, g)
    result = train_targets(
        family, task, table, container, init, batch.support_x, batch.support_y, TrainRecipe(steps=30, lr=0.01)
    )
    for i, arch in enumerate(archs):  # the seed's way, one module and one Adam per target
        module = family.to_module(arch, {k: v[i] for k, v in init.items()})
        opt = torch.optim.Adam(module.parameters(), lr=0.01)
        for _ in range(30):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(module(batch.support_x[i]), batch.support_y[i])
            loss.backward()
            opt.step()
        _, trained = family.from_module(module)
        for k, v in family.pad(trained, container).items():
            torch.testing.assert_close(result.params[k][i], v, rtol=1e-4, atol=1e-5)


def test_same_spec_gives_identical_tensors(make_cfg):
    parts = build_parts(make_cfg())
    a, _ = build_shard(parts.family, parts.task, parts.spec, 1)
    b, _ = build_shard(parts.family, parts.task, parts.spec, 1)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    c, _ = build_shard(parts.family, parts.task, parts.spec, 0)
    assert not torch.equal(a["support_x"], c["support_x"]), "shards must differ from each other"


def test_second_request_loads_the_cache_and_trains_nothing(make_cfg):
    cfg = make_cfg()
    zoo1, stats1 = build_parts(cfg).builder.get()
    assert not stats1.loaded_from_cache and stats1.targets_trained == cfg.zoo.num_targets
    zoo2, stats2 = build_parts(cfg).builder.get()
    assert stats2.loaded_from_cache and stats2.targets_trained == 0
    for k in zoo1.tensors:
        assert torch.equal(zoo1.tensors[k], zoo2.tensors[k]), k
    assert (zoo2.folder / "manifest.json").exists()


def test_shared_init_is_one_init_per_architecture(make_cfg):
    parts = build_parts(make_cfg("zoo.init=shared"))
    t, _ = build_shard(parts.family, parts.task, parts.spec, 0)
    for arch in t["archs"].unique(dim=0):
        rows = (t["archs"] == arch).all(1)
        assert (t["init"][rows] == t["init"][rows][0]).all()
    parts = build_parts(make_cfg("zoo.init=random"))
    t, _ = build_shard(parts.family, parts.task, parts.spec, 0)
    rows = (t["archs"] == t["archs"][0]).all(1)
    assert rows.sum() > 1 and not (t["init"][rows] == t["init"][rows][0]).all()


def test_trained_targets_beat_their_init_on_query_data():
    family, task = MLPFamily(), TeacherTask(n_support=50, n_query=50)
    table = arch_tensor([(8,)] * 16)
    g = torch.Generator().manual_seed(0)
    batch = task.sample(family, table, (8,), g)
    init = family.init(table, (8,), g)
    result = train_targets(
        family, task, table, (8,), init, batch.support_x, batch.support_y, TrainRecipe(steps=200, lr=0.01)
    )
    before = task.loss(family.forward(init, batch.query_x, table), batch.query_y)
    after = task.loss(family.forward(result.params, batch.query_x, table), batch.query_y)
    assert (after < before).float().mean() > 0.9
