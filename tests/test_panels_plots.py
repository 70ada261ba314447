"""Funnel plots: drawn from published rows only (a withheld cell changes nothing in the picture),
the same bytes on every rebuild, and none when nothing is published."""

from __future__ import annotations

import polars as pl

from transforms.panels.plots import Z95, funnel_plot


def _cells(n_rows: int = 12) -> pl.DataFrame:
    n = [20 + 15 * i for i in range(n_rows)]
    s = 0.3
    rows = []
    for i, count in enumerate(n):
        oe = 1.25 if i == 3 else 1 + ((-1) ** i) * 0.02
        rows.append(
            {
                "level": "provider",
                "unit": f"0600{i:04d}",
                "n_episodes": count,
                "oe": oe,
                "limit95_high": 1 + Z95 * s / count**0.5,
                "tau2": 0.0,
                "suppressed": False,
                "outlier": "high" if i == 3 else None,
            }
        )
    return pl.DataFrame(rows)


def test_a_withheld_cell_is_not_drawn_and_a_rebuild_gives_the_same_bytes(tmp_path):
    cells = _cells()
    first = funnel_plot(cells, "hip_oa 2017", tmp_path / "a.png")
    again = funnel_plot(cells, "hip_oa 2017", tmp_path / "b.png")
    assert first.read_bytes() == again.read_bytes()
    withheld = pl.concat(
        [
            cells,
            pl.DataFrame(
                [
                    {
                        "level": "provider",
                        "unit": "06009999",
                        "n_episodes": 5,
                        "oe": 2.5,
                        "limit95_high": None,
                        "tau2": None,
                        "suppressed": True,
                        "outlier": None,
                    }
                ],
                schema=cells.schema,
            ),
        ]
    )
    assert funnel_plot(withheld, "hip_oa 2017", tmp_path / "c.png").read_bytes() == first.read_bytes()
    assert funnel_plot(cells.with_columns(pl.lit(True).alias("suppressed")), "x", tmp_path / "d.png") is None
    assert not (tmp_path / "d.png").exists()
