"""hyperpred: learn to predict the weights of neural networks.

``from hyperpred import load_predictor, load_target`` is the user-facing API (see ``hyperpred.api``);
it is imported on first use so that ``import hyperpred.<part>`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_predictor", "load_target", "TrainedPredictor", "Predictor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hyperpred import api

        return getattr(api, name)
    raise AttributeError(f"module 'hyperpred' has no attribute {name!r}")
