"""Support data for a new task: read it from a file, check it, and shape it like zoo batches.

A user hands the predictor a few labelled examples of the task. They arrive as arrays, as an
``.npz`` file (arrays ``x`` and ``y``) or as a ``.csv`` file (one sample per row: the input's
values, then the output's values or, for classification, one class label). Every problem is
reported before any prediction, with a message that names the source and what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hyperpred.errors import ConfigError

SUPPORT_SUFFIXES = (".npz", ".csv")


def read_support_file(path: str | Path, y_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` arrays from ``path``; for a CSV the last ``y_columns`` columns are y."""
    path = Path(path)
    if path.suffix not in SUPPORT_SUFFIXES:
        raise ConfigError(f"support file {path}: unknown format '{path.suffix}', use one of {list(SUPPORT_SUFFIXES)}")
    if not path.is_file():
        raise ConfigError(f"support file {path}: no such file")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("x", "y") if k not in data.files]
                if missing:
                    raise ConfigError(
                        f"support file {path}: missing array(s) {missing}; it has {sorted(data.files)} (needs 'x' and "
                        "'y')"
                    )
                return np.asarray(data["x"]), np.asarray(data["y"])
        except (OSError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"support file {path}: not a readable .npz file ({e})") from None
    table = _read_csv(path)
    if table.shape[1] <= y_columns:
        raise ConfigError(
            f"support file {path}: {table.shape[1]} columns, but a row needs the input values and {y_columns} output "
            "column(s)"
        )
    y = table[:, -y_columns:]
    return table[:, :-y_columns], y[:, 0] if y_columns == 1 else y


def _read_csv(path: Path) -> np.ndarray:
    """A numeric table; a first line that is not numeric is taken as a header."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ConfigError(f"support file {path}: empty")
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append([float(v) for v in line.split(",")])
        except ValueError:
            if number == 1:
                continue  # header
            raise ConfigError(f"support file {path}: line {number} is not a row of numbers: {line[:80]!r}") from None
    if not rows:
        raise ConfigError(f"support file {path}: no data rows")
    widths = sorted({len(r) for r in rows})
    if len(widths) > 1:
        raise ConfigError(f"support file {path}: rows have different numbers of columns {widths}")
    return np.asarray(rows)


def check_finite(name: str, values: Tensor, lead_dims: int, source: str) -> None:
    """Fail naming ``source``, the array and the first bad samples when ``values`` has NaN or Inf.

    ``values`` is ``[samples, ...]`` (``lead_dims`` = 1) or ``[tasks, samples, ...]`` (2).
    """
    bad = ~torch.isfinite(values)
    if bad.any():
        per_sample = bad.flatten(lead_dims).any(-1) if values.dim() > lead_dims else bad
        samples = torch.nonzero(per_sample)[:, -1].unique().tolist()
        kind = "NaN" if torch.isnan(values).any() else "infinite"
        raise ConfigError(
            f"{source}: {int(bad.sum())} {kind} value(s) in {name} (samples "
            f"{samples[:5]}{' ...' if len(samples) > 5 else ''})"
        )


def to_tensor(name: str, values: object, source: str) -> Tensor:
    try:
        t = torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {name} is not a numeric array ({e})") from None
    if not (
        t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)
    ):
        raise ConfigError(f"{source}: {name} has dtype {t.dtype}, expected numbers")
    return t


def shape_inputs(x: Tensor, in_shape: Sequence[int], source: str) -> tuple[Tensor, bool]:
    """``x`` as ``[B, n, *in_shape]``, and whether it came batched; accepts ``[n, ...]`` (one task) and flattened "
    "inputs."""
    in_shape = tuple(in_shape)
    size = math.prod(in_shape)
    if x.dim() >= len(in_shape) + 1 and tuple(x.shape[x.dim() - len(in_shape) :]) == in_shape:
        lead = x.shape[: x.dim() - len(in_shape)]
    elif x.dim() >= 2 and x.shape[-1] == size:
        lead = x.shape[:-1]
    else:
        raise ConfigError(
            f"{source}: x has shape {tuple(x.shape)}, but the architecture takes inputs of shape {in_shape} ({size} "
            "values per sample)"
        )
    if len(lead) not in (1, 2):
        raise ConfigError(
            f"{source}: x has shape {tuple(x.shape)}; expected [samples, *{in_shape}] or [tasks, samples, *{in_shape}]"
        )
    if lead[-1] == 0:
        raise ConfigError(f"{source}: no samples")
    x = x.reshape(*lead, *in_shape).to(torch.get_default_dtype())
    check_finite("x", x, len(lead), source)
    return (x, True) if len(lead) == 2 else (x.unsqueeze(0), False)


def shape_targets(
    y: Tensor,
    lead: tuple[int, int],
    batched: bool,
    out_shapes: Sequence[tuple[int, ...]],
    container_out: Sequence[int],
    classification: bool,
    source: str,
) -> Tensor:
    """``y`` as ``[B, n, *container_out]``: class labels become one-hot, smaller outputs are zero-padded.

    ``out_shapes`` is each task's own output shape (its number of classes for classification).
    """
    b, n = lead
    check_finite("y", y.to(torch.get_default_dtype()), 2 if batched else 1, source)
    if classification and y.dim() == (2 if batched else 1):
        labels = y.reshape(-1, y.shape[-1])
        if tuple(labels.shape) != (b, n):
            raise ConfigError(f"{source}: y holds {tuple(labels.shape)} class labels, x holds {(b, n)} samples")
        if labels.is_floating_point() and not torch.equal(labels, labels.round()):
            raise ConfigError(f"{source}: y holds class labels, but some are not whole numbers")
        labels = labels.long()
        k = torch.tensor([s[0] for s in out_shapes]).unsqueeze(1)
        wrong = (labels < 0) | (labels >= k)
        if wrong.any():
            task, sample = (int(i) for i in torch.nonzero(wrong)[0])
            kk = int(k[task, 0])
            raise ConfigError(
                f"{source}: class label {int(labels[task, sample])} (sample {sample}) is outside 0..{kk - 1} for the "
                f"architecture's {kk} classes"
            )
        return torch.nn.functional.one_hot(labels, container_out[0]).to(torch.get_default_dtype())
    shapes = {tuple(s) for s in out_shapes}
    if len(shapes) > 1:
        raise ConfigError(
            f"{source}: tasks with different output shapes {sorted(shapes)} need one (x, y) pair per task"
        )
    (out,) = shapes
    y = y.to(torch.get_default_dtype())
    if math.prod(out) == 1 and y.dim() == (2 if batched else 1):
        y = y.unsqueeze(-1)
    want = (b, n, *out) if batched else (n, *out)
    if tuple(y.shape) != want:
        what = (
            f"labels of shape {want[:-1]} or one-hot scores of shape {want}"
            if classification
            else f"outputs of shape {want}"
        )
        raise ConfigError(
            f"{source}: y has shape {tuple(y.shape)}, but x's {n} samples and the architecture need {what}"
        )
    y = y.reshape(b, n, *out)
    pad = []
    for have, want in zip(reversed(out), reversed(tuple(container_out))):
        pad += [0, want - have]
    return torch.nn.functional.pad(y, pad)
