"""An independent second implementation of the episode rules in plain DuckDB SQL.

Written from ``docs/episode-rules.md`` and ``docs/bundles.md`` only, as the reference peer
of the polars episode engine: both must produce the same episodes and the same allocated cents.
The logic lives in ``episodes.sql``; this module prepares the inputs (parquet views, bundle
parameters, the completeness date) and returns the two result tables as polars DataFrames.

    from bench.duckdb_episodes import build_episodes
    episodes, episode_lines = build_episodes("/path/to/delivery_or_store")
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

__all__ = ["BUNDLES", "BundleRule", "build_episodes", "completeness_date"]

SQL_PATH = Path(__file__).with_name("episodes.sql")

OUTPATIENT_ACTIVITIES = ("190060", "190013")
CARE_DAY_ACTIVITIES = ("190218", "194804")


@dataclass(frozen=True)
class BundleRule:
    """The parameters of one day-window DBC bundle (docs/episode-rules.md, last table)."""

    bundle_id: str
    pre_days: int
    post_days: int
    trigger_specialism: str
    trigger_diagnoses: tuple[str, ...]
    trigger_activities: tuple[str, ...]
    in_bundle_specialism: str
    in_bundle_diagnoses: tuple[str, ...]
    complication_diagnoses: tuple[str, ...] = ()  # in_bundle_specialism / these, within 365 d
    revision_activities: tuple[str, ...] = ()
    secondary_diagnoses: tuple[str, ...] = ()  # cataract: nastaar after the anchor
    has_complication: bool = False
    has_cataract_outcomes: bool = False


BUNDLES: dict[str, BundleRule] = {
    "hip_oa": BundleRule(
        bundle_id="hip_oa",
        pre_days=120,
        post_days=365,
        trigger_specialism="0305",
        trigger_diagnoses=("1701",),
        trigger_activities=("190305",),
        in_bundle_specialism="0305",
        in_bundle_diagnoses=("1701", "1703"),
        complication_diagnoses=("1703",),
        revision_activities=("038570",),
        has_complication=True,
    ),
    "cataract": BundleRule(
        bundle_id="cataract",
        pre_days=90,
        post_days=730,
        trigger_specialism="0301",
        trigger_diagnoses=("554",),
        trigger_activities=("031242", "031268"),
        in_bundle_specialism="0301",
        in_bundle_diagnoses=("554", "557"),
        secondary_diagnoses=("557",),
        has_cataract_outcomes=True,
    ),
}

EPISODE_COLUMNS = [
    "episode_id",
    "bundle_id",
    "patient_id",
    "anchor_date",
    "anchor_year",
    "anchor_provider_agb",
    "window_start",
    "window_end",
    "n_triggers",
    "status",
    "age_at_anchor",
    "sex",
    "diabetes",
    "obstructive_airway",
    "cardiovascular",
    "lipid",
    "anticoagulants",
    "depression",
    "psychosis",
    "epilepsy",
    "thyroid",
    "cancer",
    "n_chronic_conditions",
    "prior_year_standardised_cents",
    "postcode3",
    "gemeente_code",
    "outpatient_visits",
    "length_of_stay",
    "complication",
    "secondary_cataract",
    "second_eye",
]
EPISODE_LINE_COLUMNS = [
    "episode_id",
    "bundle_id",
    "source_table",
    "claim_id",
    "component",
    "days_in",
    "days",
    "allocated_cents",
    "allocated_standardised_cents",
]

# Per input table: the columns read (as SQL expressions) and the empty-table schema used when the
# table has no parquet files.
_CENTS = "CAST(round(amount * 100) AS BIGINT) AS amount_cents"
_FIRST_LINE = ["claim_id", "patient_id", "service_date", _CENTS]
_SOURCES: dict[str, tuple[list[str], str]] = {
    "insured": (
        [
            "patient_id",
            "enrolled_from",
            "enrolled_to",
            "CAST(birth_year AS INTEGER) AS birth_year",
            "sex",
            "postcode3",
            "gemeente_code",
            "death_date",
        ],
        "patient_id VARCHAR, enrolled_from DATE, enrolled_to DATE, birth_year INTEGER, "
        "sex VARCHAR, postcode3 VARCHAR, gemeente_code VARCHAR, death_date DATE",
    ),
    "dbc": (
        [
            "claim_id",
            "patient_id",
            "provider_agb",
            "specialism_cd",
            "diagnosis_cd",
            "product_cd",
            "start_date",
            "end_date",
            _CENTS,
        ],
        "claim_id VARCHAR, patient_id VARCHAR, provider_agb VARCHAR, specialism_cd VARCHAR, "
        "diagnosis_cd VARCHAR, product_cd VARCHAR, start_date DATE, end_date DATE, "
        "amount_cents BIGINT",
    ),
    "dbc_activity": (
        ["claim_id", "activity_cd", "activity_date", "CAST(quantity AS BIGINT) AS quantity"],
        "claim_id VARCHAR, activity_cd VARCHAR, activity_date DATE, quantity BIGINT",
    ),
    "gp": (_FIRST_LINE, "claim_id VARCHAR, patient_id VARCHAR, service_date DATE, amount_cents BIGINT"),
    "pharmacy": (
        [*_FIRST_LINE, "atc_cd"],
        "claim_id VARCHAR, patient_id VARCHAR, service_date DATE, amount_cents BIGINT, atc_cd VARCHAR",
    ),
    "paramedical": (_FIRST_LINE, "claim_id VARCHAR, patient_id VARCHAR, service_date DATE, amount_cents BIGINT"),
    "maternity": (_FIRST_LINE, "claim_id VARCHAR, patient_id VARCHAR, service_date DATE, amount_cents BIGINT"),
}


def completeness_date(data_as_of: date, runout_months: int = 12) -> date:
    """``data_as_of`` minus ``runout_months``: the same day of the month, clamped to the month's
    last day when that day does not exist (29 Feb 2024 - 12 months = 28 Feb 2023)."""
    months = data_as_of.year * 12 + (data_as_of.month - 1) - runout_months
    year, month = divmod(months, 12)
    month += 1
    day = min(data_as_of.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values) -> str:
    return ", ".join(_sql_str(v) for v in values)


def _read_data_as_of(root: Path) -> date | None:
    meta = root / "delivery.json"
    if not meta.exists():
        return None
    value = json.loads(meta.read_text()).get("data_as_of")
    return date.fromisoformat(value) if value else None


def _register_source(
    con: duckdb.DuckDBPyConnection, root: Path, table: str, name: str, materialise: bool, where: str = ""
) -> None:
    columns, empty_schema = _SOURCES[table]
    kind = "TABLE" if materialise else "VIEW"
    folder = root / table
    if folder.is_dir() and any(folder.glob("**/*.parquet")):
        pattern = _sql_str(str(folder) + "/**/*.parquet")
        con.execute(
            f"CREATE OR REPLACE TEMP {kind} {name} AS SELECT {', '.join(columns)} "
            f"FROM read_parquet({pattern}, hive_partitioning = true, union_by_name = true) {where}"
        )
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name}_empty ({empty_schema})")
        con.execute(f"CREATE OR REPLACE TEMP {kind} {name} AS SELECT * FROM {name}_empty")


def _register_bundles(con: duckdb.DuckDBPyConnection, rules: list[BundleRule]) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE b_params (bundle_id VARCHAR, pre_days INTEGER, "
        "post_days INTEGER, has_complication BOOLEAN, has_cataract_outcomes BOOLEAN)"
    )
    for name, cols in [
        ("b_trigger", "bundle_id VARCHAR, specialism_cd VARCHAR, diagnosis_cd VARCHAR, activity_cd VARCHAR"),
        ("b_in_bundle", "bundle_id VARCHAR, specialism_cd VARCHAR, diagnosis_cd VARCHAR"),
        ("b_complication_dx", "bundle_id VARCHAR, specialism_cd VARCHAR, diagnosis_cd VARCHAR"),
        ("b_secondary_dx", "bundle_id VARCHAR, specialism_cd VARCHAR, diagnosis_cd VARCHAR"),
        ("b_revision", "bundle_id VARCHAR, activity_cd VARCHAR"),
    ]:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({cols})")
    for r in rules:
        b = r.bundle_id
        con.execute(
            "INSERT INTO b_params VALUES (?, ?, ?, ?, ?)",
            [b, r.pre_days, r.post_days, r.has_complication, r.has_cataract_outcomes],
        )
        con.executemany(
            "INSERT INTO b_trigger VALUES (?, ?, ?, ?)",
            [[b, r.trigger_specialism, d, a] for d in r.trigger_diagnoses for a in r.trigger_activities],
        )
        con.executemany(
            "INSERT INTO b_in_bundle VALUES (?, ?, ?)", [[b, r.in_bundle_specialism, d] for d in r.in_bundle_diagnoses]
        )
        if r.complication_diagnoses:
            con.executemany(
                "INSERT INTO b_complication_dx VALUES (?, ?, ?)",
                [[b, r.in_bundle_specialism, d] for d in r.complication_diagnoses],
            )
        if r.secondary_diagnoses:
            con.executemany(
                "INSERT INTO b_secondary_dx VALUES (?, ?, ?)",
                [[b, r.in_bundle_specialism, d] for d in r.secondary_diagnoses],
            )
        if r.revision_activities:
            con.executemany("INSERT INTO b_revision VALUES (?, ?)", [[b, a] for a in r.revision_activities])


def _write_hive(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    """Both result tables as parquet partitioned by bundle and anchor year."""
    out.mkdir(parents=True, exist_ok=True)
    options = "FORMAT parquet, COMPRESSION zstd, PARTITION_BY (bundle_id, anchor_year), OVERWRITE_OR_IGNORE"
    con.execute(f"COPY (SELECT {', '.join(EPISODE_COLUMNS)} FROM episodes_out) TO '{out / 'episodes'}' ({options})")
    con.execute(
        f"COPY (SELECT {', '.join('l.' + c for c in EPISODE_LINE_COLUMNS)}, e.anchor_year "
        "FROM episode_lines_out l JOIN episodes_out e USING (episode_id, bundle_id)) "
        f"TO '{out / 'episode_lines'}' ({options})"
    )


def build_episodes(
    root: str | Path,
    bundles: tuple[str, ...] = ("hip_oa", "cataract"),
    data_as_of: date | None = None,
    runout_months: int = 12,
    threads: int | None = None,
    out: str | Path | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Build the episodes of ``bundles`` from the parquet tables under ``root``.

    ``root`` holds one folder per table (``root/<table>/**/*.parquet``, Hive partitions allowed;
    extra columns are ignored). ``data_as_of`` defaults to ``root/delivery.json``.
    Returns ``(episodes, episode_lines)``; see ``EPISODE_COLUMNS`` / ``EPISODE_LINE_COLUMNS``.
    With ``out``, also writes both as Hive-partitioned parquet (``out/episodes/bundle_id=../
    anchor_year=../``, ``out/episode_lines/...``, zstd), the deliverable the engine writes, so the
    benchmark compares the same work.
    """
    root = Path(root)
    unknown = [b for b in bundles if b not in BUNDLES]
    if unknown:
        raise ValueError(f"unsupported bundles {unknown}; supported: {sorted(BUNDLES)}")
    if data_as_of is None:
        data_as_of = _read_data_as_of(root)
        if data_as_of is None:
            raise ValueError(f"data_as_of not given and no data_as_of in {root / 'delivery.json'}")
    rules = [BUNDLES[b] for b in dict.fromkeys(bundles)]

    con = duckdb.connect(":memory:")
    try:
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE run_params AS "
            "SELECT CAST(? AS DATE) AS data_as_of, CAST(? AS DATE) AS completeness_date",
            [data_as_of, completeness_date(data_as_of, runout_months)],
        )
        _register_bundles(con, rules)
        # dbc (all lines: the national means need them) and the activity rows with a code that
        # some rule looks at are materialised; the first-line tables are read once, via views.
        codes = sorted(
            {a for r in rules for a in r.trigger_activities + r.revision_activities}
            | set(OUTPATIENT_ACTIVITIES)
            | set(CARE_DAY_ACTIVITIES)
        )
        _register_source(con, root, "insured", "s_insured", materialise=True)
        _register_source(con, root, "dbc", "s_dbc", materialise=True)
        _register_source(
            con, root, "dbc_activity", "s_act", materialise=True, where=f"WHERE activity_cd IN ({_sql_list(codes)})"
        )
        for table in ("gp", "pharmacy", "paramedical", "maternity"):
            _register_source(con, root, table, f"v_{table}", materialise=False)

        con.execute(SQL_PATH.read_text())
        if out is not None:
            _write_hive(con, Path(out))

        episodes = con.sql(
            f"SELECT {', '.join(EPISODE_COLUMNS)} FROM episodes_out ORDER BY bundle_id, patient_id, anchor_date"
        ).pl()
        lines = con.sql(
            f"SELECT {', '.join(EPISODE_LINE_COLUMNS)} FROM episode_lines_out "
            "ORDER BY bundle_id, episode_id, source_table, claim_id"
        ).pl()
    finally:
        con.close()
    return episodes, lines
