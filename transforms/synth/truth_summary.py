"""The panel parts of the truth: expected settlements (``settlements.parquet``) and what was planted
for the provider benchmark and the regional baselines (``truth.json`` ``panel_effects``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.synth.config import SynthConfig
from transforms.synth.paths.common import EXTRA_CARE
from transforms.synth.providers import (
    BUNDLE_PRODUCTS,
    PRICE_LEVEL,
    PRICE_SPREAD,
    REGIONAL_BASELINE_BUNDLES,
    ProviderRegistry,
)
from transforms.synth.settlements import (
    PHASES,
    Contract,
    Reconciliation,
    TruthEpisode,
    contracts_from_rows,
    not_computable,
)

ELIGIBLE = ("complete", "death")


def read_episodes(truth: Path, bundles: list[str] | None = None) -> pl.DataFrame:
    frame = pl.read_parquet(truth / "episodes" / "*.parquet", missing_columns="insert")
    return frame if bundles is None else frame.filter(pl.col("bundle_id").is_in(bundles))


def _truth_episodes(frame: pl.DataFrame, outcome_names: set[str]) -> list[TruthEpisode]:
    phase_cols = [f"{p}_{s}" for p in PHASES for s in ("cents", "standardised_cents")]
    cols = [
        "bundle_id",
        "episode_id",
        "patient_id",
        "anchor_date",
        "anchor_provider_agb",
        "anchor_province",
        "status",
        "in_bundle_cents",
        "in_bundle_standardised_cents",
    ]
    outcomes = [c for c in sorted(outcome_names) if c in frame.columns]
    phases = [c for c in phase_cols if c in frame.columns]
    out = []
    for row in frame.select(*cols, *outcomes, *phases).iter_rows(named=True):
        out.append(
            TruthEpisode(
                bundle_id=row["bundle_id"],
                episode_id=row["episode_id"],
                patient_id=row["patient_id"],
                anchor_date=row["anchor_date"],
                provider=row["anchor_provider_agb"],
                province=row["anchor_province"],
                status=row["status"],
                declared=int(row["in_bundle_cents"]),
                standardised=int(row["in_bundle_standardised_cents"]),
                outcomes={o: bool(row[o]) for o in outcomes if row[o] is not None},
                phases={
                    p: (int(row[f"{p}_cents"] or 0), int(row[f"{p}_standardised_cents"] or 0))
                    for p in PHASES
                    if f"{p}_cents" in row
                },
            )
        )
    return out


def write_settlements(config: SynthConfig, registry: ProviderRegistry, truth: Path) -> dict:
    """Compute every contract's expected settlement from the truth episodes; write
    ``settlements.parquet`` and ``settlement_shares.parquet``; return the truth.json section."""
    contracts = contracts_from_rows(registry.contracts.to_dicts())
    computable: list[Contract] = []
    skipped = []
    for contract in contracts:
        reason = not_computable(contract)
        if reason:
            skipped.append({"contract_id": contract.contract_id, "bundle_id": contract.bundle_id, "reason": reason})
        else:
            computable.append(contract)
    bundles = sorted({c.bundle_id for c in computable})
    gates = {c.parameters["quality_gate"]["outcome"] for c in computable if "quality_gate" in c.parameters}
    episodes = _truth_episodes(read_episodes(truth, bundles), gates) if bundles else []
    reconciliation = Reconciliation(
        episodes,
        province_of=dict(zip(registry.agb.tolist(), registry.province.tolist())),
        type_of=dict(zip(registry.agb.tolist(), registry.kind.tolist())),
        data_as_of=config.as_of,
        first_year=config.first_year,
        last_year=config.last_year,
    )
    rows, shares, computed = [], [], []
    for contract in computable:
        try:
            r, s = reconciliation.rows(contract)
        except ValueError as exc:  # e.g. no baseline episodes in a small delivery
            skipped.append({"contract_id": contract.contract_id, "bundle_id": contract.bundle_id, "reason": str(exc)})
            continue
        rows += r
        shares += s
        computed.append(
            {
                "contract_id": contract.contract_id,
                "bundle_id": contract.bundle_id,
                "model": contract.model,
                "settlement_rows": sum(x["kind"] == "settlement" for x in r),
                "placebo_rows": sum(x["kind"] == "placebo" for x in r),
            }
        )
    schema = {
        "contract_id": pl.String,
        "bundle_id": pl.String,
        "model": pl.String,
        "kind": pl.String,
        "performance_year": pl.Int32,
        "contract_year": pl.Int32,
        "phase": pl.String,
        "cost_basis": pl.String,
        "baseline": pl.String,
        "n_episodes": pl.Int64,
        "n_censored_data": pl.Int64,
        "provisional": pl.Boolean,
        **{
            f"{m}_{s}": (pl.Int64 if s == "cents" else pl.String)
            for m in ("baseline", "target", "actual", "gross_savings", "settlement")
            for s in ("cents", "exact")
        },
        "corridor_met": pl.Boolean,
        "quality_met": pl.Boolean,
        "quality_rate": pl.String,
        "outside_band": pl.Boolean,
        "data_as_of": pl.Date,
    }
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    frame = frame.select(list(schema)).sort(
        "contract_id", "bundle_id", "kind", "performance_year", "phase", nulls_last=True
    )
    frame.write_parquet(truth / "settlements.parquet", compression="zstd")
    share_schema = {
        "contract_id": pl.String,
        "bundle_id": pl.String,
        "performance_year": pl.Int32,
        "provider_agb": pl.String,
        "share": pl.String,
        "share_cents": pl.Int64,
    }
    pl.DataFrame(shares, schema=share_schema).write_parquet(truth / "settlement_shares.parquet", compression="zstd")
    return {
        "computed": True,
        "files": ["settlements.parquet", "settlement_shares.parquet"],
        "rules": "docs/panels-spec.md section 3 steps 1-10 as read in transforms/synth/settlements.py (its docstring lists "
        "every choice where the spec is silent)",
        "contracts": computed,
        "not_computed": skipped,
        "runout_months": 12,
    }


def panel_effects_summary(config: SynthConfig, registry: ProviderRegistry, truth: Path | None) -> dict:
    """What was planted for the panels, and (clean deliveries) what it gave."""
    effects = config.providers
    planted = []
    for kind in ("utilisation", "price"):
        index = registry.planted[kind]
        factor = effects.utilisation_factor if kind == "utilisation" else effects.price_factor
        planted.append(
            {
                "bundle": effects.bundle,
                "provider_agb": str(registry.agb[index]),
                "kind": kind,
                "factor": factor,
                "active": factor != 1.0,
                "patient_share": effects.patient_share if factor != 1.0 else 0.0,
                "province": str(registry.province[index]),
                "how": (
                    f"extra in-bundle clinical stays ({EXTRA_CARE[effects.bundle][0]}, {(factor - 1) * 100:.0f}% of an "
                    f"ordinary episode's in-bundle cost on average) and two more care days on the operation; prices "
                    f"at the national level (1.0)"
                )
                if kind == "utilisation"
                else (
                    f"price level {factor} for the bundle's products {', '.join(BUNDLE_PRODUCTS[effects.bundle])}, "
                    f"1.0 for everything else; ordinary care"
                ),
            }
        )
    regional = config.regional
    out = {
        "provider_benchmark": {
            "providers": planted,
            "never_contracted": True,
            "note": "both are hospitals outside the costlier province that never sign the bundle's contract; each "
            "draws patient_share of the bundle's patients nationally (high-volume centres). Compare them "
            "with providers that are not treated: the contract lowers treated providers' operation price.",
        },
        "price_levels": {
            "hospital_zbc_rehabilitation": f"level * exp(e), e ~ N(0, {PRICE_SPREAD}) truncated at +-{2 * PRICE_SPREAD}",
            "levels": {"hospital": 1.0, "rehabilitation": 1.0, **PRICE_LEVEL},
            "before": "lognormal sigma 0.08 untruncated, ZBC level 0.88",
        },
        "regional": {
            "province": regional.province,
            "factors": dict(regional.factors),
            "how": {
                b: f"episodes anchored at a provider in {regional.province} get extra {EXTRA_CARE[b][0]} "
                f"subtrajecten worth {(f - 1) * 100:.0f}% of an ordinary episode's in-bundle cost on average"
                for b, f in regional.factors.items()
            },
            "contracts_in_province": list(REGIONAL_BASELINE_BUNDLES),
            "stroke_tail_share": regional.stroke_tail_share,
            "stroke_tail": "that share of stroke patients (any province) get 1, 2 or 3 (50/30/20%) extra clinical "
            "rehabilitation stays (rehab_clinical, 80 days each, from 100 days after discharge)",
        },
    }
    if truth is not None:
        out["provider_benchmark"]["realised"] = _realised_providers(config, registry, truth)
        out["regional"]["realised"] = _realised_regions(config, truth)
    return out


def _realised_providers(config: SynthConfig, registry: ProviderRegistry, truth: Path) -> list[dict]:
    bundle = config.providers.bundle
    eps = read_episodes(truth, [bundle]).filter(pl.col("status").is_in(ELIGIBLE))
    contracted = set(registry.contracts.filter(pl.col("bundle_id") == bundle)["provider_agb"].to_list())
    out = []
    planted = {str(registry.agb[i]) for i in registry.planted.values()}
    peers = eps.filter(~pl.col("anchor_provider_agb").is_in(list(contracted | planted)))
    peer_mean = peers.select(pl.col("in_bundle_cents").mean(), pl.col("in_bundle_standardised_cents").mean()).row(0)
    for kind, index in registry.planted.items():
        agb = str(registry.agb[index])
        mine = eps.filter(pl.col("anchor_provider_agb") == agb)
        means = mine.select(pl.col("in_bundle_cents").mean(), pl.col("in_bundle_standardised_cents").mean()).row(0)
        out.append(
            {
                "provider_agb": agb,
                "kind": kind,
                "eligible_episodes": mine.height,
                "mean_in_bundle_cents": means[0],
                "mean_in_bundle_standardised_cents": means[1],
                "peer_episodes": peers.height,
                "peer_mean_in_bundle_cents": peer_mean[0],
                "peer_mean_in_bundle_standardised_cents": peer_mean[1],
                "ratio_declared": (means[0] / peer_mean[0]) if mine.height and peer_mean[0] else None,
                "ratio_standardised": (means[1] / peer_mean[1]) if mine.height and peer_mean[1] else None,
            }
        )
    return out


def _realised_regions(config: SynthConfig, truth: Path) -> dict:
    regional = config.regional
    bundles = sorted(set(regional.factors) | set(REGIONAL_BASELINE_BUNDLES))
    eps = read_episodes(truth, bundles).filter(pl.col("status").is_in(ELIGIBLE))
    out = {}
    for bundle in bundles:
        b = eps.filter(pl.col("bundle_id") == bundle).with_columns(
            (pl.col("anchor_province") == regional.province).alias("_in")
        )
        stats = b.group_by("_in").agg(
            pl.len().alias("n"),
            pl.col("in_bundle_cents").mean().alias("declared"),
            pl.col("in_bundle_standardised_cents").mean().alias("standardised"),
            pl.col("in_bundle_cents").quantile(0.95, "linear").alias("p95"),
        )
        d = {
            ("province" if r["_in"] else "elsewhere"): {k: r[k] for k in ("n", "declared", "standardised", "p95")}
            for r in stats.to_dicts()
        }
        if "province" in d and "elsewhere" in d and d["elsewhere"]["declared"]:
            d["ratio_declared"] = d["province"]["declared"] / d["elsewhere"]["declared"]
            d["ratio_standardised"] = d["province"]["standardised"] / d["elsewhere"]["standardised"]
        out[bundle] = d
    return out
