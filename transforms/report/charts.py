"""The charts of the run report, drawn with matplotlib into PNG bytes (no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless backend, chosen before pyplot is imported
import matplotlib.pyplot as plt


def episodes_chart_png(years: list[int], rows: list[dict]) -> bytes:
    """Grouped bars: episodes per anchor year, one colour per bundle."""
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        ax.bar([x + i * width for x in range(len(years))], row["counts"], width=width, label=row["bundle"])
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(years))], [str(y) for y in years])
    ax.set_xlabel("anchor year")
    ax.set_ylabel("episodes")
    ax.legend(fontsize=7, ncols=3, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


__all__ = ["episodes_chart_png"]
