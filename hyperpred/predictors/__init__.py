"""Weight predictors: plain ``nn.Module``s from a conditioning vector to flat target parameters."""

from hyperpred.predictors.mlp import MLPPredictor

__all__ = ["MLPPredictor"]
