"""Training objectives for the predictor: weight-space MSE, the target's task loss, or both."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hyperpred.config_schema import check_value
from hyperpred.errors import ConfigError


def masked_weight_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per-target MSE over the entries the target really has: ``[B]``."""
    m = mask.to(pred.dtype)
    return ((pred - target).square() * m).sum(1) / m.sum(1).clamp_min(1)


@dataclass
class PredictionLoss:
    """``weight · weight_mse + functional · task_loss(predicted target on query data)``.

    ``weight`` alone is the seed's loss; it punishes a correct function whose hidden units are
    permuted. ``functional`` alone judges the predicted target by what it computes.
    """

    weight: float = 1.0
    functional: float = 0.0
    #: Sort each target's hidden units by this key before the weight loss (see hyperpred.symmetry);
    #: applied to the zoo's targets by the data module. null: targets as trained.
    canonicalize: str | None = None
    #: "none": the functional term is the mean query loss over tasks; "support_var": each task's
    #: query loss is divided by the variance of its support targets first, so that tasks of small
    #: amplitude weigh as much as large ones (the variance is known at prediction time).
    functional_scale: str = "none"
    #: Width-agnostic predictors only: evaluate the functional term at a width drawn uniformly per
    #: target from the training widths' range, not at the zoo target's width. The decoder then
    #: sees every lattice of unit coordinates in the range, not four, and learns one smooth
    #: function of the coordinate instead of one per width: what serving unseen widths needs.
    width_augment: bool = False

    def __post_init__(self) -> None:
        """Each key by its schema rule (:data:`hyperpred.config_schema.RULES`), then the one rule across keys."""
        for key in ("weight", "functional", "canonicalize", "functional_scale", "width_augment"):
            check_value(f"loss.{key}", getattr(self, key))
        if self.weight + self.functional <= 0:
            raise ConfigError(
                f"loss.weight and loss.functional must not both be 0, got {self.weight}, {self.functional}"
            )

    def functional_term(self, query_loss: Tensor, support_y: Tensor) -> Tensor:
        """Mean over tasks of the per-task query loss ``[B]``, scaled as configured."""
        if self.functional_scale == "support_var":
            var = support_y.flatten(2).var(1, unbiased=False).mean(1)
            return (query_loss / (var + 1e-3)).mean()
        return query_loss.mean()

    def combine(self, weight_mse: Tensor, functional: Tensor) -> Tensor:
        return self.weight * weight_mse + self.functional * functional
