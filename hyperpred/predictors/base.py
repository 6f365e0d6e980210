"""What every weight predictor promises the LightningModule, and how one is built from config.

A predictor maps the standardized conditioning vector ``z [B, in_dim]`` (plus, for predictors
that read them, the batch's architectures and support pairs) to flat target parameters at a
*container* architecture. Two output conventions exist:

* ``output_space = "normalized"``: the output is in units of the training zoo's per-position
  parameter statistics; the module returns ``param_mean + param_std · output``. Such predictors
  have one output per container position, so they only serve the training container.
* ``output_space = "raw"``: the output is the parameters themselves. Width-agnostic decoders use
  it, since per-position statistics do not exist for widths beyond the training container.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from hyperpred.errors import ConfigError
from hyperpred.registry import build
from hyperpred.targets.base import TargetFamily

#: Context a predictor may ask for by naming it in its constructor's signature.
CONTEXT_KEYS = ("family", "container")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Predictor(nn.Module):
    """Base class: subclasses set the flags below and implement ``forward(z, batch, container)``."""

    #: "normalized" (module adds the zoo's mean/std per position) or "raw" (parameters as is).
    output_space: str = "normalized"
    #: True when ``forward`` reads ``batch["support_x"]``/``batch["support_y"]``.
    needs_support: bool = False
    #: True when ``forward`` can produce parameters at any container, not only the training one.
    width_agnostic: bool = False

    def set_data_stats(self, stats: Mapping[str, Tensor]) -> None:
        """Receive the training split's statistics (support x/y moments); default: nothing to do."""

    def forward(
        self, z: Tensor, batch: Mapping[str, Tensor] | None = None, container: Sequence[int] | None = None
    ) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def call_with_context(
    factory: Callable[..., Any], in_dim: int, out_dim: int, family: TargetFamily, container: Sequence[int]
) -> Any:
    """Call a predictor class (or a partial of one) with the sizes, and the context it names.

    Context (family, container) is passed only to constructors whose signature names it, so a
    third-party predictor with the plain ``(in_dim, out_dim)`` signature keeps working.
    """
    target = getattr(factory, "func", factory)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    context = {"family": family, "container": tuple(container)}
    return factory(in_dim=in_dim, out_dim=out_dim, **{k: v for k, v in context.items() if accepts_any or k in params})


def build_predictor(
    cfg: Mapping[str, Any],
    in_dim: int,
    out_dim: int,
    family: TargetFamily,
    container: Sequence[int],
    from_file: bool = False,
) -> nn.Module:
    """Instantiate the ``predictor`` config with the sizes from the data and the context it asks for.

    ``from_file``: the config was read from a checkpoint, so only registered classes are built.
    """
    if not isinstance(cfg, Mapping) or not cfg.get("_target_"):
        raise ConfigError(f"predictor must be a config with a _target_, got {cfg!r}")
    factory = build(cfg, "predictor", "predictor", from_file=from_file, partial=True)
    return call_with_context(factory, in_dim, out_dim, family, container)


def mlp(in_dim: int, hidden: Sequence[int], activation: str) -> tuple[nn.Sequential, int]:
    """``Linear → act`` blocks; returns the stack and its output width."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"predictor activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation]()]
        width = int(h)
    return nn.Sequential(*layers), width
