"""The zoo engine in one process: kernels, batched Adam, shard files, the key, repairs.

Subprocess tests (SIGKILL, concurrent builders, multirun builds) are in test_zoo_durability.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hyperpred.errors import ConfigError, ZooFileError
from hyperpred.factory import build_parts
from hyperpred.targets import ConvFamily, LinearFamily, MLPFamily, arch_tensor
from hyperpred.tasks import DigitsTask, SineTask, SinSumTask, TeacherTask
from hyperpred.zoo import TrainRecipe, ZooBuilder, ZooSpec, train_targets
from hyperpred.zoo import training as training_module
from hyperpred.zoo.adam import BatchedAdam
from hyperpred.zoo.kernels import KERNELS, select_kernel
from hyperpred.zoo.store import MANIFEST, read_shard, record_name, sha256_file, shard_name, write_shard

CASES = {
    "mlp-sine": (MLPFamily(), SineTask(n_support=24, n_query=8), [(4,), (7,), (5,)]),
    "mlp-teacher": (MLPFamily(), TeacherTask(n_support=24, n_query=8), [(6,), (3,)]),
    "linear-sinsum": (LinearFamily(), SinSumTask(n_support=16, n_query=8), [(6, 4), (6, 2)]),
    "conv-teacher": (ConvFamily(image_size=7), TeacherTask(n_support=4, n_query=2), [(2, 4, 3), (2, 2, 3)]),
}


def seed_way(family, archs, init, x, y, steps, lr):
    """The seed's training: one module and one torch.optim.Adam per target, in a Python loop."""
    out = []
    for i, arch in enumerate(archs):
        module = family.to_module(arch, {k: v[i] for k, v in init.items()})
        target = y[i][(slice(None), *(slice(0, s) for s in family.output_shape(arch)))]  # its real outputs only
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(module(x[i]), target).backward()
            opt.step()
        out.append(family.pad(family.from_module(module)[1], family.container(archs)))
    return out


def sample(case: str, copies: int = 2, seed: int = 0):
    family, task, archs = CASES[case]
    archs = archs * copies
    container = family.container(archs)
    g = torch.Generator().manual_seed(seed)
    table = arch_tensor(archs)
    return (
        family,
        task,
        archs,
        container,
        table,
        task.sample(family, table, container, g),
        family.init(table, container, g),
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_kernel_matches_the_seed_loop(case):
    family, task, archs, container, table, batch, init = sample(case)
    recipe = TrainRecipe(steps=25, lr=0.01)
    expected = seed_way(family, archs, init, batch.support_x, batch.support_y, recipe.steps, recipe.lr)
    kernels = [name for name, k in KERNELS.items() if k.supports(family, task, recipe, torch.device("cpu"))]
    assert "autograd" in kernels and len(kernels) >= 2, kernels  # every family has a fast kernel besides autograd
    for name in kernels:
        result = train_targets(
            family, task, table, container, init, batch.support_x, batch.support_y, recipe, strategy=name
        )
        assert result.strategy == name
        for i in range(len(archs)):
            for k, v in expected[i].items():
                torch.testing.assert_close(result.params[k][i], v, rtol=1e-4, atol=2e-5, msg=f"{name}: target {i} {k}")


def batched_gemm_matches_single_gemms(targets: int = 12, samples: int = 100, hidden: int = 16) -> bool:
    """Whether this CPU's BLAS gives each slice of a batched GEMM the bits of that slice's own GEMM.

    The kernel's weight gradient ``xᵀ·gpre`` is one batched GEMM; the seed loop calls one GEMM per
    target. Some BLAS builds run batched calls through other micro-kernels (oneAPI MKL 2024 on
    AVX-512 Xeons does), so the same sums round differently in their last bit.
    """
    g = torch.Generator().manual_seed(0)
    x, gpre = torch.randn(targets, samples, 1, generator=g), torch.randn(targets, samples, hidden, generator=g)
    single = torch.stack([x[i].t().mm(gpre[i]) for i in range(targets)])
    return torch.equal(torch.bmm(x.transpose(1, 2), gpre), single)


def test_mlp_kernel_is_bit_identical_to_the_seed_loop(monkeypatch):
    """At the benchmark's sizes (H=16, 100 points) the MLP kernel performs autograd's float32 operations.

    Any other operation (a separate multiply and add, another summation order) leaves weights a
    few ulps apart after one step and chaotic targets 1e-4 apart after 100. With one target per
    chunk every weight must equal the seed loop's to the last bit; a whole chunk must too on a CPU
    whose batched GEMM rounds as its single GEMMs do, and elsewhere differ by that GEMM's rounding
    alone.
    """
    family, task = MLPFamily(), SineTask(n_support=100, n_query=4)
    archs = [(16,)] * 12
    table = arch_tensor(archs)
    g = torch.Generator().manual_seed(5)
    batch, init = task.sample(family, table, (16,), g), family.init(table, (16,), g)
    recipe = TrainRecipe(steps=60, lr=0.01)
    expected = seed_way(family, archs, init, batch.support_x, batch.support_y, recipe.steps, recipe.lr)
    chunk = train_targets(family, task, table, (16,), init, batch.support_x, batch.support_y, recipe)
    monkeypatch.setattr(training_module, "CHUNK_BYTES", 1)  # one target per chunk: per-target GEMMs
    single = train_targets(family, task, table, (16,), init, batch.support_x, batch.support_y, recipe)
    assert chunk.strategy == single.strategy == "mlp_closed"
    exact = batched_gemm_matches_single_gemms()
    for i in range(len(archs)):
        for k, v in expected[i].items():
            assert torch.equal(single.params[k][i], v), f"target {i} {k}: {(single.params[k][i] - v).abs().max():.3e}"
            diff = (chunk.params[k][i] - v).abs().max().item()
            assert diff == 0 if exact else diff <= 1e-5, f"chunked target {i} {k}: max diff {diff:.3e} (exact={exact})"


@pytest.mark.parametrize("case", ["mlp-sine", "linear-sinsum", "conv-teacher"])
def test_minibatch_kernels_agree_and_ignore_chunking(case, monkeypatch):
    family, task, archs, container, table, batch, init = sample(case, copies=3)
    recipe = TrainRecipe(steps=15, lr=0.01, batch_size=3)
    support = (batch.support_x, batch.support_y)
    runs = {}
    for name in [n for n, k in KERNELS.items() if k.supports(family, task, recipe, torch.device("cpu"))]:
        runs[name] = train_targets(
            family, task, table, container, init, *support, recipe, torch.Generator().manual_seed(3), strategy=name
        )
    monkeypatch.setattr(training_module, "CHUNK_BYTES", 1)  # one target per chunk
    chunked = train_targets(
        family, task, table, container, init, *support, recipe, torch.Generator().manual_seed(3), strategy="autograd"
    )
    ref = runs["autograd"]
    for name, result in {**runs, "chunked": chunked}.items():
        for k in ref.params:
            torch.testing.assert_close(result.params[k], ref.params[k], rtol=1e-4, atol=1e-5, msg=f"{name} {k}")


@pytest.mark.parametrize("batch_size", [None, 4])
def test_direct_affine_kernel_handles_cross_entropy(batch_size):
    family, task = LinearFamily(), DigitsTask(n_support=8, n_query=4)
    archs = [(64, 2), (64, 3)] * 2
    container = family.container(archs)
    table = arch_tensor(archs)
    g = torch.Generator().manual_seed(0)
    batch, init = task.sample(family, table, container, g), family.init(table, container, g)
    recipe = TrainRecipe(steps=20, lr=0.01, batch_size=batch_size)
    support = (batch.support_x, batch.support_y)
    runs = [
        train_targets(
            family, task, table, container, init, *support, recipe, torch.Generator().manual_seed(1), strategy=name
        )
        for name in ("affine_direct", "autograd")
    ]
    for k in runs[0].params:
        torch.testing.assert_close(runs[0].params[k], runs[1].params[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(runs[0].train_loss, runs[1].train_loss)


def test_auto_picks_the_closed_forms_and_rejects_unfit_strategies():
    full, mini = TrainRecipe(), TrainRecipe(batch_size=8)
    assert select_kernel(MLPFamily(), SineTask(), full).name == "mlp_closed"
    assert select_kernel(ConvFamily(), TeacherTask(), full).name == "affine_gram"
    assert select_kernel(ConvFamily(), TeacherTask(), mini).name == "affine_gram"
    assert select_kernel(LinearFamily(), SinSumTask(), full).name == "affine_gram"
    assert select_kernel(LinearFamily(), DigitsTask(), full).name == "affine_direct"  # cross-entropy: not quadratic
    with pytest.raises(ConfigError, match="zoo.strategy"):
        select_kernel(MLPFamily(), SineTask(), full, strategy="nope")
    with pytest.raises(ConfigError, match="zoo.strategy=affine_gram"):
        select_kernel(MLPFamily(), SineTask(), full, strategy="affine_gram")
    with pytest.raises(ConfigError, match="zoo.device"):
        select_kernel(MLPFamily(), SineTask(), full, device="nodevice")


def test_factory_fails_early_on_a_bad_strategy(make_cfg):
    with pytest.raises(ConfigError, match="zoo.strategy"):
        build_parts(make_cfg("zoo.strategy=affine_gram"))


def test_batched_adam_is_torch_adam_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(5, 7, generator=g)
    grads = [torch.randn(5, 7, generator=g) * 10.0 ** (-k % 4) for k in range(20)]
    ours = p0.clone()
    adam = BatchedAdam(ours, lr=0.03)
    theirs = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([theirs], lr=0.03)
    for grad in grads:
        adam.step(grad)
        theirs.grad = grad.clone()
        opt.step()
    assert torch.equal(ours, theirs.detach())


def test_shard_files_are_plain_safetensors_with_true_checksums(tmp_path):
    tensors = {
        "b": torch.randn(3, 4),
        "a": torch.arange(5),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 2),
        "s": torch.tensor(1.5),
    }
    record = write_shard(tmp_path, 0, tensors, {"index": 0})
    assert (
        record["sha256"] == sha256_file(tmp_path / shard_name(0))
        and record["bytes"] == (tmp_path / shard_name(0)).stat().st_size
    )
    for loaded in (load_file(tmp_path / shard_name(0)), read_shard(tmp_path, record)):
        assert loaded.keys() == tensors.keys()
        for k, v in tensors.items():
            assert torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype
    assert not list(tmp_path.glob("*.tmp"))


def tiny_builder(tmp_path: Path, **kw) -> ZooBuilder:
    family, task = MLPFamily(), SineTask(n_support=16, n_query=8)
    spec = ZooSpec(
        family=family.describe(),
        task=task.describe(),
        archs=((4,), (6,)),
        container=(6,),
        num_targets=kw.pop("n", 24),
        shard_size=8,
        seed=0,
        init="shared",
        recipe=TrainRecipe(steps=5),
    )
    return ZooBuilder(family, task, spec, tmp_path, **kw)


def zoo_bytes(folder: Path) -> dict[str, bytes]:
    """Every file a reader depends on (shards, records, manifest), by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def test_damaged_shards_are_rebuilt_never_loaded(tmp_path):
    reference = tiny_builder(tmp_path / "a")
    reference.get()
    expected = zoo_bytes(reference.folder)

    builder = tiny_builder(tmp_path / "b")
    builder.get()
    path = builder.folder / shard_name(1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(data))
    (builder.folder / shard_name(2)).write_bytes(expected[shard_name(2)][:100])  # truncated
    with pytest.raises(ZooFileError, match="checksum"):
        builder.load()
    zoo, stats = builder.get()
    assert sorted(stats.shards_trained) == [1, 2] and stats.targets_trained == 16 and not stats.loaded_from_cache
    assert zoo_bytes(builder.folder) == expected
    assert len(zoo) == 24


def test_interrupted_writes_leave_nothing_that_counts(tmp_path):
    reference = tiny_builder(tmp_path / "a")
    reference.get()
    expected = zoo_bytes(reference.folder)

    builder = tiny_builder(tmp_path / "b")
    builder.build([0, 1])
    folder = builder.folder
    (folder / f".{shard_name(2)}.abc123.tmp").write_bytes(b"half a shard")  # writer killed mid-write
    (folder / shard_name(2)).write_bytes(b"renamed, but the record never came")
    (folder / record_name(1)).write_text(
        json.dumps({"index": 1, "file": shard_name(1), "sha256": "0" * 64, "bytes": 1})
    )
    assert builder.missing_shards() == [1, 2]
    stats = builder.build()
    assert stats.shards_trained == [1, 2]
    assert not list(folder.glob("*.tmp"))
    assert builder.assemble_manifest() is not None
    assert zoo_bytes(folder) == expected


def test_shards_built_in_parallel_threads_are_the_same_bytes(tmp_path):
    sequential, parallel = tiny_builder(tmp_path / "a"), tiny_builder(tmp_path / "b")
    assert sequential.build(workers=1).shards_trained == [0, 1, 2]
    threads = torch.get_num_threads()
    stats = parallel.build(workers=3)
    assert stats.shards_trained == [0, 1, 2] and stats.targets_trained == 24
    assert torch.get_num_threads() == threads  # restored after the build
    assert zoo_bytes(sequential.folder) == zoo_bytes(parallel.folder)


def test_a_manifest_waits_for_every_shard(tmp_path):
    builder = tiny_builder(tmp_path)
    builder.build([0, 2])
    assert builder.assemble_manifest() is None and not (builder.folder / MANIFEST).exists()
    zoo, stats = builder.get()  # the next reader builds the rest and writes the manifest
    assert stats.shards_trained == [1] and stats.targets_trained == 8
    manifest = json.loads((builder.folder / MANIFEST).read_text())
    assert [r["index"] for r in manifest["shards"]] == [0, 1, 2] and manifest["key"] == builder.spec.key
    _, again = tiny_builder(tmp_path).get()
    assert again.loaded_from_cache and again.targets_trained == 0


def test_progress_bar_is_quiet_unless_asked(tmp_path, capsys):
    tiny_builder(tmp_path / "quiet", progress=False).build()
    assert capsys.readouterr().out == ""
    tiny_builder(tmp_path / "loud", progress=True).build()
    out = capsys.readouterr().out
    assert "targets/s" in out and "24/24" in out


def key_of(make_cfg, *overrides: str) -> str:
    return build_parts(make_cfg(*overrides)).spec.key


def test_key_changes_with_data_and_only_with_data(make_cfg):
    base = key_of(make_cfg)
    same = [
        "seed=7",
        "logger=csv",
        "predictor.hidden=[32]",
        "loss=weight",
        "trainer.max_epochs=9",
        "data.batch_size=8",
        "optimizer.lr=0.5",
        "zoo.progress=true",
        "zoo.max_targets=5000",
        "zoo.strategy=autograd",
        "zoo.shard_index=1",
        "zoo.num_shards=3",
        "features=[arch]",
        "tags=[other]",
    ]
    for override in same:
        assert key_of(make_cfg, override) == base, f"{override} must not change the zoo key"
    different = [
        "zoo.num_targets=120",
        "zoo.shard_size=24",
        "zoo.seed=1",
        "zoo.init=random",
        "zoo.steps=6",
        "zoo.lr=0.02",
        "zoo.batch_size=10",
        "task.n_support=50",
        "task.amplitude=[1.0,2.0]",
        "task=teacher",
        "target.archs=[{hidden:8}]",
        "target.unseen_archs=[{hidden:40}]",
    ]
    keys = {override: key_of(make_cfg, override) for override in different}
    for override, key in keys.items():
        assert key != base, f"{override} must change the zoo key"
    assert len(set(keys.values())) == len(keys)


def test_key_changes_with_the_format_version(make_cfg, monkeypatch):
    base = key_of(make_cfg)
    monkeypatch.setattr("hyperpred.zoo.spec.FORMAT_VERSION", 999)
    assert key_of(make_cfg) != base
