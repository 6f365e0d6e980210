"""Use a trained weight predictor as a function: checkpoint in, ready target networks out.

    p = load_predictor("checkpoints/best.ckpt")           # no Hydra config needed
    state = p.predict({"in_features": 64, "out_features": 2}, (x, y))   # a state dict
    model = p.materialize({"in_features": 64, "out_features": 2}, (x, y))  # an nn.Module
    model(x_new)

A checkpoint carries everything this needs: the target family and task (their configs), the
feature configs and the probe, the container architecture and the normalization buffers.
Both calls take one task or a batch of tasks and compute the whole batch in one forward pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save
from torch import Tensor, nn

from hyperpred.errors import ConfigError
from hyperpred.features.base import FeatureContext, FeatureSet
from hyperpred.io import atomic_write_bytes, atomic_write_json
from hyperpred.registry import build, build_trusted
from hyperpred.run.checkpoint import load_module
from hyperpred.support import read_support_file, shape_inputs, shape_targets, to_tensor
from hyperpred.targets.base import Arch, Params, TargetFamily, arch_tensor

ArchSpec = Union[Mapping[str, Any], Sequence[int], str, Path]
#: ``(x, y)`` arrays of one task (``[n, ...]``) or of a batch (``[B, n, ...]``), a list of per-task
#: pairs, or the path of an ``.npz``/``.csv`` support file.
SupportSpec = Union[tuple[Any, Any], Sequence[tuple[Any, Any]], str, Path]
TARGET_FORMAT = "hyperpred-target"
TARGET_FORMAT_VERSION = 1


def _family_with_fields(keys: set[str]) -> str | None:
    """The name of a known family whose architecture has exactly ``keys`` (for error hints)."""
    stack = list(TargetFamily.__subclasses__())
    while stack:
        cls = stack.pop()
        if set(cls.arch_fields) == keys:
            return cls.name
        stack += cls.__subclasses__()
    return None


class TrainedPredictor:
    """A trained predictor and everything needed to turn support data into target weights."""

    def __init__(self, module: Any, source: str = "<module>") -> None:
        self.module = module.eval()
        self.source = source
        self.family: TargetFamily = module.family
        self.task = module.task
        self.container: Arch = tuple(module.container)
        hp = module.hparams
        probe = hp.get("probe") or {}
        probe_arch = self.family.arch_from_mapping(probe["arch"]) if probe.get("arch") else None
        ctx = FeatureContext.create(self.family, self.task, self.container, probe_arch, int(probe.get("seed", 0)))
        from_file = bool(getattr(module, "from_file", False))
        built = {
            name: build(cfg, "feature", f"features.{name}", from_file=from_file)
            for name, cfg in (hp.get("features") or {}).items()
        }
        self.features = FeatureSet(built, ctx)
        if self.features.dim != hp["in_dim"]:
            raise ConfigError(
                f"{source}: its features {self.features.dims} give {self.features.dim} values, the predictor takes "
                f"{hp['in_dim']}"
            )
        self.oracle_features = [name for name, f in self.features.features.items() if f.is_oracle]
        #: a width-agnostic predictor also answers for architectures wider than the training container
        self.width_agnostic = bool(module.predictor.width_agnostic)

    @property
    def device(self) -> torch.device:
        return self.module.param_mean.device

    # ------------------------------------------------------------------ architectures
    def parse_arch(self, arch: ArchSpec) -> Arch:
        """One architecture of this checkpoint's family, checked against what it can predict."""
        fam = self.family
        if isinstance(arch, (str, Path)):
            arch = read_target_json(arch)["arch"] if str(arch).endswith(".json") else arch
        if isinstance(arch, Mapping):
            arch = dict(arch)
            other = arch.pop("family", fam.name)
            if other != fam.name:
                raise ConfigError(
                    f"checkpoint {self.source} predicts targets of family '{fam.name}', not '{other}' (architecture "
                    f"{arch})"
                )
            if set(arch) != set(fam.arch_fields):
                hint = _family_with_fields(set(arch))
                hint = f": that is an architecture of family '{hint}'" if hint and hint != fam.name else ""
                raise ConfigError(
                    f"checkpoint {self.source} predicts targets of family '{fam.name}', whose architecture has the "
                    "keys "
                    f"{list(fam.arch_fields)}; got {arch}{hint}"
                )
        try:
            parsed = fam.arch_from_mapping(arch)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"checkpoint {self.source} (family '{fam.name}'): {e}") from None
        for field, value, limit in zip(fam.arch_fields, parsed, self.container):
            if field in fam.fixed_fields and value != limit:
                raise ConfigError(
                    f"checkpoint {self.source} predicts '{fam.name}' targets with {field}={limit}; got {field}={value}"
                )
            if value > limit and not self.width_agnostic:
                raise ConfigError(
                    f"checkpoint {self.source} predicts '{fam.name}' targets up to "
                    f"{fam.arch_to_dict(self.container)}; {field}={value} is larger"
                )
        return parsed

    def parse_archs(self, arch: ArchSpec | Sequence[ArchSpec]) -> tuple[list[Arch], bool]:
        """A list of architectures (one, or one per task), and whether a list was given."""
        many = isinstance(arch, list) and len(arch) > 0 and not isinstance(arch[0], (int, np.integer))
        return ([self.parse_arch(a) for a in arch], True) if many else ([self.parse_arch(arch)], False)

    # ------------------------------------------------------------------ support data
    def y_columns(self, arch: Arch) -> int:
        """Columns of y per CSV row: one class label, or every output value."""
        return 1 if self.task.classification else int(np.prod(self.family.output_shape(arch)))

    def support_tensors(self, support: SupportSpec, archs: Sequence[Arch]) -> tuple[Tensor, Tensor, bool]:
        """``(x [B, n, *input], y [B, n, *output])`` at the container, and whether it was a batch.

        ``support`` is a tuple ``(x, y)`` (one task, or a batch when x is ``[B, n, ...]``), a list
        of such tuples (one per task), or the path of an ``.npz``/``.csv`` file.
        """
        if isinstance(support, (str, Path)):
            x, y = read_support_file(support, self.y_columns(archs[0]))
            return self._shape(x, y, archs, f"support file {support}")
        if isinstance(support, tuple) and len(support) == 2:
            return self._shape(support[0], support[1], archs, "support")
        if isinstance(support, list) and support and all(isinstance(s, tuple) and len(s) == 2 for s in support):
            if len(archs) not in (1, len(support)):
                raise ConfigError(f"{len(archs)} architectures for {len(support)} tasks of support data")
            parts = [
                self._shape(x, y, [archs[i if len(archs) > 1 else 0]], f"support[{i}]")
                for i, (x, y) in enumerate(support)
            ]
            sizes = sorted({p[0].shape[1] for p in parts})
            if len(sizes) > 1:
                raise ConfigError(
                    f"support: tasks of one batch need equally many samples, got {sizes}; predict them in separate "
                    "calls"
                )
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), True
        raise ConfigError(
            "support must be a tuple (x, y) of arrays, a list of such tuples (one per task), or the path of an "
            ".npz/.csv file"
        )

    def _shape(self, x: Any, y: Any, archs: Sequence[Arch] | None, source: str) -> tuple[Tensor, Tensor, bool]:
        x, batched = shape_inputs(to_tensor("x", x, source), self.family.input_shape(self.container), source)
        b, n = x.shape[:2]
        archs = list(archs) * b if len(archs) == 1 else list(archs)
        if len(archs) != b:
            raise ConfigError(f"{source}: {b} task(s) of support data for {len(archs)} architectures")
        out_shapes = [self.family.output_shape(a) for a in archs]
        y = shape_targets(
            to_tensor("y", y, source),
            (b, n),
            batched,
            out_shapes,
            self.family.output_shape(self.container),
            self.task.classification,
            source,
        )
        return x, y, batched

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict_flat(
        self,
        archs: Tensor,
        support_x: Tensor,
        support_y: Tensor,
        descriptor: Tensor | None = None,
        container: Arch | None = None,
    ) -> Tensor:
        """Batched core: flat parameters ``[B, P]`` at ``container`` (default: the training container)."""
        batch = {"archs": archs, "support_x": support_x, "support_y": support_y}
        if self.oracle_features:
            if descriptor is None:
                raise ConfigError(
                    f"checkpoint {self.source} uses the oracle feature(s) {self.oracle_features}: pass each task's "
                    "true descriptor"
                )
            batch["descriptor"] = descriptor
        features = self.features.compute({k: v.cpu() for k, v in batch.items()})
        return self.module(features.to(self.device), {k: v.to(self.device) for k, v in batch.items()}, container)

    def _predict(
        self, arch: ArchSpec | Sequence[ArchSpec], support: SupportSpec, descriptor: Any
    ) -> tuple[list[Arch], list[Params], bool]:
        archs, many = self.parse_archs(arch)
        container = self.family.container([self.container, *archs])  # wider only for width-agnostic predictors
        if self.family.output_shape(container) != self.family.output_shape(self.container):
            raise ConfigError(
                f"checkpoint {self.source} predicts '{self.family.name}' targets with outputs "
                f"{self.family.output_shape(self.container)}; the architectures need "
                f"{self.family.output_shape(container)}"
            )
        x, y, batched = self.support_tensors(support, archs)
        archs = archs * x.shape[0] if len(archs) == 1 else archs
        d = (
            None
            if descriptor is None
            else torch.as_tensor(np.asarray(descriptor), dtype=torch.get_default_dtype()).reshape(len(archs), -1)
        )
        flat = self.predict_flat(arch_tensor(archs), x, y, d, container).cpu()
        params = self.family.unflatten(flat, container)
        per_task = [{k: v[i] for k, v in params.items()} for i in range(len(archs))]
        return archs, per_task, batched or many

    def predict(
        self, arch: ArchSpec | Sequence[ArchSpec], support: SupportSpec, descriptor: Any = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """The predicted target's ``state_dict`` (a list of them for a batch of tasks)."""
        archs, params, batched = self._predict(arch, support, descriptor)
        states = [self.family.module_state(self.family.crop(p, a)) for a, p in zip(archs, params)]
        return states if batched else states[0]

    def materialize(
        self, arch: ArchSpec | Sequence[ArchSpec], support: SupportSpec, descriptor: Any = None
    ) -> nn.Module | list[nn.Module]:
        """A ready ``nn.Module`` of the target family with the predicted weights (a list for a batch)."""
        archs, params, batched = self._predict(arch, support, descriptor)
        modules = [self.family.to_module(a, p).eval() for a, p in zip(archs, params)]
        return modules if batched else modules[0]

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family.describe(),
            "task": self.task.describe(),
            "container": self.family.arch_to_dict(self.container),
            "features": self.features.dims,
        }


#: The name this class had before ``hyperpred.predictors.Predictor`` (the nn.Module base class) took it.
Predictor = TrainedPredictor


def load_predictor(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> TrainedPredictor:
    """Load a training checkpoint as a :class:`TrainedPredictor`; nothing else (no Hydra config) is needed.

    The file is read as data only (``weights_only=True``) and the classes it names must be
    registered (:mod:`hyperpred.registry`): loading a shared checkpoint never runs its code.
    """
    return TrainedPredictor(load_module(ckpt_path, map_location), source=str(ckpt_path))


# ---------------------------------------------------------------------- predicted targets as files
def _target_paths(out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    weights = out if out.suffix == ".safetensors" else out.with_name(out.name + ".safetensors")
    return weights, weights.with_suffix(".json")


def save_target(
    out: str | Path,
    family_config: Mapping[str, Any],
    family: TargetFamily,
    arch: Arch,
    state: Mapping[str, Tensor],
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<out>.safetensors`` (the module's state dict) and ``<out>.json`` (how to rebuild it)."""
    weights, meta = _target_paths(out)
    atomic_write_bytes(weights, st_save({k: v.detach().cpu().contiguous() for k, v in state.items()}))
    atomic_write_json(
        meta,
        {
            "format": TARGET_FORMAT,
            "format_version": TARGET_FORMAT_VERSION,
            "family": dict(family_config),
            "arch": {"family": family.name, **family.arch_to_dict(arch)},
            "weights": weights.name,
            **(extra or {}),
        },
    )
    return weights, meta


def read_target_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or "arch" not in meta:
        raise ConfigError(f"{path}: not an architecture file (no 'arch' key)")
    return meta


def load_target(path: str | Path) -> nn.Module:
    """Rebuild a target written by ``scripts/predict.py``: ``model = load_target("clf.safetensors")``."""
    weights, meta_path = _target_paths(path)
    meta = read_target_json(meta_path)
    if meta.get("format") != TARGET_FORMAT:
        raise ConfigError(f"{meta_path}: not a {TARGET_FORMAT} file")
    family = build_trusted(meta.get("family"), "family", f"{meta_path}: family")
    if not isinstance(family, TargetFamily):
        raise ConfigError(f"{meta_path}: family names {type(family).__name__}, not a target family")
    arch = family.arch_from_mapping({k: v for k, v in meta["arch"].items() if k != "family"})
    module = family.build_module(arch)
    if not weights.is_file():
        raise ConfigError(f"{weights}: no such file (written next to {meta_path})")
    module.load_state_dict(st_load_file(str(weights)))
    return module.eval()


def predict_to_files(ckpt_path: str | Path, arch: ArchSpec, support: str | Path, out: str | Path) -> dict[str, Any]:
    """What ``scripts/predict.py`` does: predict one task's target and write it as files.

    Returns the written paths and the predicted target's fit to its own support data (accuracy
    for classification, the task loss otherwise), a cheap sanity check on what was written.
    """
    predictor = load_predictor(ckpt_path)
    (parsed,), _ = predictor.parse_archs(arch)
    x, y, batched = predictor.support_tensors(support, [parsed])
    if batched:
        raise ConfigError(
            f"support file {support}: holds {x.shape[0]} tasks; scripts/predict.py writes one target, use the Python "
            "API for batches"
        )
    model = predictor.materialize(parsed, support)
    fam = predictor.family
    out_shape = fam.output_shape(parsed)
    with torch.no_grad():
        pred = model(x[0]).unsqueeze(0)
    y = y[(slice(None), slice(None), *(slice(0, n) for n in out_shape))]
    fit = {"support_loss": float(predictor.task.loss(pred, y)[0])}
    if predictor.task.classification:
        fit["support_accuracy"] = float(predictor.task.accuracy(pred, y)[0])
    extra = {
        "checkpoint": str(ckpt_path),
        "task": predictor.task.describe(),
        "support": str(support),
        "n_support": int(x.shape[1]),
        **fit,
    }
    weights, meta = save_target(out, predictor.module.hparams.family, fam, parsed, model.state_dict(), extra)
    return {"weights": str(weights), "arch": str(meta), **fit}
