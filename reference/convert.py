"""Convert the public reference data in ``../shared/reference`` into the compact parquet bundled here.

This is a *build-time* script: zorgpad never reads ``../shared`` at run time. Run it once when the
upstream files change::

    python -m reference.convert /path/to/shared/reference

Every output keeps the upstream content; the only changes are typing (dates as dates, codes as
strings with their leading zeros), column names in English snake case, and zstd compression. The
Vektis files are kept verbatim (every cell as text) because harmonising their drift is zorgpad's own
job (``zorgpad ingest-vektis``) and must be testable against the untouched originals.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent

# --- NZa DBC tables ---------------------------------------------------------------------------
# (source file, output name, {source column: output column}) ; BeginDatum/EindDatum become
# valid_from / valid_to (null = open-ended).
NZA_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "specialisms": (
        "Specialismen.csv",
        {"SpecialismeCode": "specialism_cd", "SpecialismeOmschrijving": "description"},
    ),
    "diagnoses": (
        "Diagnosen.csv",
        {
            "SpecialismeCode": "specialism_cd",
            "DiagnoseCode": "diagnosis_cd",
            "DiagnoseOmschrijving": "description",
            "ICD10DiagnoseCode": "icd10_cd",
        },
    ),
    "activities": (
        "ZorgActiviteiten.csv",
        {
            "ZorgActiviteitCode": "activity_cd",
            "ZorgActiviteitOmschrijving": "description",
            "Zorgprofielklassecode": "care_profile_class_cd",
            "TariefType": "tariff_type",
        },
    ),
    "products": (
        "Producten.csv",
        {
            "ProductCode": "product_cd",
            "ProductOmschrijving": "description",
            "DeclaratieCodeVerzekerdeZorg": "declaration_cd",
        },
    ),
    "care_types": (
        "ZorgTypen.csv",
        {
            "SpecialismeCode": "specialism_cd",
            "ZorgTypeCode": "care_type_cd",
            "ZorgTypeOmschrijving": "description",
            "MaximaleLooptijd": "max_duration_days",
        },
    ),
}


def _read_text_csv(path: Path, separator: str = ",") -> pl.DataFrame:
    """Read a CSV with every column as text, so leading zeros and exact spellings survive."""
    return pl.read_csv(path, separator=separator, infer_schema=False, encoding="utf8-lossy")


def convert_nza_table(path: Path, columns: dict[str, str]) -> pl.DataFrame:
    """One NZa grouper table -> code, description, validity period (dates), extra columns."""
    raw = _read_text_csv(path)
    out = raw.select(
        *[pl.col(src).alias(dst) for src, dst in columns.items()],
        pl.col("BeginDatum").str.to_date("%Y-%m-%d").alias("valid_from"),
        pl.when(pl.col("EindDatum").str.len_chars() > 0)
        .then(pl.col("EindDatum"))
        .otherwise(None)
        .str.to_date("%Y-%m-%d")
        .alias("valid_to"),
    )
    if "max_duration_days" in out.columns:
        out = out.with_columns(pl.col("max_duration_days").cast(pl.Int32))
    key = [c for c in out.columns if c.endswith("_cd")][:2]
    return out.sort([*key, "valid_from"])


def _write(df: pl.DataFrame, path: Path) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path, compression="zstd", compression_level=19, statistics=False)
    return {"rows": df.height, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def convert_all(shared_reference: Path, dest: Path = HERE) -> dict[str, dict]:
    """Convert everything zorgpad needs; returns a manifest {output file: {rows, sha256, source}}."""
    manifest: dict[str, dict] = {}

    def record(out_rel: str, df: pl.DataFrame, source: str) -> None:
        manifest[out_rel] = {**_write(df, dest / out_rel), "source": source}

    nza = shared_reference / "nza_dbc_2017"
    for name, (file, columns) in NZA_TABLES.items():
        record(f"nza/{name}.parquet", convert_nza_table(nza / file, columns), f"nza_dbc_2017/{file}")

    for path in sorted((shared_reference / "vektis_open_data").glob("*.csv")):
        record(f"vektis/{path.stem}.parquet", _read_text_csv(path, ";"), f"vektis_open_data/{path.name}")

    cbs = shared_reference / "cbs"
    gemeenten = _read_text_csv(cbs / "cbs_gemeentelijke_indeling.csv", ";")
    gemeenten = gemeenten.rename({c: c.lstrip("\ufeff") for c in gemeenten.columns}).select(
        pl.col("GemeentecodeGM").alias("gemeente_code"),
        pl.col("Gemeentenaam").alias("gemeente_name"),
        pl.col("ProvinciecodePV").alias("province_code"),
        pl.col("Provincienaam").alias("province_name"),
    )
    record("cbs/gemeenten_2020.parquet", gemeenten, "cbs/cbs_gemeentelijke_indeling.csv")
    vektis_names = pl.read_excel(cbs / "Vektis_gemeenten.xlsx").select(
        pl.col("Gemeente_vektis").alias("vektis_name"),
        pl.col("Gemeente").alias("gemeente_name"),
        pl.col("GM_code").alias("gemeente_code"),
        pl.col("PV_code").alias("province_code"),
    )
    record("cbs/vektis_gemeente_names.parquet", vektis_names, "cbs/Vektis_gemeenten.xlsx")
    woonplaats = _read_text_csv(cbs / "cbs_woonplaats_gemeente.csv", ";").slice(1)
    woonplaats = woonplaats.select(
        pl.nth(0).alias("woonplaats_name"),
        pl.nth(1).alias("woonplaats_code"),
        pl.nth(2).alias("gemeente_name"),
        pl.nth(3).str.strip_chars().alias("gemeente_code"),
    )
    record("cbs/woonplaats_gemeente.parquet", woonplaats, "cbs/cbs_woonplaats_gemeente.csv")

    agb = shared_reference / "agb"
    record("agb/zorgsoorten.parquet", _read_text_csv(agb / "agb_zorgsoorten.csv"), "agb/agb_zorgsoorten.csv")
    record(
        "agb/kwalificaties.parquet",
        _read_text_csv(agb / "agb_kwalificaties_selectie.csv"),
        "agb/agb_kwalificaties_selectie.csv",
    )

    gp = shared_reference / "gp_prestatiecodes"
    tariffs = _read_text_csv(gp / "huisartsenzorg_prestaties_nza_maximumtarieven.csv").select(
        pl.col("prestatiecode").alias("service_cd"),
        pl.col("omschrijving").alias("description"),
        pl.col("jaar").cast(pl.Int16).alias("year"),
        pl.col("nza_maximumtarief_eur").cast(pl.Float64).alias("max_tariff_eur"),
        pl.col("eenheid").alias("unit"),
        pl.col("bron_url").alias("source_url"),
    )
    record("gp/gp_tariffs.parquet", tariffs, "gp_prestatiecodes/huisartsenzorg_prestaties_nza_maximumtarieven.csv")
    mi = _read_text_csv(gp / "huisartsenzorg_MI_13000_reeks_omschrijvingen.csv").select(
        pl.col("prestatiecode").alias("service_cd"),
        pl.col("omschrijving").alias("description"),
        pl.col("bron_url").alias("source_url"),
    )
    record("gp/gp_mi_codes.parquet", mi, "gp_prestatiecodes/huisartsenzorg_MI_13000_reeks_omschrijvingen.csv")

    # did_mpdta/ is a verbatim copy (CSV as R wrote it, so `zorgpad did estimate mpdta.csv` runs on
    # the file itself), not converted here: see did_mpdta/README.md

    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 2:  # the upstream folder lies outside the repository: always named, never assumed
        sys.exit("usage: python -m reference.convert /path/to/shared/reference")
    source = Path(sys.argv[1])
    result = convert_all(source)
    for name, info in result.items():
        print(f"{name:45s} {info['rows']:>8d} rows")
