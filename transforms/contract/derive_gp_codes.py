"""Derive the GP service code list (``code_lists/gp_service.csv``) from the bundled NZa tariff table.

Why derived: the NZa publishes tariffs per year, not validity periods. The 2022 reform replaced the
consult and visit codes (12xxx): a 12xxx code tariffed only in 2016/2017 (e.g. ``12000``, the consult
until the reform, or the telephone consult ``12004``) is valid until 2021-12-31; a code tariffed only
in 2022/2023 (e.g. ``12010``) from 2022-01-01; a code in both, throughout. Codes outside the reform
(registration fees 11xxx, modules) are valid throughout: the bundled table simply does not repeat
their later tariffs. The M&I
(13000-series) codes come from their own table; the chain-care codes (``KZ-*``) are the project's,
one per programme per quarter, because real chain-care codes differ per care group.

Run ``python -m transforms.contract.derive_gp_codes`` after the reference data change; a test checks
that the committed CSV equals the derivation.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

import reference

OUT = Path(__file__).resolve().parent / "code_lists" / "gp_service.csv"
REFORM_START = "2022-01-01"
LAST_DAY_BEFORE_REFORM = "2021-12-31"

CHAIN_CARE = {
    "KZ-DM": "Ketenzorg diabetes mellitus type 2 (per kwartaal, project code)",
    "KZ-COPD": "Ketenzorg COPD (per kwartaal, project code)",
    "KZ-CVRM": "Ketenzorg cardiovasculair risicomanagement (per kwartaal, project code)",
    "KZ-ASTMA": "Ketenzorg astma (per kwartaal, project code)",
}


def derive() -> pl.DataFrame:
    tariffs = reference.table("gp/gp_tariffs.parquet")
    per_code = tariffs.group_by("service_cd").agg(
        pl.col("description").sort_by("year").last(),
        pl.col("year").min().alias("first_year"),
        pl.col("year").max().alias("last_year"),
    )
    tariffed = per_code.select(
        "service_cd",
        "description",
        pl.when(pl.col("first_year") >= 2022).then(pl.lit(REFORM_START)).otherwise(None).alias("valid_from"),
        pl.when((pl.col("last_year") < 2022) & pl.col("service_cd").str.starts_with("12"))
        .then(pl.lit(LAST_DAY_BEFORE_REFORM))
        .otherwise(None)
        .alias("valid_to"),
    )
    mi = reference.table("gp/gp_mi_codes.parquet").select(
        "service_cd",
        "description",
        pl.lit(None, pl.String).alias("valid_from"),
        pl.lit(None, pl.String).alias("valid_to"),
    )
    chain = pl.DataFrame(
        {"service_cd": list(CHAIN_CARE), "description": list(CHAIN_CARE.values())},
    ).with_columns(pl.lit(None, pl.String).alias("valid_from"), pl.lit(None, pl.String).alias("valid_to"))
    out = pl.concat([tariffed, mi.filter(~pl.col("service_cd").is_in(tariffed["service_cd"].implode())), chain])
    return out.sort("service_cd")


if __name__ == "__main__":
    df = derive()
    df.write_csv(OUT)
    print(f"wrote {df.height} GP service codes to {OUT}")
