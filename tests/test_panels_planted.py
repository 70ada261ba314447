"""What the generator plants, found by the panels at realistic volumes (``-m slow``: about 12 minutes
on two cores).

A delivery like a region: 300,000 insured over 2015-2020 with a fifth of the national hospitals, ZBCs
and rehabilitation centres (``specialist_scale=0.2``: 14 hospitals and 12 ZBCs, one or more per
province), so an ordinary provider does 10-40 hip operations a year. Two planted hip providers draw 6%
of the hip patients each (a large Dutch hospital's share) and are 20% costlier: one by utilisation
(declared and standardised cost), one by price (declared cost only). Zuid-Holland (PV28) gives 20% more
in-bundle care for cataract, and the cataract contracts (signed in 2018) are placed there.

Claims (issue 12, "Done when"):
- the utilisation provider is flagged ``high`` outside the 99.8% limit on declared and standardised
  cost in every mature year, the price provider on declared cost only (in at least two of the three
  years: about 40 operations a year), its price difference vanishing in standardised cost, and no
  other provider is flagged ``high`` (measured, seed 2026: utilisation O/E 1.11-1.22, price declared
  1.13-1.27 and standardised 0.96-1.07);
- the placebo over the cataract contracts' pre-contract years (2015-2017) flags the national baseline
  (a Zuid-Holland contract measured against the country saves on paper what its province costs more)
  and not ``regional_capped_p95``.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from flows.dask_cluster import dask_cluster, dask_mapper
from transforms.episodes.run import build_episodes
from transforms.ingest.run import ingest
from transforms.panels.run import PanelOptions, build_panels
from transforms.panels.tables import table
from transforms.synth import SynthConfig, generate_delivery, truth_dir
from transforms.synth.config import ProviderEffects

pytestmark = pytest.mark.slow

CONFIG = SynthConfig(
    patients=300_000,
    first_year=2015,
    last_year=2020,
    seed=2026,
    clean=True,
    specialist_scale=0.2,
    providers=ProviderEffects(patient_share=0.06),
)
#: Years whose hip episodes are complete at the delivery's data_as_of (31 March 2021): 2015's lack
#: the year of history before the operation, the last two years' follow-up and run-out are not all in.
MATURE_YEARS = (2016, 2017, 2018)


@pytest.fixture(scope="module")
def panels(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("planted")
    generate_delivery(CONFIG, root / "delivery", workers=2)
    with dask_cluster(workers=2) as address:
        ingest(root / "delivery", root / "store", mapper=dask_mapper(address), data_docs=False)
        build_episodes(
            root / "store", root / "episodes", bundles=["hip_oa", "cataract"], mapper=dask_mapper(address), workers=2
        )
        build_panels(
            root / "store",
            root / "episodes",
            root / "panels",
            PanelOptions(bundles=("hip_oa", "cataract")),
            mapper=dask_mapper(address),
            address=address,
        )
    truth = json.loads((truth_dir(root / "delivery") / "truth.json").read_text())
    planted = {p["kind"]: p["provider_agb"] for p in truth["panel_effects"]["provider_benchmark"]["providers"]}
    return {"panels": root / "panels", "planted": planted}


def hip_providers(panels: Path) -> pl.DataFrame:
    return (
        table("benchmark")
        .read(panels)
        .filter(
            (pl.col("bundle_id") == "hip_oa") & (pl.col("level") == "provider") & pl.col("year").is_in(MATURE_YEARS)
        )
    )


def test_the_planted_providers_are_flagged_high_and_no_other_is(panels):
    rows = hip_providers(panels["panels"])
    utilisation, price = panels["planted"]["utilisation"], panels["planted"]["price"]
    published = rows.filter(~pl.col("suppressed"))
    assert published.filter(~pl.col("provider_agb").is_in([utilisation, price]))["provider_agb"].n_unique() >= 10, (
        "ordinary providers are published: the volumes are realistic"
    )

    def flags(agb: str, basis: str) -> list:
        return (
            published.filter((pl.col("provider_agb") == agb) & (pl.col("cost_basis") == basis))
            .sort("year")["outlier"]
            .to_list()
        )

    assert flags(utilisation, "declared") == ["high"] * len(MATURE_YEARS)
    assert flags(utilisation, "standardised") == ["high"] * len(MATURE_YEARS)
    # the price provider draws fewer patients (about 40 a year: no province of its own adds to its
    # share), so at 99.8% it is not found every year; it is costlier on declared cost every year
    assert flags(price, "declared").count("high") >= len(MATURE_YEARS) - 1
    declared_price = published.filter((pl.col("provider_agb") == price) & (pl.col("cost_basis") == "declared"))
    assert declared_price.select((pl.col("oe") > 1.1).all()).item(), declared_price
    standardised_price = published.filter((pl.col("provider_agb") == price) & (pl.col("cost_basis") == "standardised"))
    assert standardised_price.height == len(MATURE_YEARS)
    assert standardised_price.filter(pl.col("outlier").is_not_null()).height == 0, standardised_price
    inside = (pl.col("oe") >= pl.col("limit998_adj_low")) & (pl.col("oe") <= pl.col("limit998_adj_high"))
    assert standardised_price.select(inside.all()).item()
    others = published.filter(~pl.col("provider_agb").is_in([utilisation, price]) & (pl.col("outlier") == "high"))
    assert others.height == 0, others.select(
        "year", "cost_basis", "provider_agb", "n_episodes", "oe", "limit998_adj_high"
    )


def test_the_placebo_flags_the_national_baseline_not_the_capped_regional_one(panels):
    summary = table("placebo_summary").read(panels["panels"]).filter(pl.col("bundle_id") == "cataract")
    assert summary["contract_id"].n_unique() >= 1
    by_baseline = summary.group_by("baseline").agg(
        pl.col("n_years").sum(), pl.col("n_outside_band").sum(), pl.col("mean_gap_cents").mean()
    )
    national = by_baseline.filter(pl.col("baseline") == "national").row(0, named=True)
    capped = by_baseline.filter(pl.col("baseline") == "regional_capped_p95").row(0, named=True)
    assert national["n_years"] >= 3 and capped["n_years"] >= 3
    assert national["n_outside_band"] * 2 > national["n_years"], national
    assert capped["n_outside_band"] == 0, capped
