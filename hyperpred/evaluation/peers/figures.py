"""The peers' figures: memorization scatter and fine-tuning curves (matplotlib object API, no display)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor


def memorization_plot(d: dict[str, Tensor], path: Path, title: str) -> Path:
    """d(p, own trained) against d(p, nearest training target): points below the diagonal sit on a training target."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.subplots()
    x, y = d["pred_to_own"].clamp_min(1e-8).numpy(), d["pred_to_train"].clamp_min(1e-8).numpy()
    ax.scatter(x, y, s=8, alpha=0.6, color="tab:orange", label="predictions")
    lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--", label="equal distance")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="distance to own trained target",
        ylabel="distance to nearest training target",
    )
    share = float((d["pred_to_train"] < d["pred_to_own"]).float().mean())
    ax.set_title(f"{title}\nshare closer to a training target: {share:.2f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def curve_plot(curves: dict[str, dict[int, float]], path: Path, title: str, ylabel: str = "mean query loss") -> Path:
    """Query loss against fine-tuning steps (log-log, step 0 drawn at 0.5), one line per start."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.subplots()
    for name, points in curves.items():
        steps = sorted(points)
        ax.plot([max(s, 0.5) for s in steps], [points[s] for s in steps], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="Adam steps on the support set (0 at 0.5)", ylabel=ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
