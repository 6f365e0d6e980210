"""Label production: train many targets at once and cache them, content-addressed, on disk."""

from hyperpred.seeding import stable_seed
from hyperpred.zoo.builder import BuildStats, Zoo, ZooBuilder, build_shard
from hyperpred.zoo.spec import FORMAT_VERSION, TrainRecipe, ZooSpec
from hyperpred.zoo.training import TrainResult, per_target_loss, train_targets

__all__ = [
    "BuildStats",
    "Zoo",
    "ZooBuilder",
    "build_shard",
    "FORMAT_VERSION",
    "TrainRecipe",
    "ZooSpec",
    "stable_seed",
    "TrainResult",
    "per_target_loss",
    "train_targets",
]
