"""The plots the labs share: a loss curve and before/after scores.

Every function draws on `ax` if given (so a lab can compose subplots) and returns the Axes.
Without a display (CI, nbgrader, ssh) and outside Jupyter, the non-interactive Agg backend is
selected before pyplot loads, so the functions never fail looking for a window.
"""

from __future__ import annotations

import os
import sys


def _pyplot():
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if headless and "MPLBACKEND" not in os.environ and "ipykernel" not in sys.modules:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize=(6, 4)):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def plot_loss_curve(steps, losses, ax=None, label=None, title="Training loss"):
    """Training loss against optimizer step. Call again with the same `ax` to overlay runs."""
    steps, losses = list(steps), list(losses)
    if len(steps) != len(losses):
        raise ValueError(f"{len(steps)} steps but {len(losses)} losses")
    ax = _axes(ax)
    ax.plot(steps, losses, marker="o" if len(steps) <= 30 else None, markersize=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if label is not None:
        ax.legend()
    return ax


def plot_before_after(before, after, ax=None, title="Held-out scores"):
    """Fact accuracy and format validity of two EvalResults (utils.evaluation), side by side."""
    ax = _axes(ax)
    metrics = [("fact accuracy", "fact_accuracy"), ("format validity", "format_validity")]
    width = 0.38
    for offset, (name, result, color) in zip((-width / 2, width / 2), (("before", before, "C7"), ("after", after, "C0"))):
        heights = [getattr(result, attr) for _, attr in metrics]
        bars = ax.bar([i + offset for i in range(len(metrics))], heights, width, label=name, color=color)
        ax.bar_label(bars, labels=[f"{h:.0%}" for h in heights], padding=2)
    ax.set_xticks(range(len(metrics)), [label for label, _ in metrics])
    ax.set_ylim(0, 1.25)  # headroom for the labels and the legend above a 100% bar
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("share of held-out questions")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper center", ncols=2)
    ax.grid(True, axis="y", alpha=0.3)
    return ax
