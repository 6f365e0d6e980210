"""Every bad input of docs/robustness.md, fed through the real entry point, with its message.

Config cases compose the real Hydra config and call ``train(cfg)``, which validates before any
work: the test also checks that nothing was built. Cases Hydra handles before our code runs
(unknown groups, typos, empty sweeps) run ``scripts/train.py`` in a subprocess and check that
stderr explains the problem in one line, without a traceback.

``python -m tests.test_robustness`` prints the markdown table of docs/robustness.md, with the
messages produced by running each case.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from hyperpred.errors import HyperpredError
from hyperpred.factory import build_parts
from hyperpred.train import train
from tests.conftest import compose_config, run_script


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    overrides: tuple[str, ...]
    expect: tuple[str, ...]  # fragments the message must contain
    subprocess: bool = False
    multirun: bool = False
    extra: dict = field(default_factory=dict)


CONFIG_CASES = [
    Case(
        "unknown_family_group",
        "unknown target family",
        ("target=resnet",),
        ("target/resnet", "Available options", "mlp"),
        subprocess=True,
    ),
    Case(
        "unknown_task_group",
        "unknown task",
        ("task=mnist",),
        ("task/mnist", "Available options", "sine"),
        subprocess=True,
    ),
    Case("unknown_key", "misspelt key", ("zoo.num_target=5",), ("zoo.num_target",), subprocess=True),
    Case(
        "family_not_importable",
        "family class that does not exist",
        ("target.family._target_=hyperpred.targets.ResNetFamily",),
        ("target.family", "ResNetFamily"),
    ),
    Case(
        "width_zero",
        "hidden width 0",
        ("target.archs=[{hidden:0}]",),
        ("target.archs[0]", "hidden", "positive integer"),
    ),
    Case("width_float", "hidden width 1.5", ("target.archs=[{hidden:1.5}]",), ("target.archs[0]", "hidden", "1.5")),
    Case(
        "arch_wrong_keys",
        "architecture with another family's keys",
        ("target.archs=[{out_channels:4}]",),
        ("target.archs[0]", "hidden", "out_channels"),
    ),
    Case(
        "channels_negative",
        "conv out_channels -2",
        ("target=conv", "task=teacher", "target.archs=[{in_channels:3,out_channels:-2,kernel_size:3}]"),
        ("target.archs[0]", "out_channels"),
    ),
    Case(
        "kernel_too_big",
        "kernel larger than the image",
        ("target=conv", "task=teacher", "target.archs=[{in_channels:3,out_channels:4,kernel_size:12}]"),
        ("kernel_size 12", "image_size 10"),
    ),
    Case(
        "kernel_mixed",
        "two kernel sizes in one run",
        (
            "target=conv",
            "task=teacher",
            "target.archs=[{in_channels:3,out_channels:4,kernel_size:3},{in_channels:3,out_channels:4,kernel_size:5}]",
        ),
        ("kernel_size", "[3, 5]"),
    ),
    Case(
        "image_size_zero",
        "conv image_size 0",
        ("target=conv", "task=teacher", "target.family.image_size=0"),
        ("target.family.image_size", "positive integer"),
    ),
    Case("n_support_zero", "0 support samples", ("task.n_support=0",), ("task.n_support=0", "positive integer")),
    Case("num_targets_zero", "zoo of 0 targets", ("zoo.num_targets=0",), ("zoo.num_targets=0", "positive integer")),
    Case("num_targets_text", "zoo size 'many'", ("zoo.num_targets=many",), ("zoo.num_targets='many'",)),
    Case("steps_float", "2.5 Adam steps", ("zoo.steps=2.5",), ("zoo.steps=2.5", "integer")),
    Case(
        "zoo_init_unknown", "unknown init scheme", ("zoo.init=orthogonal",), ("zoo.init='orthogonal'", "shared, random")
    ),
    Case(
        "range_reversed", "amplitude range high < low", ("task.amplitude=[5.0,0.1]",), ("task.amplitude", "low <= high")
    ),
    Case(
        "fractions_too_big",
        "val + test fractions >= 1",
        ("data.val_fraction=0.6", "data.test_fraction=0.5"),
        ("data.val_fraction + data.test_fraction",),
    ),
    Case(
        "conv_on_sine",
        "conv target on 1-D sine data",
        ("target=conv", "task=sine"),
        ("task=sine does not fit target=conv",),
    ),
    Case(
        "conv_on_sinsum",
        "conv target on sinsum vectors",
        ("target=conv", "task=sinsum"),
        ("task=sinsum does not fit target=conv",),
    ),
    Case(
        "predictor_out_dim",
        "predictor output size typed by hand",
        ("predictor.out_dim=10",),
        ("predictor.out_dim=10", "97"),
    ),
    Case(
        "predictor_in_dim",
        "predictor input size typed by hand",
        ("features=[arch]", "predictor.in_dim=7"),
        ("predictor.in_dim=7", "(1)"),
    ),
    Case(
        "noise_size_zero",
        "noise feature of size 0",
        ("features=[noise]", "features.noise.size=0"),
        ("features.noise.size=0",),
    ),
    Case("no_features", "no conditioning at all", ("features=[]",), ("features", "missing")),
    Case(
        "probe_outputs",
        "probe network with other outputs than the data",
        ("target=linear", "task=sinsum", "target.probe_arch={in_features:10,out_features:3}"),
        ("target.probe_arch",),
    ),
    Case(
        "unseen_overlap",
        "unseen architectures that are also trained",
        ("target.unseen_archs=[{hidden:8},{hidden:48}]",),
        ("target.unseen_archs overlaps target.archs", "hidden': 8"),
    ),
    Case(
        "max_targets",
        "absurd zoo size",
        ("zoo.num_targets=5000000",),
        ("zoo.num_targets=5000000", "zoo.max_targets=1000000"),
    ),
    Case(
        "ckpt_missing",
        "ckpt_path that does not exist",
        ("ckpt_path=/nonexistent/last.ckpt",),
        ("ckpt_path=/nonexistent/last.ckpt", "no such checkpoint"),
    ),
    Case(
        "empty_sweep",
        "sweep with no values",
        ("seed=range(0,0)",),
        ("empty sweep", "seed=range(0,0)"),
        subprocess=True,
        multirun=True,
    ),
    Case(
        "empty_optuna",
        "Optuna sweep of 0 trials",
        ("hparams_search=optuna", "hydra.sweeper.n_trials=0"),
        ("empty sweep", "n_trials=0"),
        subprocess=True,
        multirun=True,
    ),
]


def _subprocess_message(case: Case, tmp_path: Path) -> str:
    args = (["-m"] if case.multirun else []) + list(case.overrides) + ["logger=none"]
    proc = run_script("train.py", *args, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0, f"{case.id} did not fail:\n{proc.stdout[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip()


def _compose_message(case: Case, tmp_path: Path) -> str:
    with pytest.raises(HyperpredError) as err:
        train(compose_config(case.overrides, tmp_path))
    assert not (tmp_path / "cache").exists(), "the config must be refused before any zoo is built"
    return str(err.value)


def message_of(case: Case, tmp_path: Path) -> str:
    return _subprocess_message(case, tmp_path) if case.subprocess else _compose_message(case, tmp_path)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda c: c.id)
def test_bad_config_is_refused_with_a_message_naming_it(case, tmp_path):
    message = message_of(case, tmp_path)
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# ---------------------------------------------------------------------- checkpoints
def _tiny_checkpoint(tmp_path: Path, *overrides: str) -> Path:
    cfg = compose_config(["trainer.max_epochs=1", *overrides], tmp_path / "first")
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def test_truncated_checkpoint_is_named(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path)
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(ckpt.read_bytes()[:2000])
    with pytest.raises(HyperpredError, match=r"ckpt_path=.*truncated.ckpt: not a readable checkpoint"):
        train(compose_config([f"ckpt_path={bad}"], tmp_path / "second"))


def test_checkpoint_of_another_family_is_refused(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path, "target=linear", "task=sinsum")
    with pytest.raises(
        HyperpredError, match=r"last.ckpt: the checkpoint was trained with target.family .*LinearFamily.*MLPFamily"
    ):
        train(compose_config([f"ckpt_path={ckpt}"], tmp_path / "second"))


# ---------------------------------------------------------------------- numerical failures
def test_nan_loss_stops_with_last_good_checkpoint(tmp_path):
    cfg = compose_config(["optimizer.lr=1e30"], tmp_path)
    with pytest.raises(HyperpredError, match="training loss is nan.*last good state is saved in") as err:
        train(cfg)
    saved = Path(str(err.value).split("saved in ")[1].split(";")[0])
    state = torch.load(saved, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values()), "the saved state must be the last good one"


def test_diverged_zoo_targets_are_recorded_and_excluded(tmp_path):
    # amplitudes up to 4e19: the squared error of the larger ones overflows float32
    cfg = compose_config(["task.amplitude=[0.1,4e19]", "zoo.steps=3"], tmp_path)
    parts = build_parts(cfg)
    zoo, _ = parts.builder.get()
    diverged = int((~zoo.tensors["finite"]).sum())
    assert 0 < diverged < len(zoo) and zoo.manifest["num_diverged"] == diverged
    from hyperpred.lit.datamodule import ZooDataModule

    dm = ZooDataModule(parts.builder, parts.features, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    kept = torch.cat([split["index"] for split in dm.splits.values()])
    assert len(kept) == len(zoo) - diverged
    assert zoo.tensors["finite"][kept].all()


# ---------------------------------------------------------------------- zoo files
def _built_zoo(tmp_path: Path):
    parts = build_parts(compose_config([], tmp_path))
    zoo, _ = parts.builder.get()
    return parts, zoo


def test_altered_shard_is_detected_and_rebuilt_never_loaded(tmp_path):
    parts, zoo = _built_zoo(tmp_path)
    shard = zoo.folder / zoo.manifest["shards"][0]["file"]
    original = shard.read_bytes()
    shard.write_bytes(original[: len(original) // 2])  # truncated
    with pytest.raises(HyperpredError, match=rf"{shard.name}: checksum mismatch"):
        parts.builder.load()
    again, stats = build_parts(compose_config([], tmp_path)).builder.get()
    assert stats.targets_trained > 0 and shard.read_bytes() == original


def test_zoo_of_another_format_version_is_named(tmp_path):
    parts, zoo = _built_zoo(tmp_path)
    manifest = zoo.folder / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format_version"] = 0
    manifest.write_text(json.dumps(data))
    with pytest.raises(HyperpredError, match=r"manifest.json: zoo format version 0"):
        parts.builder.load()


def test_zoo_manifest_that_is_not_json_is_named(tmp_path):
    parts, zoo = _built_zoo(tmp_path)
    (zoo.folder / "manifest.json").write_text("{not json")
    with pytest.raises(HyperpredError, match=r"manifest.json: not valid JSON"):
        parts.builder.load()


def _markdown_table() -> str:  # pragma: no cover - documentation helper
    import tempfile

    rows = ["| bad input | overrides | message | test |", "|---|---|---|---|"]
    for case in CONFIG_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                msg = message_of(case, Path(tmp))
            except BaseException as e:  # noqa: BLE001
                msg = f"NOT REFUSED ({e})"
        msg = msg.split("Config search path")[0]  # Hydra's search path lists machine folders
        msg = " ".join(
            w for line in msg.splitlines() if not line.startswith("Set the environment variable") for w in line.split()
        )
        rows.append(
            f"| {case.what} | `{' '.join(case.overrides)}` | {msg.replace('|', '/')} | "
            f"`test_bad_config_is_refused_with_a_message_naming_it[{case.id}]` |"
        )
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(_markdown_table() + "\n")
