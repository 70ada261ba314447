"""The planted population contract effect (``SynthConfig.population``): the patients of a few GP
practices spend a known share less from a start year on, and ``truth.json`` says how much.

Two small deliveries with the same seed, with and without the effect, are compared line by line:
only the lines of the chosen practices' patients from the start year differ, each by the planted
percentage rounded to the cent, and the truth's planted savings are the sum of the differences.
"""

from __future__ import annotations

import hashlib
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from transforms.synth import SynthConfig, generate_delivery, truth_dir
from transforms.synth.background import REGISTRATION_CODES
from transforms.synth.config import PopulationEffect

SPENDING = ("dbc", "gp", "pharmacy", "paramedical", "maternity")
SERVICE_DATE = {
    "dbc": "end_date",
    "gp": "service_date",
    "pharmacy": "service_date",
    "paramedical": "service_date",
    "maternity": "service_date",
}
BASE = dict(patients=3_000, first_year=2017, last_year=2020, seed=3, clean=True, block_size=1_500)
PCT = -10.0


def _generate(folder: Path, **population) -> Path:
    config = SynthConfig(**BASE, **({"population": PopulationEffect(**population)} if population else {}))
    generate_delivery(config, folder)
    return folder


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _truth(folder: Path) -> dict:
    return json.loads((truth_dir(folder) / "truth.json").read_text())


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("population_effect")
    return _generate(root / "base"), _generate(root / "effect", spending_pct=PCT)


def _read(folder: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(folder / table / "*.parquet")


def _usual_gp(folder: Path) -> pl.DataFrame:
    """Each patient's usual GP: the practice of their registration fees (always the usual GP)."""
    fees = _read(folder, "gp").filter(pl.col("service_cd").is_in([c for c, _, _ in REGISTRATION_CODES]))
    per_patient = fees.group_by("patient_id").agg(pl.col("provider_agb").unique())
    assert (per_patient["provider_agb"].list.len() == 1).all()
    return per_patient.select("patient_id", pl.col("provider_agb").list.first().alias("usual_gp"))


def _gps_in_province(folder: Path, province: str) -> set[str]:
    from transforms.synth.calibration import load_calibration
    from transforms.synth.providers import build_registry

    config = SynthConfig(**BASE)
    registry = build_registry(config, load_calibration(config.first_year, config.last_year))
    return set(registry.agb[(registry.kind == "gp") & (registry.province == province)].tolist())


def test_off_by_default_and_zero_is_off_whatever_the_other_fields(deliveries, tmp_path):
    base, _ = deliveries
    off = _generate(tmp_path / "off", spending_pct=0.0, province="PV20", practices=5, start_year=2018)
    assert _hashes(off) == _hashes(base)
    assert "population_effect" not in _truth(base)
    assert "population" not in _truth(base)["config"]


def test_only_the_practices_patients_lines_from_the_start_year_change_by_the_planted_share(deliveries):
    base, effect = deliveries
    truth = _truth(effect)["population_effect"]
    assert truth["province"] == "PV31" and truth["start_year"] == 2019 and truth["spending_pct"] == PCT
    practices = truth["practices"]
    providers = _read(base, "providers").filter(pl.col("provider_type") == "gp")
    n_in_province = len(_gps_in_province(effect, "PV31"))
    assert len(practices) == min(2, n_in_province) >= 1 and practices == sorted(practices)
    assert set(practices) <= set(providers["provider_agb"].to_list())
    assert set(practices) <= _gps_in_province(effect, "PV31")

    usual = _usual_gp(base)
    treated = set(usual.filter(pl.col("usual_gp").is_in(practices))["patient_id"].to_list())
    assert treated, "no patient of the chosen practices in the delivery"
    fees = [c for c, _, _ in REGISTRATION_CODES]
    savings: dict[tuple[int, int], int] = {}
    factor = Decimal(1) + Decimal(str(PCT)) / 100
    changed_tables = set()
    for table in SPENDING:
        a, b = _read(base, table), _read(effect, table)
        assert a.drop("amount").equals(b.drop("amount")), f"{table}: a column other than amount differs"
        joined = a.select(
            "claim_id", "patient_id", SERVICE_DATE[table], "amount", *(["service_cd"] if table == "gp" else [])
        ).with_columns(b["amount"].alias("new"))
        expect_change = pl.col("patient_id").is_in(list(treated)) & (pl.col(SERVICE_DATE[table]).dt.year() >= 2019)
        if table == "gp":
            expect_change &= ~pl.col("service_cd").is_in(fees)
        unchanged = joined.filter(~expect_change)
        assert (unchanged["amount"] == unchanged["new"]).all(), f"{table}: a line outside the effect changed"
        hit = joined.filter(expect_change)
        for old, new, day in zip(hit["amount"], hit["new"], hit[SERVICE_DATE[table]]):
            assert new == (old * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), (table, old, new)
            key = (day.year, (day.month - 1) // 3 + 1)
            savings[key] = savings.get(key, 0) + int((old - new) * 100)
        if (hit["amount"] != hit["new"]).any():
            changed_tables.add(table)
    assert {"dbc", "gp", "pharmacy"} <= changed_tables
    planted = {(r["year"], r["quarter"]): r["cents"] for r in truth["planted_savings_cents"]}
    assert planted == {k: v for k, v in savings.items() if v}
    assert truth["planted_savings_cents_total"] == sum(savings.values()) > 0
    assert min(planted) >= (2019, 1)


def test_activities_of_changed_subtrajecten_scale_alike_and_nothing_else_differs(deliveries):
    base, effect = deliveries
    for table in ("insured", "providers", "contracts"):
        assert _read(base, table).equals(_read(effect, table)), table
    a, b = _read(base, "dbc_activity"), _read(effect, "dbc_activity")
    assert a.drop("amount").equals(b.drop("amount"))
    dbc = (
        _read(base, "dbc")
        .select("claim_id", "amount")
        .join(_read(effect, "dbc").select("claim_id", pl.col("amount").alias("new")), on="claim_id")
    )
    changed = set(dbc.filter(pl.col("amount") != pl.col("new"))["claim_id"].to_list())
    diff = a.with_columns(b["amount"].alias("new")).filter(pl.col("amount").ne_missing(pl.col("new")))
    assert set(diff["claim_id"].to_list()) <= changed
    factor = Decimal(1) + Decimal(str(PCT)) / 100
    for old, new in zip(diff["amount"], diff["new"]):
        assert new == (old * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_the_truth_records_the_effect_config_only_when_it_is_on(deliveries):
    _, effect = deliveries
    truth = _truth(effect)
    assert truth["config"]["population"]["spending_pct"] == PCT
    assert truth["delivery_id"] == _truth(deliveries[0])["delivery_id"]


@pytest.mark.parametrize(
    "fields", [{"spending_pct": -95}, {"practices": 0}, {"province": "PV40"}, {"start_year": 2014}]
)
def test_out_of_range_options_are_refused(fields):
    with pytest.raises(ValidationError):
        PopulationEffect(**fields)


def test_the_practices_are_the_provinces_largest_by_expected_patients_without_random_numbers():
    """A delivery big enough for several practices per province: the two with the most expected
    patients (a gemeente's insured split over its practices), the same on every call."""
    import numpy as np

    from transforms.synth.calibration import load_calibration
    from transforms.synth.claims import population_practices
    from transforms.synth.providers import build_registry

    config = SynthConfig(patients=300_000, first_year=2017, last_year=2020)
    calibration = load_calibration(config.first_year, config.last_year)
    registry = build_registry(config, calibration)
    effect = PopulationEffect(spending_pct=PCT, province="PV31", practices=2)
    chosen = population_practices(effect, calibration, registry)
    assert np.array_equal(chosen, population_practices(effect, calibration, registry))
    gps = np.flatnonzero((registry.kind == "gp") & (registry.province == "PV31"))
    assert gps.size > 2 and chosen.size == 2 and set(chosen) <= set(gps)
    # the expected list size: the gemeente's population share over its practices
    share = np.einsum("sa,sag->g", calibration.age_sex_share, calibration.gemeente_share)
    per_gemeente = np.bincount(registry.gemeente[registry.kind == "gp"], minlength=share.size)
    size = share[registry.gemeente[gps]] / per_gemeente[registry.gemeente[gps]]
    assert size[np.isin(gps, chosen)].min() >= size[~np.isin(gps, chosen)].max()
