"""Kept so that ``from hyperpred.predictors.units import UnitLayout`` still works: the layout lives in
:mod:`hyperpred.units` (the decoders and the canonicalization in :mod:`hyperpred.symmetry` both use it)."""

from hyperpred.units import UnitLayout, UnitTensor

__all__ = ["UnitLayout", "UnitTensor"]
