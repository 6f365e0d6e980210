"""Target families: what a weight predictor predicts the weights of."""

from hyperpred.targets.base import Arch, Params, TargetFamily, arch_tensor
from hyperpred.targets.conv import ConvFamily
from hyperpred.targets.conv_classifier import ConvClassifierFamily
from hyperpred.targets.linear import LinearFamily
from hyperpred.targets.mlp import MLPFamily
from hyperpred.targets.module_family import ModuleFamily
from hyperpred.targets.sequential import SequentialFamily

__all__ = [
    "Arch",
    "Params",
    "TargetFamily",
    "arch_tensor",
    "MLPFamily",
    "ConvFamily",
    "ConvClassifierFamily",
    "LinearFamily",
    "ModuleFamily",
    "SequentialFamily",
]
