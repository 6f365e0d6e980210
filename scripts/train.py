"""Train a weight predictor: ``python scripts/train.py [group=choice ...] [key=value ...]`` (= ``hyperpred-train``)."""

from hyperpred.console import train_command

if __name__ == "__main__":
    train_command()
