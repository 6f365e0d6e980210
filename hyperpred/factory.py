"""Build the run's parts from a composed config, validating everything cheap before any work.

Every error raised here is a :class:`ConfigError` whose message names the config key, the value
and what is allowed, so a bad sweep value fails in a second instead of an hour into a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig, OmegaConf

from hyperpred.config_schema import check_config
from hyperpred.errors import ConfigError
from hyperpred.features.base import Feature, FeatureContext, FeatureSet
from hyperpred.registry import build
from hyperpred.targets.base import TargetFamily
from hyperpred.tasks.base import Task
from hyperpred.zoo.builder import ZooBuilder
from hyperpred.zoo.kernels import select_kernel
from hyperpred.zoo.spec import TrainRecipe, ZooSpec


@dataclass
class Parts:
    family: TargetFamily
    task: Task
    archs: list[tuple[int, ...]]
    unseen_archs: list[tuple[int, ...]]
    container: tuple[int, ...]
    spec: ZooSpec
    builder: ZooBuilder
    features: FeatureSet


def _instantiate(node: Any, key: str, kind: str, from_file: bool) -> Any:
    """Build ``node``; one read from a checkpoint (``from_file``) may only name registered classes."""
    if not isinstance(node, (DictConfig, Mapping)) or "_target_" not in node:
        raise ConfigError(
            f"{key} must be a config with a _target_, got "
            f"{OmegaConf.to_container(node) if isinstance(node, DictConfig) else node!r}"
        )
    try:
        return build(node, kind, key, from_file=from_file)
    except ConfigError:  # a registry refusal or build error already names the key
        raise
    except InstantiationException as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        raise ConfigError(f"{key}: cannot build {node.get('_target_')}: {cause}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}: {e}") from None


def _archs(family: TargetFamily, specs: Any, key: str) -> list[tuple[int, ...]]:
    if specs is None:
        return []
    if not isinstance(specs, (ListConfig, Sequence)) or isinstance(specs, str):
        raise ConfigError(
            f"{key} must be a list of architectures like [{{{family.arch_fields[0]}: ...}}], got {specs!r}"
        )
    out = []
    for i, spec in enumerate(specs):
        spec = OmegaConf.to_container(spec) if isinstance(spec, (DictConfig, ListConfig)) else spec
        try:
            out.append(family.arch_from_mapping(spec))
        except ValueError as e:
            raise ConfigError(f"{key}[{i}]: {e}") from None
    return out


def build_family_and_task(cfg: DictConfig, from_file: bool = False) -> tuple[TargetFamily, Task]:
    if "target" not in cfg or cfg.target is None or "family" not in cfg.target:
        raise ConfigError("config has no target.family: choose a target family (e.g. target=mlp)")
    family = _instantiate(cfg.target.family, "target.family", "family", from_file)
    if not isinstance(family, TargetFamily):
        raise ConfigError(f"target.family._target_={cfg.target.family._target_} is not a TargetFamily")
    if "task" not in cfg or cfg.task is None:
        raise ConfigError("config has no task: choose a task (e.g. task=sine)")
    task = _instantiate(cfg.task, "task", "task", from_file)
    if not isinstance(task, Task):
        raise ConfigError(f"task._target_={cfg.task._target_} is not a Task")
    return family, task


def build_features(cfg: DictConfig, ctx: FeatureContext, from_file: bool = False) -> FeatureSet:
    node = cfg.get("features")
    if not node:
        raise ConfigError("features is empty: choose at least one, e.g. features=[arch,activation_stats]")
    features: dict[str, Feature] = {}
    for name, fcfg in node.items():
        feature = _instantiate(fcfg, f"features.{name}", "feature", from_file)
        if not isinstance(feature, Feature):
            raise ConfigError(f"features.{name}._target_={fcfg._target_} is not a Feature")
        features[name] = feature
    return FeatureSet(features, ctx)


def _check_predictor_sizes(cfg: DictConfig, family: TargetFamily, in_dim: int, out_dim: int) -> None:
    """``predictor.in_dim``/``out_dim`` come from the data; a hand-typed value must agree with it."""
    node = cfg.get("predictor")
    for key, expected, source in (
        ("in_dim", in_dim, "the features' total size"),
        ("out_dim", out_dim, f"the parameter count of target={family.name}"),
    ):
        if node is None or key not in node or OmegaConf.is_missing(node, key):
            continue
        if node[key] != expected:
            raise ConfigError(
                f"predictor.{key}={node[key]!r} does not match {source} ({expected}); leave it ??? to have it filled in"
            )


def build_parts(cfg: DictConfig, progress: bool | None = None, from_file: bool = False) -> Parts:
    """Validate the config and construct everything a run needs, without training anything.

    ``from_file``: ``cfg`` is a run config read from a checkpoint (``scripts/eval.py``), so its
    family, task and features are built through :mod:`hyperpred.registry` only.
    """
    check_config(cfg)
    family, task = build_family_and_task(cfg, from_file)
    archs = _archs(family, cfg.target.get("archs"), "target.archs")  # non-empty: check_config's rule
    unseen = _archs(family, cfg.target.get("unseen_archs"), "target.unseen_archs")
    overlap = sorted(set(archs) & set(unseen))
    if overlap:
        raise ConfigError(
            f"target.unseen_archs overlaps target.archs at {[family.arch_to_dict(a) for a in overlap]}: an unseen "
            "architecture must not be trained on"
        )
    try:
        container = family.container(archs + unseen)
        for arch in archs + unseen:  # geometry errors (a kernel larger than the image) surface here
            family.input_shape(arch), family.output_shape(arch)
    except ValueError as e:
        raise ConfigError(f"target.archs/target.unseen_archs: {e}") from None
    task.check_compatible(family, archs + unseen)
    probe = _archs(family, [cfg.target.probe_arch], "target.probe_arch")[0] if cfg.target.get("probe_arch") else None
    if probe is not None and family.output_shape(probe) != family.output_shape(container):
        raise ConfigError(
            f"target.probe_arch {family.arch_to_dict(probe)} must have the same outputs as the data "
            f"{family.output_shape(container)}"
        )
    z = cfg.zoo
    try:
        recipe = TrainRecipe(steps=z.steps, lr=float(z.lr), batch_size=z.get("batch_size"))
        spec = ZooSpec(
            family=family.describe(),
            task=task.describe(),
            archs=tuple(archs + unseen),
            container=container,
            num_targets=z.num_targets,
            shard_size=z.shard_size,
            seed=z.seed,
            init=z.init,
            recipe=recipe,
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    if spec.num_targets > z.get("max_targets", spec.num_targets):
        raise ConfigError(
            f"zoo.num_targets={spec.num_targets} exceeds zoo.max_targets={z.max_targets}; raise zoo.max_targets if "
            "you mean it"
        )
    ctx = FeatureContext.create(family, task, container, probe, int(cfg.target.get("probe_seed", 0)))
    features = build_features(cfg, ctx, from_file)
    _check_predictor_sizes(cfg, family, in_dim=features.dim, out_dim=family.num_params(container))
    show = bool(z.get("progress", False)) if progress is None else progress
    strategy, device = str(z.get("strategy") or "auto"), z.get("device") or None
    select_kernel(
        family, task, recipe, device, strategy, container
    )  # a bad zoo.strategy or zoo.device fails here, before any work
    builder = ZooBuilder(family, task, spec, Path(cfg.paths.cache_dir), progress=show, strategy=strategy, device=device)
    return Parts(family, task, archs, unseen, container, spec, builder, features)
