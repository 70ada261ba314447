"""Charts of the regional panel, drawn with matplotlib from the published ``regional`` table only
(so a chart always agrees with the numbers beside it), in the style of the panels' funnel plots.
No map: a funnel per year and a small-multiples trend of the largest gemeenten.

- :func:`funnel_plot` -- one year and category: every gemeente's O/E against its insured-years (log
  scale), the 95% and 99.8% limits around 1 without overdispersion (grey) and with the
  random-effects variance ``tau2`` (blue), outliers coloured, the outliers and the largest gemeenten
  labelled. A gemeente's own limits depend on its age mix (``se0 = s sqrt(sum(n m^2)) / E``); the
  curves are drawn for the median age mix, ``se0 = s sqrt(k / insured-years)`` with ``k`` the
  median of ``(se0 / s)^2 x insured-years``, so a point near a curve is flagged by its own limits,
  which may differ slightly from the drawn ones.
- :func:`trend_plot` -- O/E per year of the largest gemeenten, one panel each, with the band of
  their 95% random-effects limits and the least-squares trend line.

PNG files carry no timestamp, so a rebuild gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; set before pyplot is imported
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from transforms.panels.funnel import Z95, Z998
from transforms.regional.panel import UNKNOWN

#: Gemeenten labelled on a funnel besides the outliers, and drawn in the small multiples.
LABEL_LARGEST = 6
TREND_LARGEST = 12


def display_name(row: dict) -> str:
    """A readable gemeente name: the Vektis name in title case (``'S GRAVENHAGE`` -> ``'S Gravenhage``)."""
    name = row.get("gemeente_vektis")
    return name.title() if name else row["gemeente"]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


#: Where a label may sit, in points from its point, in order of preference.
_OFFSETS = ((4, 3), (4, -10), (-4, 3), (-4, -10), (4, 11), (4, -18), (-4, 11), (-4, -18))


def _place_labels(fig, ax, labels: list[tuple[str, float, float, str]]) -> None:
    """Label points, each at the first offset where it overlaps no label placed before it (the
    last offset when none is free): deterministic, so a rebuild draws the same picture."""
    renderer = fig.canvas.get_renderer()
    taken = []
    for text, x, y, flag in labels:
        for dx, dy in _OFFSETS:
            leader = (
                None
                if (dx, dy) == _OFFSETS[0]
                else {"arrowstyle": "-", "color": "0.6", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 2}
            )
            note = ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                fontsize=7,
                ha="left" if dx > 0 else "right",
                color="black" if flag else "dimgray",
                arrowprops=leader,
            )
            box = note.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in taken) or (dx, dy) == _OFFSETS[-1]:
                taken.append(box)
                break
            note.remove()


def funnel_plot(rows: pl.DataFrame, title: str, path: Path) -> Path | None:
    """The funnel of one year and category (rows of ``regional``); None when no gemeente has limits."""
    shown = rows.filter((pl.col("gemeente") != UNKNOWN) & pl.col("oe").is_not_null() & pl.col("se0").is_not_null())
    if shown.height == 0:
        return None
    n = shown["insured_years"].to_numpy()
    oe = shown["oe"].to_numpy()
    first = shown.row(0, named=True)
    s, tau2 = first["cv_person"], first["tau2"] or 0.0
    k = float(np.median((shown["se0"].to_numpy() / s) ** 2 * n))
    grid = np.geomspace(n.min() * 0.8, n.max() * 1.25, 300)
    se0 = s * np.sqrt(k / grid)

    fig, ax = plt.subplots(figsize=(8.5, 5.5), dpi=110)
    for z, style, label in ((Z95, (0, (4, 3)), "95%"), (Z998, (0, (1, 2)), "99.8%")):
        ax.plot(grid, 1 + z * se0, color="grey", linestyle=style, linewidth=1, label=f"{label} limits")
        ax.plot(grid, 1 - z * se0, color="grey", linestyle=style, linewidth=1)
        if tau2 > 0:
            adjusted = z * np.sqrt(se0**2 + tau2)
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
    ax.scatter(n, oe, c=colours, s=18, zorder=3, edgecolors="white", linewidths=0.5)
    largest = set(shown.sort("insured_years", descending=True)["gemeente"].head(LABEL_LARGEST).to_list())
    ax.set_xscale("log")
    labels = [
        (display_name(row), x, y, flag)
        for row, x, y, flag in zip(shown.iter_rows(named=True), n, oe, outlier)
        if flag or row["gemeente"] in largest
    ]
    ax.set_xlabel("insured-years (log scale)")
    ax.set_ylabel("observed / expected (age and sex standardised)")
    ax.set_title(title, fontsize=10)
    unknown = rows.filter(pl.col("gemeente") == UNKNOWN)
    note = (
        f"{shown.height} gemeenten; red / green: outside the 99.8% random-effects limits; s = {s:.2f} per "
        f"insured-year, phi = {first['phi']:.1f}, tau = {np.sqrt(tau2):.3f}"
    )
    if unknown.height:
        note += (
            f"\nunknown gemeente ({unknown['insured_years'][0]:,.0f} insured-years): no sex or age class, "
            "so not standardised and not shown"
        )
    fig.text(0.01, 0.005, note, fontsize=6.5, color="dimgray", ha="left", va="bottom")
    fig.legend(
        *ax.get_legend_handles_labels(),
        loc="lower center",
        ncol=2,
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.5, 0.045),
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    _place_labels(fig, ax, sorted(labels, key=lambda item: -abs(item[2] - 1)))  # once the axes are in place
    return _save(fig, path)


def trend_plot(rows: pl.DataFrame, title: str, path: Path, largest: int = TREND_LARGEST) -> Path | None:
    """Small multiples of O/E per year for the ``largest`` gemeenten (by insured-years in the last
    year) of one category; None when no gemeente has an O/E."""
    known = rows.filter((pl.col("gemeente") != UNKNOWN) & pl.col("oe").is_not_null())
    if known.height == 0:
        return None
    last = known["year"].max()
    chosen = known.filter(pl.col("year") == last).sort(["insured_years", "gemeente"], descending=[True, False])
    units = chosen["gemeente"].head(largest).to_list()
    columns = 4
    lines = -(-len(units) // columns)
    fig, axes = plt.subplots(
        lines, columns, figsize=(11, 2.3 * lines + 0.8), dpi=110, sharex=True, sharey=True, squeeze=False
    )
    years = sorted(known["year"].unique().to_list())
    for ax in axes.flat[len(units) :]:
        ax.set_visible(False)
    for ax, unit in zip(axes.flat, units):
        series = known.filter(pl.col("gemeente") == unit).sort("year")
        x, y = series["year"].to_numpy(), series["oe"].to_numpy()
        if series["limit95_adj_low"].null_count() < series.height:
            ax.fill_between(
                x,
                series["limit95_adj_low"].to_numpy(),
                series["limit95_adj_high"].to_numpy(),
                color="tab:blue",
                alpha=0.12,
                linewidth=0,
                label="95% limits (random effects)",
            )
        ax.axhline(1.0, color="black", linewidth=0.7)
        ax.plot(x, y, color="tab:blue", marker="o", markersize=3, linewidth=1.2, label="O/E")
        row = series.row(-1, named=True)
        slope = row["trend_slope"]
        label = display_name(row)
        if slope is not None:
            fitted = y.mean() + slope * (x - x.mean())  # the least-squares line passes through the means
            ax.plot(x, fitted, color="tab:orange", linewidth=1, linestyle="--", label="trend")
            label += f"\n{slope * 100:+.2f} pp/year (se {row['trend_slope_se'] * 100:.2f})"
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", color="0.9", linewidth=0.6)
    axes[0][0].set_xticks([yr for yr in years if yr % 2 == 1] if len(years) > 6 else years)
    fig.suptitle(title, fontsize=10)
    fig.supylabel("observed / expected", fontsize=8)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, path)
