"""bits.png: the per-layer weight bit widths chosen by HQ, in execution order."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_bits(bits_json: dict[str, Any], path: str | Path) -> Path:
    """Bar chart of bits per layer (FP layers at 32 drawn hatched at the top); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ghostq.core.atomic import atomic_path

    names = list(bits_json["layers"])
    bits = [bits_json["layers"][n]["bits"] for n in names]
    shown = [min(b, 9) for b in bits]
    colors = ["#999999" if b == 32 else plt.cm.viridis((b - 2) / 6) for b in bits]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(names)), 3.6))
    bars = ax.bar(range(len(names)), shown, color=colors)
    for bar, b in zip(bars, bits, strict=True):
        if b == 32:
            bar.set_hatch("//")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
    ax.set_yticks(range(2, 10), [str(b) for b in range(2, 9)] + ["FP"])
    ax.set_ylabel("weight bits")
    ax.set_title(f"HQ ({bits_json.get('mode')}): avg {bits_json['avg_weight_bits']:.2f} bits, "
                 f"{bits_json['size_mb']:.3f} MB, {bits_json['bops_g']:.2f} GBOPs", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
