"""One validation layer: a key's rule is written once (config_schema.RULES), wherever the value comes from.

A bad value in a config and the same value given to the constructor from Python get the same
one-line message; every constructor check names a key that has a rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hyperpred.config_schema import BY_KEY
from hyperpred.errors import ConfigError
from hyperpred.factory import build_parts
from hyperpred.lit.datamodule import ZooDataModule
from hyperpred.losses import PredictionLoss
from hyperpred.targets.conv import ConvFamily
from hyperpred.tasks.sine import SineTask
from hyperpred.tasks.teacher import TeacherTask
from hyperpred.zoo.spec import TrainRecipe

PACKAGE = Path(__file__).resolve().parents[1] / "hyperpred"

CASES = [
    (("task.n_support=0",), lambda: SineTask(n_support=0)),
    (("task.amplitude=[5.0,0.1]",), lambda: SineTask(amplitude=[5.0, 0.1])),
    (("task=teacher", "target=linear", "task.x_dist=cauchy"), lambda: TeacherTask(x_dist="cauchy")),
    (("zoo.lr=0",), lambda: TrainRecipe(lr=0)),
    (("zoo.steps=2.5",), lambda: TrainRecipe(steps=2.5)),
    (("target=conv", "task=teacher", "target.family.image_size=0"), lambda: ConvFamily(image_size=0)),
    (("loss.functional_scale=max",), lambda: PredictionLoss(functional_scale="max")),
    (("data.batch_size=0",), lambda: ZooDataModule(None, None, batch_size=0)),
]


@pytest.mark.parametrize(("overrides", "construct"), CASES, ids=[c[0][-1] for c in CASES])
def test_a_config_and_a_constructor_give_one_message(make_cfg, overrides, construct):
    with pytest.raises(ConfigError) as from_config:
        build_parts(make_cfg(*overrides))
    with pytest.raises(ConfigError) as from_python:
        construct()
    assert str(from_python.value) == str(from_config.value)
    assert "is not allowed: it must be" in str(from_python.value)


def test_every_constructor_check_names_a_key_with_a_rule():
    keys = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_value" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    keys.append(arg.value)
                elif isinstance(arg, ast.JoinedStr):  # f"zoo.{key}": the prefix must start some rule's key
                    prefix = "".join(v.value for v in arg.values if isinstance(v, ast.Constant))
                    assert any(k.startswith(prefix) for k in BY_KEY), f"{path.name}: {prefix}"
    assert len(keys) > 10
    assert not [k for k in keys if k not in BY_KEY]
