"""Nothing executes on load: shared files are data, and the classes they name come from the registry.

Each attack is a real crafted file: a predicted target's JSON naming ``pathlib.Path.touch``, a
checkpoint whose hyper-parameters name it, and a checkpoint carrying a pickle payload whose
``__reduce__`` touches a file. Each goes through the real entry point (``load_target``,
``load_predictor``, ``evaluate`` on the composed ``conf/eval.yaml``, ``train`` with ``ckpt_path``
and ``scripts/eval.py`` in a subprocess) and the test asserts that the marker file was not
created and that the error is one line naming the file and the key. Controls show the same files
*do* run their payload when loaded the unsafe way, so these tests can fail.
"""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict
from torch import Tensor

from hyperpred import load_predictor, load_target
from hyperpred.api import save_target
from hyperpred.errors import HyperpredError
from hyperpred.evaluate import evaluate
from hyperpred.features.base import Feature, FeatureBatch
from hyperpred.registry import UntrustedTargetError, register
from hyperpred.run.checkpoint import UntrustedCheckpointError
from hyperpred.targets import LinearFamily
from hyperpred.train import train
from tests.conftest import CONF_DIR, compose_config, run_script


@register("feature")
class SupportMean(Feature):
    """A user's own feature, registered in their code: the mean of each task's support targets."""

    name = "support_mean"

    def dim(self) -> int:
        return 1

    def __call__(self, batch: FeatureBatch) -> Tensor:
        return batch["support_y"].flatten(1).mean(1, keepdim=True)


@register("family")
class UserLinearFamily(LinearFamily):
    """A user's own target family, registered in their code."""


class Payload:
    """Unpickling this runs ``pathlib.Path.touch(path)``: what a malicious checkpoint would carry."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _one_line(message: str, *fragments: str) -> None:
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory) -> Path:
    """A real tiny run whose config adds the user's registered feature (so its checkpoint names it)."""
    root = tmp_path_factory.mktemp("trusted")
    cfg = compose_config(["trainer.max_epochs=1", "+features.support_mean._target_=tests.test_trust.SupportMean"], root)
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def _crafted(good: Path, out: Path, edit) -> Path:
    ckpt = torch.load(good, map_location="cpu", weights_only=True)  # our own files hold plain data only
    edit(ckpt)
    torch.save(ckpt, out)
    return out


def _pickle_payload(good: Path, tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    bad = _crafted(good, tmp_path / "payload.ckpt", lambda c: c["hyper_parameters"].update(family=Payload(marker)))
    return bad, marker


def _named_callable(good: Path, tmp_path: Path, where: str) -> tuple[Path, Path]:
    """A checkpoint of plain data whose hyper-parameters name ``pathlib.Path.touch`` at ``where``."""
    marker = tmp_path / "touched"
    node = {"_target_": "pathlib.Path.touch", "self": str(marker)}

    def edit(ckpt: dict) -> None:
        hp = ckpt["hyper_parameters"]
        if where == "features":
            hp["features"]["support_mean"] = node
        elif where == "run_config":
            hp["run_config"]["target"]["family"] = node
        else:
            hp[where] = node

    return _crafted(good, tmp_path / f"named_{where}.ckpt", edit), marker


def _eval_cfg(ckpt: Path, tmp_path: Path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt_path={ckpt}", "timing=false"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
        cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


# ---------------------------------------------------------------------- predicted targets (JSON)
def test_load_target_refuses_a_json_naming_another_callable(tmp_path):
    family = LinearFamily()
    arch = (3, 2)
    weights, meta = save_target(
        tmp_path / "clf",
        {"_target_": "hyperpred.targets.LinearFamily"},
        family,
        arch,
        family.build_module(arch).state_dict(),
    )
    assert isinstance(load_target(weights), torch.nn.Module)  # the honest file loads
    marker = tmp_path / "touched"
    crafted = {"_target_": "pathlib.Path.touch", "_args_": [str(marker)]}
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "family": crafted}))
    with pytest.raises(UntrustedTargetError) as err:
        load_target(weights)
    assert not marker.exists(), "loading the JSON ran the callable it names"
    _one_line(str(err.value), str(meta), "family._target_='pathlib.Path.touch'", "not a registered family")
    instantiate(crafted)  # control: Hydra's instantiate, which load_target used before, does run it
    assert marker.exists()


def test_load_target_builds_a_users_registered_family(tmp_path):
    family = UserLinearFamily()
    arch = (3, 2)
    state = family.build_module(arch).state_dict()
    weights, _ = save_target(tmp_path / "mine", {"_target_": "tests.test_trust.UserLinearFamily"}, family, arch, state)
    model = load_target(weights)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


# ---------------------------------------------------------------------- checkpoints
def test_our_checkpoints_hold_plain_data_and_a_registered_user_feature_loads(good_ckpt):
    ckpt = torch.load(good_ckpt, map_location="cpu", weights_only=True)  # empty allow-list
    assert ckpt["hyper_parameters"]["features"]["support_mean"]["_target_"] == "tests.test_trust.SupportMean"
    p = load_predictor(good_ckpt)
    assert isinstance(p.features.features["support_mean"], SupportMean)


def test_load_predictor_refuses_a_pickle_payload(good_ckpt, tmp_path):
    bad, marker = _pickle_payload(good_ckpt, tmp_path)
    with pytest.raises(UntrustedCheckpointError) as err:
        load_predictor(bad)
    assert not marker.exists(), "loading the checkpoint ran its pickle payload"
    _one_line(str(err.value), f"ckpt_path={bad}", "refused", "Python objects", "nothing in it was run")
    torch.load(bad, weights_only=False)  # control: the unsafe load every reader used before runs it
    assert marker.exists()


@pytest.mark.parametrize("where", ["family", "task", "predictor", "features"])
def test_load_predictor_refuses_hyper_parameters_naming_another_callable(good_ckpt, tmp_path, where):
    bad, marker = _named_callable(good_ckpt, tmp_path, where)
    with pytest.raises(UntrustedTargetError) as err:
        load_predictor(bad)
    assert not marker.exists()
    _one_line(
        str(err.value), f"ckpt_path={bad}", f"hyper_parameters.{where}", "'pathlib.Path.touch' is not a registered"
    )


@pytest.mark.parametrize("attack", ["pickle", "run_config"])
def test_eval_refuses_a_crafted_checkpoint(good_ckpt, tmp_path, attack):
    """``evaluate`` on the real composition of conf/eval.yaml; ``run_config`` is what eval rebuilds the zoo from."""
    bad, marker = (
        _pickle_payload(good_ckpt, tmp_path)
        if attack == "pickle"
        else _named_callable(good_ckpt, tmp_path, "run_config")
    )
    with pytest.raises(UntrustedTargetError) as err:
        evaluate(_eval_cfg(bad, tmp_path))
    assert not marker.exists()
    assert not (tmp_path / "cache").exists(), "refused before any zoo work"
    _one_line(str(err.value), f"ckpt_path={bad}")
    if attack == "run_config":
        assert "hyper_parameters.run_config.target.family._target_" in str(err.value)


@pytest.mark.parametrize("attack", ["pickle", "family"])
def test_resume_refuses_a_crafted_checkpoint(good_ckpt, tmp_path, attack):
    bad, marker = (
        _pickle_payload(good_ckpt, tmp_path) if attack == "pickle" else _named_callable(good_ckpt, tmp_path, "family")
    )
    with pytest.raises(UntrustedTargetError) as err:
        train(compose_config([f"ckpt_path={bad}"], tmp_path))
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists(), "refused before any training"
    _one_line(str(err.value), f"ckpt_path={bad}")


def test_resume_of_a_good_checkpoint_reads_it_as_data(good_ckpt, tmp_path):
    """Lightning's own load (trainer.fit(ckpt_path=...)) runs with weights_only=True and still resumes."""
    extra = "+features.support_mean._target_=tests.test_trust.SupportMean"
    metrics = train(compose_config(["trainer.max_epochs=2", extra, f"ckpt_path={good_ckpt}"], tmp_path))
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert metrics["test/num_tasks"] > 0


def test_eval_script_prints_one_line_for_a_pickle_payload(good_ckpt, tmp_path):
    bad, marker = _pickle_payload(good_ckpt, tmp_path)
    proc = run_script("eval.py", f"ckpt_path={bad}", cwd=tmp_path)
    assert proc.returncode == 1 and not marker.exists()
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if "ckpt_path=" in ln]
    assert "refused" in line and str(bad) in line


def test_checkpoint_naming_an_unregistered_class_of_the_user_is_refused(good_ckpt, tmp_path):
    """A config the user composes is their code (any _target_); a file may only name registered classes."""
    bad = _crafted(
        good_ckpt,
        tmp_path / "unregistered.ckpt",
        lambda c: c["hyper_parameters"]["features"].update(support_mean={"_target_": "tests.test_trust.Payload"}),
    )
    with pytest.raises(HyperpredError, match=r"features.support_mean._target_='tests.test_trust.Payload' is not a"):
        load_predictor(bad)
