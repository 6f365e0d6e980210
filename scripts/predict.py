"""Predict a target for a new task: ``python scripts/predict.py ckpt_path=… arch=… support=… out=…``.

The same as ``hyperpred-predict``.
"""

from hyperpred.console import predict_command

if __name__ == "__main__":
    predict_command()
