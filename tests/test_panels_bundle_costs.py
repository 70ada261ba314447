"""Bundle costs on hand-made episodes and lines: phases, components, zeros for missing cells,
percentiles, the winsorised mean and rounding half away from zero, all computed by hand here."""

from __future__ import annotations

from datetime import date

import polars as pl

from transforms.panels.bundle_costs import bundle_costs, episode_costs


def _episodes() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "episode_id": ["e1", "e2", "e3"],
            "anchor_provider_agb": ["A", "A", "B"],
            "anchor_claim_id": ["D1", "D2", "D3"],
            "anchor_table": ["dbc", "dbc", "dbc"],
            "anchor_date": [date(2019, 5, 1)] * 3,
        }
    )


def _lines() -> pl.DataFrame:
    rows = [  # episode, claim, table, component, start, declared, standardised
        ("e1", "D0", "dbc", "in_bundle", date(2019, 2, 1), 1_000, 900),  # pre
        ("e1", "D1", "dbc", "in_bundle", date(2019, 4, 20), 10_000, 9_000),  # index (starts before the anchor day)
        ("e1", "G1", "gp", "gp", date(2019, 6, 1), 25, 25),  # post
        ("e2", "D2", "dbc", "in_bundle", date(2019, 5, 1), 12_001, 9_000),
        ("e3", "D3", "dbc", "in_bundle", date(2019, 5, 1), 30_000, 9_500),
        ("e3", "F3", "pharmacy", "pharmacy", date(2019, 7, 1), 101, 101),
    ]
    return pl.DataFrame(
        rows,
        schema=[
            "episode_id",
            "claim_id",
            "source_table",
            "component",
            "start",
            "allocated_cents",
            "allocated_standardised_cents",
        ],
        orient="row",
    ).with_columns(pl.lit(None, pl.String).alias("phase"))


def test_every_episode_has_every_component_and_phase_with_zero_where_it_has_no_line():
    costs = episode_costs(_episodes(), _lines(), "hip_oa")
    assert costs.height == 3 * 2 * 7 * 4

    def cost(episode, basis, component, phase):
        return costs.filter(
            (pl.col("episode_id") == episode)
            & (pl.col("cost_basis") == basis)
            & (pl.col("component") == component)
            & (pl.col("phase") == phase)
        )["cents"].item()

    assert cost("e1", "declared", "in_bundle", "pre") == 1_000
    assert cost("e1", "declared", "in_bundle", "index") == 10_000
    assert cost("e1", "declared", "gp", "post") == 25
    assert cost("e1", "declared", "total", "all") == 11_025
    assert cost("e2", "standardised", "gp", "all") == 0
    assert cost("e3", "declared", "total", "post") == 101


def test_distribution_statistics_by_hand():
    out = bundle_costs(_episodes(), _lines(), "hip_oa", 2019, winsorise_pct=50)
    national = out.filter(
        (pl.col("level") == "national")
        & (pl.col("cost_basis") == "declared")
        & (pl.col("component") == "in_bundle")
        & (pl.col("phase") == "all")
    ).row(0, named=True)
    # in-bundle declared per episode: e1 11,000, e2 12,001, e3 30,000
    assert national["n_episodes"] == 3 and national["total_cents"] == 53_001
    assert national["mean_cents"] == 17_667  # 53,001 / 3 = 17,667.0
    assert national["median_cents"] == 12_001
    assert national["p10_cents"] == 11_200  # 11,000 + 0.2 * (12,001 - 11,000) = 11,200.2
    assert national["p90_cents"] == 26_400  # 12,001 + 0.8 * (30,000 - 12,001) = 26,400.2
    # winsorised at the national median 12,001: (11,000 + 12,001 + 12,001) / 3 = 11,667.33
    assert national["winsorised_mean_cents"] == 11_667
    provider_a = out.filter(
        (pl.col("unit") == "A")
        & (pl.col("cost_basis") == "declared")
        & (pl.col("component") == "in_bundle")
        & (pl.col("phase") == "all")
    ).row(0, named=True)
    assert provider_a["n_episodes"] == 2 and provider_a["median_cents"] == 11_501  # 11,500.5 rounds away from zero
    assert provider_a["mean_cents"] == 11_501


def test_birth_care_uses_its_four_phases():
    lines = _lines().with_columns(pl.lit("prenatal").alias("phase"))
    costs = episode_costs(_episodes(), lines, "birth_care")
    assert set(costs["phase"].unique()) == {"all", "prenatal", "natal", "postnatal", "maternity_care"}
    assert (
        costs.filter(
            (pl.col("episode_id") == "e1")
            & (pl.col("phase") == "prenatal")
            & (pl.col("component") == "total")
            & (pl.col("cost_basis") == "declared")
        )["cents"].item()
        == 11_025
    )
