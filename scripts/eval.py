"""Evaluate a checkpoint on a split of its zoo: ``python scripts/eval.py ckpt_path=… [split=test]``.

The same as ``hyperpred-eval``.
"""

from hyperpred.console import eval_command

if __name__ == "__main__":
    eval_command()
