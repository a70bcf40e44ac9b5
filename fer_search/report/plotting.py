"""matplotlib for the report's figures: imported when a figure is drawn, with the Agg backend
(no display needed), and every figure saved the same way."""

from __future__ import annotations

from pathlib import Path

__all__ = ["no_data", "pyplot", "save_figure"]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.3")


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
