"""Lightning wrappers: thin wiring of zoo, features, predictor and objective."""

from hyperpred.lit.datamodule import TensorDictDataset, ZooDataModule
from hyperpred.lit.module import WeightPredictionModule

__all__ = ["TensorDictDataset", "ZooDataModule", "WeightPredictionModule"]
