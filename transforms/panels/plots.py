"""Funnel plots of the provider benchmark, drawn with matplotlib from the published table only, so a
plot never shows a suppressed cell and always agrees with the numbers beside it.

One plot per bundle, anchor year and cost basis: every published provider's O/E against its number
of episodes, the 95% and 99.8% limits around 1 (the unadjusted ones dashed and, when the group is
overdispersed, the random-effects ones solid), and the AGB code next to every outlier. The limits
are curves in n: for costs ``1 +/- z * sqrt(s^2 / n + tau2)``, where ``s`` (the pooled coefficient of
variation) is read back from any row's unadjusted 95% limit, ``(limit95_high - 1) / 1.96 * sqrt(n)``.
PNG files carry no timestamp, so a rebuild gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; set before pyplot is imported
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

Z95, Z998 = 1.959963984540054, 3.090232306167813


def funnel_plot(cells: pl.DataFrame, title: str, path: Path) -> Path | None:
    """Draw the funnel of one comparison group (provider rows of one bundle, year and basis) into
    ``path``; returns None when no published provider is left to draw."""
    shown = cells.filter((pl.col("level") == "provider") & ~pl.col("suppressed") & pl.col("oe").is_not_null())
    if shown.height == 0:
        return None
    n = shown["n_episodes"].to_numpy().astype(float)
    oe = shown["oe"].to_numpy()
    first = shown.row(0, named=True)
    s = (first["limit95_high"] - 1.0) / Z95 * np.sqrt(first["n_episodes"])
    tau2 = first["tau2"] or 0.0
    grid = np.linspace(max(1.0, n.min() * 0.8), n.max() * 1.1, 200)

    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=110)
    for z, style, label in ((Z95, (0, (4, 3)), "95%"), (Z998, (0, (1, 2)), "99.8%")):
        half = z * s / np.sqrt(grid)
        ax.plot(grid, 1 + half, color="grey", linestyle=style, linewidth=1, label=f"{label} limits")
        ax.plot(grid, 1 - half, color="grey", linestyle=style, linewidth=1)
        if tau2 > 0:
            adjusted = z * np.sqrt(s**2 / grid + tau2)
            ax.plot(
                grid,
                1 + adjusted,
                color="tab:blue",
                linestyle=style,
                linewidth=1.4,
                label=f"{label} limits, overdispersion (random effects)",
            )
            ax.plot(grid, 1 - adjusted, color="tab:blue", linestyle=style, linewidth=1.4)
    ax.axhline(1.0, color="black", linewidth=0.8)
    outlier = shown["outlier"].fill_null("").to_numpy()
    colours = np.where(outlier == "high", "tab:red", np.where(outlier == "low", "tab:green", "tab:gray"))
    ax.scatter(n, oe, c=colours, s=22, zorder=3, edgecolors="white", linewidths=0.5)
    for agb, x, y, flag in zip(shown["unit"].to_list(), n, oe, outlier):
        if flag:
            ax.annotate(agb, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("episodes (n)")
    ax.set_ylabel("observed / expected")
    ax.set_title(title, fontsize=10)
    # below the axes: inside, the legend would cover the outliers, which sit in the upper corners
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
