"""What the panels read: the episodes and episode lines of a bundle, and the providers of the store
with their region (the province of the provider's gemeente, from the bundled CBS division).

Eligible episodes: by default status ``complete`` or ``death`` (``docs/panels-spec.md`` section 1). Episodes
that are ``censored_enrolment`` (the patient left the data during the window) or
``censored_data`` (the window ends after the completeness date) are left out of benchmarks and
costs and counted in the manifest; reconciliation counts ``censored_data`` to mark a year
provisional.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

import reference
from transforms.bundles import BundleDefinition, outcome_kinds_of_type

ELIGIBLE_STATUSES = ("complete", "death")
UNKNOWN_REGION = "unknown"


def binary_outcomes(bundle: BundleDefinition) -> list[str]:
    """The bundle's outcomes that are True / False per episode (rates are benchmarked for these)."""
    return [o.name for o in bundle.outcomes if o.kind in outcome_kinds_of_type("boolean")]


def episode_files(episodes: Path, bundle_id: str, table: str = "episodes") -> list[Path]:
    """The parquet files of one bundle's episodes (or episode lines), in a stable order."""
    folder = Path(episodes) / table / f"bundle_id={bundle_id}"
    return sorted(folder.rglob("*.parquet")) if folder.exists() else []


def read_episodes(episodes: Path, bundle_id: str, columns: list[str] | None = None) -> pl.DataFrame:
    """All episodes of a bundle with ``bundle_id`` and ``anchor_year`` (from the partitions),
    sorted by episode id so the order never depends on how the files were written."""
    files = episode_files(episodes, bundle_id)
    if not files:
        return pl.DataFrame()
    frame = pl.read_parquet(files, hive_partitioning=True, columns=columns)
    if columns is None or "episode_id" in columns:
        frame = frame.sort("episode_id")
    return frame


def read_lines(episodes: Path, bundle_id: str, year: int | None = None) -> pl.DataFrame:
    """A bundle's episode lines (of one anchor year when given)."""
    files = [
        f
        for f in episode_files(episodes, bundle_id, "episode_lines")
        if year is None or f.parent.name == f"anchor_year={year}"
    ]
    if not files:
        return pl.DataFrame()
    return pl.read_parquet(files, hive_partitioning=True)


def provinces() -> pl.DataFrame:
    """gemeente_code -> province code and name (CBS gemeentelijke indeling 2020)."""
    return reference.table("cbs/gemeenten_2020.parquet").select(
        "gemeente_code", pl.col("province_code").alias("region_code"), pl.col("province_name").alias("region_name")
    )


def providers_with_region(store: Path) -> pl.DataFrame:
    """The store's providers with their region; a provider whose gemeente is unknown or not in the
    CBS division gets region ``unknown`` (kept, never dropped)."""
    files = sorted((Path(store) / "providers").rglob("*.parquet"))
    providers = pl.read_parquet(files).select("provider_agb", "provider_type", "gemeente_code")
    joined = providers.join(provinces(), on="gemeente_code", how="left")
    return joined.with_columns(
        pl.col("region_code").fill_null(UNKNOWN_REGION), pl.col("region_name").fill_null("unknown")
    ).sort("provider_agb")


def read_contracts(store: Path) -> pl.DataFrame:
    """The store's contracts (the treatment register)."""
    files = sorted((Path(store) / "contracts").rglob("*.parquet"))
    return pl.read_parquet(files).sort("contract_id", "bundle_id", "provider_agb", "insurer_uzovi", nulls_last=True)


def eligible(episodes: pl.DataFrame, statuses: tuple[str, ...] = ELIGIBLE_STATUSES) -> pl.DataFrame:
    return episodes.filter(pl.col("status").is_in(list(statuses)))
