"""Weight predictors: plain ``nn.Module``s from conditioning to target parameters.

* :class:`MLPPredictor` — the seed's: one output per parameter of a fixed container.
* :class:`WidthAgnosticDecoder` — generates each unit from its coordinate: any width.
* :class:`LayerwiseDecoder` — generates every layer's weights from unit coordinates: any width of any depth.
* :class:`SetConditionedPredictor` — wraps either with a learned :class:`SetEncoder` of the support set.
"""

from hyperpred.predictors.base import Predictor, build_predictor, call_with_context
from hyperpred.predictors.conditioned import SetConditionedPredictor
from hyperpred.predictors.layerwise import LayerwiseDecoder
from hyperpred.predictors.mlp import MLPPredictor
from hyperpred.predictors.set_encoder import SetEncoder
from hyperpred.predictors.width_agnostic import WidthAgnosticDecoder
from hyperpred.units import UnitLayout

__all__ = [
    "Predictor",
    "build_predictor",
    "call_with_context",
    "LayerwiseDecoder",
    "MLPPredictor",
    "SetEncoder",
    "SetConditionedPredictor",
    "UnitLayout",
    "WidthAgnosticDecoder",
]
