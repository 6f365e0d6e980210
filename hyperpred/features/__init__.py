"""Conditioning features computable at prediction time (plus an oracle and a noise control)."""

from hyperpred.features.activation_stats import ActivationStats
from hyperpred.features.arch import ArchFeature
from hyperpred.features.base import Feature, FeatureContext, FeatureSet
from hyperpred.features.gradient_stats import GradientStats
from hyperpred.features.noise import NoiseFeature
from hyperpred.features.oracle import OracleFeature

__all__ = [
    "Feature",
    "FeatureContext",
    "FeatureSet",
    "ArchFeature",
    "ActivationStats",
    "GradientStats",
    "OracleFeature",
    "NoiseFeature",
]
