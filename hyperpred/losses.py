"""Training objectives for the predictor: weight-space MSE, the target's task loss, or both."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


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

    def __post_init__(self) -> None:
        if self.weight < 0 or self.functional < 0 or self.weight + self.functional <= 0:
            raise ValueError(f"loss.weight and loss.functional must be >= 0 and not both 0, got {self.weight}, {self.functional}")

    def combine(self, weight_mse: Tensor, functional: Tensor) -> Tensor:
        return self.weight * weight_mse + self.functional * functional
