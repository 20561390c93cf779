"""Training-curve plot (loss parts and val mAP per epoch) as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ghostq.core.atomic import atomic_path


def plot_training_curves(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Left: loss parts per epoch; right: val mAP50 and mAP50:95. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in history]
    for key in ("loss", "cls", "box"):
        if history and key in history[0]:
            ax_loss.plot(epochs, [r[key] for r in history], marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("training loss")
    ax_loss.legend()
    evals = [r for r in history if "mAP50" in r]
    for key in ("mAP50", "mAP50_95"):
        ax_map.plot([r["epoch"] for r in evals], [r[key] for r in evals], marker="o", label=key)
    ax_map.set_xlabel("epoch")
    ax_map.set_ylim(0, 1)
    ax_map.set_title("val mAP")
    ax_map.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
