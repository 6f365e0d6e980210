"""The typed schema of every config group, checked before any work.

Each rule names a key, what is allowed, and a check. ``check_config`` reports the *first*
violation as ``key=value is not allowed: it must be ...`` so that a bad sweep value fails in a
second, never an hour into a run. :data:`RULES` is the only place a key's rule is written:
constructors that may be called without a config (from Python) apply the same rule to their
arguments through :func:`check_value`. The deeper, cross-key checks (a task that does not fit the family, unseen
architectures that overlap the trained ones, ...) live in :mod:`hyperpred.factory`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hyperpred.errors import ConfigError
from hyperpred.peer_config import check_peer_config

_ABSENT = object()


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def positive_int(v: Any) -> bool:
    return _int(v) and v > 0


def non_negative_int(v: Any) -> bool:
    return _int(v) and v >= 0


def positive_number(v: Any) -> bool:
    return _num(v) and v > 0


def fraction(v: Any) -> bool:
    return _num(v) and 0 < v < 1


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def one_of(*allowed: Any) -> Callable[[Any], bool]:
    return lambda v: v in allowed


def list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (list, tuple, ListConfig)) and all(check(x) for x in v)


def range_pair(v: Any) -> bool:
    return isinstance(v, (list, tuple, ListConfig)) and len(v) == 2 and all(_num(x) for x in v) and v[0] <= v[1]


def max_epochs(v: Any) -> bool:
    return v is None or (_int(v) and (v == -1 or v > 0))


@dataclass(frozen=True)
class Rule:
    key: str
    allowed: str
    check: Callable[[Any], bool]
    required: bool = False


RULES: tuple[Rule, ...] = (
    Rule("seed", "an integer", _int, required=True),
    Rule(
        "target.archs",
        "a non-empty list of architectures",
        lambda v: isinstance(v, (list, tuple, ListConfig)) and len(v) > 0,
        required=True,
    ),
    Rule("target.probe_seed", "an integer", _int),
    Rule("target.family.image_size", "a positive integer", positive_int),
    Rule("target.family.padding", "an integer >= 0", non_negative_int),
    Rule("task.n_support", "a positive integer", positive_int),
    Rule("task.n_query", "a positive integer", positive_int),
    Rule("task.amplitude", "[low, high] with low <= high", range_pair),
    Rule("task.phase", "[low, high] with low <= high", range_pair),
    Rule("task.x_range", "[low, high] with low <= high", range_pair),
    Rule("task.noise_std", "a number >= 0", lambda v: _num(v) and v >= 0),
    Rule("task.x_dist", "one of uniform, normal", one_of("uniform", "normal")),
    Rule("task.query_fraction", "a number in (0, 1)", fraction),
    Rule("task.feature_fraction", "a number in (0, 1]", lambda v: _num(v) and 0 < v <= 1),
    Rule("task.x_scale", "a number > 0", positive_number),
    Rule("zoo.num_targets", "a positive integer", positive_int, required=True),
    Rule("zoo.shard_size", "a positive integer", positive_int, required=True),
    Rule("zoo.seed", "an integer", _int, required=True),
    Rule("zoo.init", "one of shared, random", one_of("shared", "random"), required=True),
    Rule("zoo.steps", "an integer >= 0", non_negative_int, required=True),
    Rule("zoo.lr", "a number > 0", positive_number, required=True),
    Rule("zoo.batch_size", "null or a positive integer", optional(positive_int)),
    Rule("zoo.max_targets", "a positive integer", positive_int),
    Rule("zoo.shard_index", "an integer >= 0", non_negative_int),
    Rule("zoo.num_shards", "a positive integer", positive_int),
    Rule("data.batch_size", "a positive integer", positive_int, required=True),
    Rule("data.val_fraction", "a number in (0, 1)", fraction),
    Rule("data.test_fraction", "a number in (0, 1)", fraction),
    Rule("data.split_seed", "an integer", _int),
    Rule("data.fresh_tasks", "true or false", lambda v: isinstance(v, bool)),
    Rule("predictor.hidden", "a list of positive integers", list_of(positive_int)),
    Rule("features.noise.size", "a positive integer", positive_int),
    Rule("loss.weight", "a number >= 0", lambda v: _num(v) and v >= 0),
    Rule("loss.functional", "a number >= 0", lambda v: _num(v) and v >= 0),
    Rule(
        "loss.canonicalize",
        "null or one of hinge, incoming_norm, outgoing",
        optional(one_of("hinge", "incoming_norm", "outgoing")),
    ),
    Rule("loss.functional_scale", "one of none, support_var", one_of("none", "support_var")),
    Rule("loss.width_augment", "true or false", lambda v: isinstance(v, bool)),
    Rule("finetune.enabled", "true or false", lambda v: isinstance(v, bool)),
    Rule("finetune.max_factor", "a number > 0", positive_number),
    Rule("finetune.check_every", "a positive integer", positive_int),
    Rule("optimizer.lr", "a number > 0", positive_number),
    Rule("trainer.max_epochs", "a positive integer or -1", max_epochs),
    Rule("num_threads", "null or a positive integer", optional(positive_int)),
)

#: Each rule by its key, for :func:`check_value`.
BY_KEY: dict[str, Rule] = {rule.key: rule for rule in RULES}

#: Config groups a run cannot do without, with an example choice for the message.
REQUIRED_GROUPS = {
    "target": "target=mlp",
    "task": "task=sine",
    "features": "features=[arch]",
    "predictor": "predictor=mlp",
    "zoo": "zoo=default",
    "data": "data=default",
}


def _value(cfg: DictConfig, key: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except Exception as e:  # an unresolvable interpolation or a ??? value
        raise ConfigError(f"{key}: {e}") from None
    return value


def check_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first key whose value the schema does not allow."""
    for group, example in REQUIRED_GROUPS.items():
        if OmegaConf.select(cfg, group, default=None) is None:
            raise ConfigError(f"config group '{group}' is missing: choose one, e.g. {example}")
    for rule in RULES:
        value = _value(cfg, rule.key)
        if value is _ABSENT:
            if rule.required:
                raise ConfigError(f"{rule.key} is missing: it must be {rule.allowed}")
            continue
        if not rule.check(value):
            raise not_allowed(rule, value)
    check_peer_config(cfg)  # baselines.* and data.fresh_tasks (cross-key checks)


def not_allowed(rule: Rule, value: Any) -> ConfigError:
    """The one message of a value a rule refuses: ``key=value is not allowed: it must be ...``."""
    shown = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
    return ConfigError(f"{rule.key}={shown!r} is not allowed: it must be {rule.allowed}")


def check_value(key: str, value: Any) -> None:
    """Apply the rule of ``key`` (:data:`RULES`) to one value, with the schema's message.

    For constructors that Python code may call without a config (``SineTask(n_support=0)``): they
    check their arguments here rather than with rules and messages of their own, so each key has
    one rule, written once.
    """
    rule = BY_KEY[key]
    if not rule.check(value):
        raise not_allowed(rule, value)
