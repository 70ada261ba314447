"""``zorgpad panel build --estimate``: a Callaway & Sant'Anna report per outcome of the spec, on the
panel's did adapter, with the spec's control group, method, covariates, cluster and anticipation.

- ``episode`` and ``episode_quarter`` rows are repeated cross-sections (each episode, or episode
  quarter, is an observation; treatment varies by provider, so standard errors cluster by
  ``provider_agb`` unless the spec says ``unit_id``);
- ``provider_period`` and ``gemeente_year`` are panels followed over every period; an estimate uses
  the units whose outcome exists in every period (``volume``: every provider; a mean outcome or
  ``log_volume``: providers with episodes in every period), because an estimator would otherwise
  drop such units silently.

Rows without the outcome or a covariate are left out and counted. With ``adjust: true`` the adjusted
outcome is estimated. Where contracts name insurers, each outcome gets two more reports: the
patients of the contracting insurers, and the other insurers' patients of the same treated
providers (free-riding: their effect shows that treatment is a property of the provider); both use
every never-treated provider's patients as controls.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from transforms.did.inputs import DidInputError, DidOptions
from transforms.did.run import write_report
from transforms.did_panel.spec import PanelSpec
from transforms.hashing import file_sha256

SAMPLES = {"all": None, "contracting_insurers": True, "other_insurers": False}
SUMMARY_SCHEMA = {
    "outcome": pl.String,
    "estimated_column": pl.String,
    "sample": pl.String,
    "att": pl.Float64,
    "se": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "pre_treatment_mean": pl.Float64,
    "relative_att": pl.Float64,
    "pretest_p_value": pl.Float64,
    "rows": pl.Int64,
    "rows_left_out": pl.Int64,
    "treated_clusters": pl.Int64,
    "control_clusters": pl.Int64,
    "report": pl.String,
    "error": pl.String,
}
#: Fewer treated clusters than this: the report says the clustered intervals and pre-test are fragile.
FEW_CLUSTERS = 10


def options_for(spec: PanelSpec, column: str) -> DidOptions:
    return DidOptions(
        y=column,
        t="period",
        g="cohort",
        id=None if spec.repeated_cross_sections else "unit_num",
        x=tuple(spec.covariates),
        control=spec.control,
        method=spec.method,
        # the spec's cluster column (provider_agb, gemeente_code); unit_id: the estimator's own
        cluster=spec.cluster if spec.cluster != "unit_id" else None,
        weights="weight" if spec.weights == "episodes" else None,
        repeated_cross_sections=spec.repeated_cross_sections,
        anticipation=spec.treatment.anticipation,
        # a (group, time) cell the estimator cannot fit (a handful of episodes, a covariate
        # without variation in it) is listed in the report and left out of the aggregations,
        # instead of losing every estimate of the outcome
        skip_missing_cells=True,
    )


def usable_rows(panel: pl.DataFrame, spec: PanelSpec, column: str) -> pl.DataFrame:
    """The rows an estimate of ``column`` uses: outcome and covariates present; for panels followed
    over time (provider_period, gemeente_year), only the units that have a row with them in every period (the
    estimator needs a balanced panel: ``volume`` is there for every provider-period, 0 included, a
    mean outcome or ``log_volume`` only where the provider had episodes)."""
    needed = [column, *spec.covariates]
    present = pl.all_horizontal([pl.col(c).is_not_null() & pl.col(c).is_finite() for c in needed])
    if spec.repeated_cross_sections:
        return panel.filter(present)
    periods = panel["period"].n_unique()
    complete = panel.group_by("unit_id").agg((present.all() & (pl.len() == periods)).alias("_complete"))
    return panel.join(complete.filter(pl.col("_complete")).select("unit_id"), on="unit_id", how="semi")


def _sample(panel: pl.DataFrame, signed: bool | None) -> pl.DataFrame:
    if signed is None:
        return panel
    # never-treated providers' patients (contracting_insurer null) are the controls of both samples
    return panel.filter(pl.col("contracting_insurer").is_null() | (pl.col("contracting_insurer") == signed))


def estimate_outcomes(spec: PanelSpec, did_file: Path, out: Path, *, insurer_split: bool) -> dict:
    """Write ``out/<outcome>[/<sample>]/`` reports and ``out/summary.parquet``; returns the summary
    rows and each report's headline."""
    panel = pl.read_parquet(did_file)
    fingerprint = {"path": str(did_file), "sha256": file_sha256(did_file)}
    rows, headlines = [], {}
    samples = SAMPLES if insurer_split else {"all": None}
    for outcome in spec.outcomes:
        column = f"{outcome}_adjusted" if spec.adjust else outcome
        for sample, signed in samples.items():
            subset = _sample(panel, signed)
            usable = usable_rows(subset, spec, column)
            folder = out / outcome if sample == "all" else out / outcome / sample
            folder.mkdir(parents=True, exist_ok=True)
            try:
                report = write_report(
                    usable,
                    folder,
                    options_for(spec, column),
                    source=f"{did_file.name} ({sample})",
                    fingerprint=fingerprint,
                    command="zorgpad panel build --estimate",
                )
            except DidInputError as exc:
                # one outcome the estimator refuses (too few treated in a cell, ...) leaves the panel
                # and the other estimates standing; the reason is in the summary and the manifest
                shutil.rmtree(folder, ignore_errors=True)
                rows.append(
                    {
                        "outcome": outcome,
                        "estimated_column": column,
                        "sample": sample,
                        "rows": usable.height,
                        "rows_left_out": subset.height - usable.height,
                        "error": str(exc),
                    }
                )
                continue
            cluster = spec.cluster
            treated_clusters = usable.filter(pl.col("cohort") != 0)[cluster].n_unique()
            control_clusters = usable.filter(pl.col("cohort") == 0)[cluster].n_unique()
            overall = report["overall"]["simple"]
            pre = usable.filter((pl.col("cohort") != 0) & (pl.col("period") < pl.col("cohort")))[column]
            pre_mean = float(pre.mean()) if pre.len() else None
            att = overall.get("att")
            rows.append(
                {
                    "outcome": outcome,
                    "estimated_column": column,
                    "sample": sample,
                    "att": att,
                    "se": overall.get("se"),
                    "ci_low": overall.get("ci_low"),
                    "ci_high": overall.get("ci_high"),
                    "pre_treatment_mean": pre_mean,
                    "relative_att": att / pre_mean if att is not None and pre_mean else None,
                    "pretest_p_value": report["pretest"].get("p_value"),
                    "rows": usable.height,
                    "rows_left_out": subset.height - usable.height,
                    "treated_clusters": treated_clusters,
                    "control_clusters": control_clusters,
                    "report": folder.relative_to(out.parent).as_posix() + "/report.html",
                    "error": None,
                }
            )
            headline = report["headline"]
            if treated_clusters < FEW_CLUSTERS:
                headline += (
                    f" Only {treated_clusters} treated {cluster} clusters: clustered standard errors and the "
                    "pre-trend test are unreliable with so few (read the event study, and prefer more data)."
                )
            headlines[f"{outcome}/{sample}"] = headline
            (folder / "manifest.json").write_text(_json(report), encoding="utf-8")
    summary = pl.DataFrame(rows, schema=SUMMARY_SCHEMA)
    summary.write_parquet(out / "summary.parquet", compression="zstd", statistics=False)
    return {"summary": summary.to_dicts(), "headlines": headlines, "insurer_split": insurer_split}


def _json(data: dict) -> str:
    import json

    return json.dumps(data, indent=2, default=str) + "\n"


__all__ = ["SAMPLES", "estimate_outcomes", "options_for", "usable_rows"]
