"""Contract reconciliation (nacalculatie), the placebo over the pre-contract years, initial vs final.

``docs/panels-spec.md`` section 3 is the specification; the steps below carry its numbers. Inputs are plain
frames (no file is read here): one bundle's episodes, the providers (``provider_agb``,
``provider_type``, ``region`` = province code, or ``region_code`` as ``panels.inputs`` names it;
``unknown`` = no region), the ``contracts`` rows and the delivery's
``data_as_of``. :func:`reconcile` returns a :class:`Reconciliation` with five frames
(``reconciliation``, ``settlement``, ``placebo``, ``placebo_summary``, ``phases``);
:func:`compare` sets two reconciliations of different deliveries side by side.

Arithmetic: every amount (means, baselines, targets, trend powers, discounts, gross savings,
corridor thresholds, payments, shares) is an exact :class:`fractions.Fraction` of cents, so a mean
such as ``300025 / 3`` is never cut off at some digit; each published cents value is rounded once,
half away from zero, from the exact value (:func:`round_cents`), so ``settlement_cents`` is
``round(S_y * rate)``, not a product of rounded numbers, and a gross saving of exactly half a cent
goes away from zero. Decimal parameters enter exactly (``Fraction(Decimal('1.02'))``), floats (an
``expected_cents`` from the case-mix model) as the decimal of their shortest repr (``0.1`` is
``1/10``). Flags compare exact values (``corridor_met`` and ``outside_band`` compare squares, so no
square root enters a flag); only the published ``sd_cents``, ``corridor_cents`` (ci95) and
``band_cents`` come from a square root, a 60-digit decimal one of the exact variance. Percentiles are
exact decimals (the interpolation only divides by 100).

The spec's steps, and what this module decided where the spec is silent:

1. Eligible episodes: status ``complete`` or ``death``. ``censored_data`` and ``censored_enrolment``
   episodes are counted (``n_censored_data``, ``n_censored_enrolment``), never used. A row is
   ``provisional`` while a ``censored_data`` episode exists that would enter its numbers once mature:
   the contract's own episodes of the year (reason ``own``), the baseline population's in the baseline
   years (``baseline``), and, when a percentile over all providers is used (``winsorise_pct``,
   ``regional_capped_p95``), any episode of the bundle in the year or the baseline years (``percentile``).
2. Episode cost ``c`` = ``in_bundle_cents`` (``cost_basis: declared``) or
   ``in_bundle_standardised_cents`` (``standardised``), capped from above (one-sided) at
   - the ``winsorise_pct`` percentile of all providers' eligible episodes of the bundle and anchor
     year (all insurers, all contracts, treated or not);
   - ``stop_loss_eur`` x 100 cents;
   - for ``regional_capped_p95``, instead of the stop-loss, the 95th percentile of the eligible
     episodes of the episode's own region (its anchor provider's province) and anchor year.
   ``c`` is one number per episode, used in the baseline, the actual mean, the sd and the placebo
   alike, so the regional P95 cap applies to the actual costs as well as to the baseline. Every
   percentile is taken over the raw costs (before any cap) by linear interpolation between the
   order statistics (numpy's default ``linear`` method: ``h = (n - 1) p / 100``,
   ``x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])``), computed exactly in decimals.
   ``stop_loss_eur`` with baseline ``regional_capped_p95`` is refused by the terms.
3. Baseline ``B`` = mean over the baseline population's eligible episodes anchored in
   ``baseline_years`` of ``c * trend^(L - year)``, ``L = max(baseline_years)``. Populations:
   ``own`` = the contract's providers' episodes (for the insurer of each provider row; null = all);
   ``regional`` and ``regional_capped_p95`` = every episode whose anchor provider lies in a province
   of one of the contract's providers (the union of those provinces, the contract's own providers
   included, all insurers); ``national`` = every episode of the bundle. A provider missing from the
   providers table, or with a null region, belongs to no region (only to the national population);
   the contract's own providers must have both.
4. ``T_y = B * trend^(y - L) * (1 - discount)``; with ``risk_adjust`` also times
   ``mean(expected of the year's contract episodes) / mean(expected of the baseline episodes)``
   (columns ``expected_cents`` / ``expected_standardised_cents`` by cost basis; ``risk_ratio``).
   ``A_y`` = mean ``c`` of the contract's episodes anchored in ``y`` inside the contract period: an
   episode of provider ``p`` counts when some row of ``p`` (for the episode's insurer, or all
   insurers) has ``start_date <= anchor_date <= end_date`` (null end = open); each episode once.
   Performance years run from the contract's first start year to the last anchor year of the
   bundle's episodes (any status), and not past the last ``end_date`` when every row has one; a
   year without eligible episodes is reported with ``n_episodes`` 0 and settlement 0. When the
   baseline population has no eligible episode in the baseline years there is no target: the
   settlement is null and ``note`` says why.
5. ``S_y = (T_y - A_y) * n_y``.
6. Corridor, exact: met when ``|T - A| * 100 >= minimum_savings_pct * T`` (no settlement when below;
   the default 0 is always met); with ``corridor: ci95`` met when ``|T - A| >= 1.96 sd(c) / sqrt(n)``
   with ``sd`` the sample sd (n - 1) of the year's contract ``c``; fewer than 2 episodes: not met.
   ``corridor_cents`` is the threshold per episode (``pct / 100 * T``, or the ci95 half-width).
7. Quality gate: the rate is the share of the year's contract episodes whose Boolean outcome is
   true (null counts as false); met when ``rate <= threshold``. A failed gate stops savings only.
8. ``k = y - start_year + 1`` (``contract_year``; first start year over the contract's rows).
   Settlement = ``S * shared_savings_rate`` when ``S > 0``, corridor and gate met;
   ``S * shared_losses_rate`` when ``S < 0``, corridor met and ``k >= losses_from_contract_year``
   (``losses_apply``); else 0. Positive = owed to the providers.
9. Distribution over the contract's providers: by ``distribution_key`` (AGB codes: those shares,
   unnamed providers 0; provider types: each type's share split among the contract's providers of
   that type pro rata to their eligible episodes of the year, equally when the type has none), or
   pro rata to the eligible episodes of the year. Cents by largest remainder
   (:func:`distribute_cents`): each provider gets the floor of ``|settlement| * share``, the cents
   left over go one each to the largest remainders (ties: lower AGB code first), and the sign is put
   back, so the providers' cents add up exactly to ``settlement_cents``.
10. ``fixed_sum``: ``fixed_sum_eur_per_patient * patients - sum(c)`` with patients = distinct
    ``patient_id`` with an eligible episode in the year (inside the period); ``bundled_payment``:
    ``sum over episodes (payment_eur_per_episode - c)``, or with ``payment_eur_per_phase``
    ``sum over episodes and phases (payment_phase - cost of the phase)`` where a phase's cost is the
    sum of the episode's ``in_bundle`` ``episode_lines`` of that phase (every phase is paid for every
    eligible episode; the phase costs of an episode must add up to its in-bundle cost). Result
    positive = the payment exceeded the cost. These models have no baseline, corridor, gate or
    placebo; ``target_cents`` is the payment per episode.

Placebo: for every anchor year of the data before the contract's first start year (baseline years
included) and each of the four baselines, steps 2-5 with the contract's other terms (trend,
discount, cost basis, winsorising, stop-loss except under ``regional_capped_p95``, risk adjustment),
on the contract's providers' eligible episodes of that year (no period filter: the contract had not
started). ``band_cents = 1.96 sd(c) / sqrt(n)``; ``outside_band`` when ``|T - A| >= band`` and
``T != A`` (exactly when a ci95 corridor would have let a non-zero settlement through); null below 2
episodes. The summary per
contract x baseline gives the share of years outside the band and the mean (absolute) gap.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction
from math import floor

import polars as pl

from transforms.errors import UserFacingError
from transforms.panels.contract_terms import (
    BASELINES,
    PHASES,
    Contract,
    ContractTermsError,
    Terms,
    check_contracts,
)

__all__ = [
    "COMPARE_SCHEMA",
    "DESCRIPTIONS",
    "PHASES_SCHEMA",
    "PLACEBO_SCHEMA",
    "PLACEBO_SUMMARY_SCHEMA",
    "RECONCILIATION_SCHEMA",
    "SETTLEMENT_SCHEMA",
    "ContractTermsError",
    "Reconciliation",
    "ReconciliationError",
    "bundle_outcomes",
    "compare",
    "distribute_cents",
    "percentile",
    "reconcile",
    "round_cents",
]

#: percentiles (exact: they only divide by 100) and the published square roots
CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)
ELIGIBLE = ("complete", "death")
STATUSES = ("complete", "censored_enrolment", "censored_data", "death")
Z95 = Fraction(196, 100)
P95 = Decimal(95)
COST_COLUMN = {"declared": "in_bundle_cents", "standardised": "in_bundle_standardised_cents"}
EXPECTED_COLUMN = {"declared": "expected_cents", "standardised": "expected_standardised_cents"}
UNKNOWN_REGION = "unknown"  # panels.inputs' placeholder for a provider whose province is unknown
LINE_COST_COLUMN = {"declared": "allocated_cents", "standardised": "allocated_standardised_cents"}

RECONCILIATION_SCHEMA: dict[str, pl.DataType] = {
    "contract_id": pl.String,
    "bundle_id": pl.String,
    "performance_year": pl.Int32,
    "model": pl.String,
    "baseline": pl.String,
    "baseline_years": pl.List(pl.Int32),
    "cost_basis": pl.String,
    "contract_year": pl.Int32,
    "losses_apply": pl.Boolean,
    "n_episodes": pl.Int64,
    "n_censored_data": pl.Int64,
    "n_censored_enrolment": pl.Int64,
    "n_patients": pl.Int64,
    "baseline_cents": pl.Int64,
    "target_cents": pl.Int64,
    "actual_cents": pl.Int64,
    "gross_savings_cents": pl.Int64,
    "sd_cents": pl.Int64,
    "corridor_cents": pl.Int64,
    "corridor_met": pl.Boolean,
    "quality_outcome": pl.String,
    "quality_events": pl.Int64,
    "quality_rate": pl.Float64,
    "quality_met": pl.Boolean,
    "risk_ratio": pl.Float64,
    "payment_cents": pl.Int64,
    "settlement_cents": pl.Int64,
    "provisional": pl.Boolean,
    "provisional_reason": pl.String,
    "note": pl.String,
    "data_as_of": pl.Date,
}
SETTLEMENT_SCHEMA: dict[str, pl.DataType] = {
    "contract_id": pl.String,
    "bundle_id": pl.String,
    "performance_year": pl.Int32,
    "provider_agb": pl.String,
    "provider_type": pl.String,
    "n_episodes": pl.Int64,
    "share": pl.Float64,
    "settlement_cents": pl.Int64,
    "data_as_of": pl.Date,
}
PLACEBO_SCHEMA: dict[str, pl.DataType] = {
    "contract_id": pl.String,
    "bundle_id": pl.String,
    "baseline": pl.String,
    "contract_baseline": pl.Boolean,
    "year": pl.Int32,
    "baseline_year": pl.Boolean,
    "n_episodes": pl.Int64,
    "baseline_cents": pl.Int64,
    "target_cents": pl.Int64,
    "actual_cents": pl.Int64,
    "gap_cents": pl.Int64,
    "gross_savings_cents": pl.Int64,
    "sd_cents": pl.Int64,
    "band_cents": pl.Int64,
    "outside_band": pl.Boolean,
    "provisional": pl.Boolean,
    "provisional_reason": pl.String,
    "note": pl.String,
    "data_as_of": pl.Date,
}
PLACEBO_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "contract_id": pl.String,
    "bundle_id": pl.String,
    "baseline": pl.String,
    "contract_baseline": pl.Boolean,
    "n_years": pl.Int64,
    "n_outside_band": pl.Int64,
    "share_outside_band": pl.Float64,
    "mean_gap_cents": pl.Int64,
    "mean_abs_gap_cents": pl.Int64,
    "max_abs_gap_cents": pl.Int64,
    "n_provisional_years": pl.Int64,
    "data_as_of": pl.Date,
}
PHASES_SCHEMA: dict[str, pl.DataType] = {
    "contract_id": pl.String,
    "bundle_id": pl.String,
    "performance_year": pl.Int32,
    "phase": pl.String,
    "n_episodes": pl.Int64,
    "payment_cents": pl.Int64,
    "actual_cents": pl.Int64,
    "result_cents": pl.Int64,
    "data_as_of": pl.Date,
}
COMPARE_SCHEMA: dict[str, pl.DataType] = {
    "contract_id": pl.String,
    "bundle_id": pl.String,
    "performance_year": pl.Int32,
    "change": pl.String,
    "n_episodes_earlier": pl.Int64,
    "n_episodes_later": pl.Int64,
    "n_episodes_change": pl.Int64,
    "settlement_cents_earlier": pl.Int64,
    "settlement_cents_later": pl.Int64,
    "settlement_change_cents": pl.Int64,
    "provisional_earlier": pl.Boolean,
    "provisional_later": pl.Boolean,
    "data_as_of_earlier": pl.Date,
    "data_as_of_later": pl.Date,
}


#: one line per output column, for the data dictionary
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "reconciliation": {
        "contract_id": "contract (the contracts register's contract_id)",
        "bundle_id": "bundle settled",
        "performance_year": "anchor year y settled",
        "model": "payment model",
        "baseline": "baseline choice of the contract (shared-savings models)",
        "baseline_years": "anchor years of the baseline; L = the last",
        "cost_basis": "declared or standardised in-bundle cost",
        "contract_year": "k = y - first start year + 1",
        "losses_apply": "a loss is shared this year (model with losses and k >= losses_from_contract_year)",
        "n_episodes": "eligible (complete or death) episodes of the contract's providers in y inside the period",
        "n_censored_data": "censored_data episodes of the contract in y (not yet mature, not used)",
        "n_censored_enrolment": "censored_enrolment episodes of the contract in y (not used)",
        "n_patients": "distinct patients among the eligible episodes (fixed_sum pays per patient)",
        "baseline_cents": "B per episode: trended mean c of the baseline population in the baseline years",
        "target_cents": "T_y per episode (bundled payment / fixed sum: payment per episode)",
        "actual_cents": "A_y: mean c of the eligible episodes",
        "gross_savings_cents": "S_y = (T_y - A_y) n_y; fixed sum / bundled payment: payment - cost",
        "sd_cents": "sample sd (n - 1) of c of the eligible episodes",
        "corridor_cents": "corridor threshold per episode (pct / 100 * T, or 1.96 sd / sqrt(n))",
        "corridor_met": "|T - A| reaches the corridor (a settlement is possible)",
        "quality_outcome": "outcome of the quality gate",
        "quality_events": "eligible episodes with the outcome",
        "quality_rate": "quality_events / n_episodes",
        "quality_met": "rate <= threshold (savings may be paid)",
        "risk_ratio": "mean expected of the year / mean expected of the baseline (risk_adjust)",
        "payment_cents": "total payment (fixed sum x patients, or bundled payments)",
        "settlement_cents": "amount owed to the providers (negative: owed by them), rounded once",
        "provisional": "a censored_data episode would still change this row",
        "provisional_reason": "own / baseline / percentile: where the immature episodes are",
        "note": "why a value is missing",
        "data_as_of": "the delivery's data_as_of",
    },
    "settlement": {
        "provider_agb": "a provider of the contract",
        "provider_type": "its type",
        "n_episodes": "its eligible episodes in y",
        "share": "its share of the settlement",
        "settlement_cents": "its cents (largest remainder: they add up to the contract's settlement)",
    },
    "placebo": {
        "baseline": "benchmark tried",
        "contract_baseline": "the contract's own choice",
        "year": "pre-contract anchor year",
        "baseline_year": "the year is one of the baseline years",
        "gap_cents": "T - A per episode: the saving the benchmark finds where nothing changed",
        "band_cents": "1.96 sd(c) / sqrt(n)",
        "outside_band": "|gap| >= band and gap != 0",
    },
    "placebo_summary": {
        "n_years": "placebo years with a band (n >= 2)",
        "n_outside_band": "years flagged",
        "share_outside_band": "n_outside_band / n_years",
        "mean_gap_cents": "mean signed gap per episode",
        "mean_abs_gap_cents": "mean absolute gap per episode",
        "max_abs_gap_cents": "largest absolute gap",
    },
    "phases": {
        "phase": "birth-care phase",
        "payment_cents": "phase payment x eligible episodes",
        "actual_cents": "in-bundle cost of the phase",
        "result_cents": "payment - cost",
    },
}


class ReconciliationError(UserFacingError, ValueError):
    """Inputs that cannot be reconciled (a missing column, a provider without a region, ...)."""


@dataclass(frozen=True)
class Reconciliation:
    """The frames of one bundle's reconciliation (each sorted by its key)."""

    reconciliation: pl.DataFrame
    settlement: pl.DataFrame
    placebo: pl.DataFrame
    placebo_summary: pl.DataFrame
    phases: pl.DataFrame


# --- exact helpers ------------------------------------------------------------------------------


def round_cents(value: Decimal | int | Fraction) -> int:
    """Cents rounded half away from zero (``2.5 -> 3``, ``-2.5 -> -3``), the one rounding step,
    from the exact value (a Decimal is converted exactly)."""
    exact = value if isinstance(value, Fraction) else Fraction(value)
    sign = -1 if exact < 0 else 1
    return sign * floor(abs(exact) + Fraction(1, 2))


def percentile(sorted_values: Sequence[int | Decimal], pct: Decimal | int) -> Decimal:
    """The ``pct`` percentile of ascending values by linear interpolation (numpy's ``linear``),
    exactly: ``h = (n - 1) * pct / 100``, ``x[floor h] + (h - floor h) * (x[floor h + 1] - x[floor h])``."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    with localcontext(CONTEXT):
        h = Decimal(n - 1) * Decimal(pct) / 100
        lo = int(h.to_integral_value(rounding=ROUND_FLOOR))
        low = Decimal(sorted_values[lo])
        if lo + 1 >= n:
            return low
        return low + (h - lo) * (Decimal(sorted_values[lo + 1]) - low)


def distribute_cents(total_cents: int, shares: Mapping[str, Fraction | Decimal | int]) -> dict[str, int]:
    """Split integer cents over keys by shares (non-negative, adding up to exactly 1) with the
    largest-remainder method: floors of ``|total| * share``, the cents left over one each to the
    largest remainders (ties: the smaller key), then the sign of ``total``. The parts add up to
    ``total_cents`` exactly and a share of 0 never gets a cent."""
    fractions = {k: Fraction(v) for k, v in shares.items()}
    if any(v < 0 for v in fractions.values()) or sum(fractions.values(), Fraction(0)) != 1:
        raise ValueError(f"shares must be non-negative and add up to 1: {dict(sorted(shares.items()))}")
    sign = -1 if total_cents < 0 else 1
    magnitude = abs(int(total_cents))
    quotas = {k: magnitude * v for k, v in fractions.items()}
    parts = {k: floor(q) for k, q in quotas.items()}
    left = magnitude - sum(parts.values())
    for key in sorted(quotas, key=lambda k: (-(quotas[k] - parts[k]), k))[:left]:
        parts[key] += 1
    return {k: sign * parts[k] for k in sorted(parts)}


def _exact(value: object) -> Fraction:
    """A number as an exact fraction: a Decimal or int as it is, a float as its shortest repr."""
    if isinstance(value, float):
        return Fraction(Decimal(repr(value)))
    return Fraction(value)  # type: ignore[arg-type]


def _sqrt(value: Fraction) -> Decimal:
    """The square root of an exact non-negative fraction, to 60 significant digits (for the
    published sd and band cents only; flags compare squares)."""
    with localcontext(CONTEXT):
        return (Decimal(value.numerator) / Decimal(value.denominator)).sqrt()


def bundle_outcomes() -> dict[str, set[str]]:
    """Outcome names per bundle, from the bundle definitions (``transforms/bundles/``)."""
    from transforms.bundles import load_bundles

    return {b: {o.name for o in d.outcomes} for b, d in load_bundles().items()}


# --- the data of one bundle, indexed once -------------------------------------------------------


@dataclass
class _Group:
    """Eligible episodes of one provider x insurer x anchor year on one cost basis."""

    values: list[int]  # ascending cents
    prefix: list[int]  # prefix[k] = sum(values[:k])
    prefix_sq: list[int]
    expected: Fraction | None

    @property
    def n(self) -> int:
        return len(self.values)

    def capped(self, cap: Fraction | None) -> tuple[Fraction, Fraction]:
        """(sum, sum of squares) of ``min(x, cap)``, exactly."""
        if cap is None:
            return Fraction(self.prefix[-1]), Fraction(self.prefix_sq[-1])
        k = bisect.bisect_left(self.values, cap)
        rest = self.n - k
        return self.prefix[k] + cap * rest, self.prefix_sq[k] + cap * cap * rest


@dataclass(frozen=True)
class _Variant:
    """How raw costs become ``c`` (step 2)."""

    basis: str
    winsorise_pct: Decimal | None
    stop_loss_cents: Fraction | None
    capped_p95: bool


GroupKey = tuple[str, str | None, int]  # provider, insurer, anchor year


@dataclass
class _Bundle:
    bundle_id: str
    episodes: pl.DataFrame  # normalised columns, see _prepare
    region: dict[str, str | None]
    ptype: dict[str, str | None]
    min_year: int | None
    max_year: int | None
    censored: dict[GroupKey, int]
    lines: pl.DataFrame | None
    _groups: dict[str, dict[GroupKey, _Group]] = field(default_factory=dict)
    _year_values: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    _region_values: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    _caps: dict[tuple[_Variant, str, int], Fraction | None] = field(default_factory=dict)
    _pcts: dict[tuple, Decimal | None] = field(default_factory=dict)

    def groups(self, basis: str) -> dict[GroupKey, _Group]:
        if basis not in self._groups:
            eligible = self.episodes.filter(pl.col("eligible"))
            has_expected = f"expected_{basis}" in eligible.columns
            aggs = [pl.col(f"x_{basis}").sort().alias("v")]
            if has_expected:
                aggs.append(pl.col(f"expected_{basis}").alias("e"))
            frame = (
                eligible.group_by(["provider", "insurer", "year"])
                .agg(aggs)
                .sort(["provider", "insurer", "year"], nulls_last=False)
            )
            groups: dict[GroupKey, _Group] = {}
            for row in frame.iter_rows(named=True):
                values = row["v"]
                expected = None
                if has_expected and all(e is not None for e in row["e"]):
                    expected = sum((_exact(e) for e in row["e"]), Fraction(0))
                groups[(row["provider"], row["insurer"], row["year"])] = _Group(
                    values,
                    [0, *itertools.accumulate(values)],
                    [0, *itertools.accumulate(v * v for v in values)],
                    expected,
                )
            self._groups[basis] = groups
            years = eligible.group_by("year").agg(pl.col(f"x_{basis}").sort().alias("v"))
            for year, values in years.iter_rows():
                self._year_values[(basis, year)] = values
            regions = (
                eligible.filter(pl.col("region").is_not_null())
                .group_by(["region", "year"])
                .agg(pl.col(f"x_{basis}").sort().alias("v"))
            )
            for region, year, values in regions.iter_rows():
                self._region_values[(basis, region, year)] = values
        return self._groups[basis]

    def _pct(self, key: tuple, values: list[int] | None, pct: Decimal) -> Decimal | None:
        if key not in self._pcts:
            self._pcts[key] = percentile(values, pct) if values else None
        return self._pcts[key]

    def cap(self, variant: _Variant, provider: str, year: int) -> Fraction | None:
        """The cap on ``c`` of an episode of ``provider`` anchored in ``year`` (None = no cap)."""
        key = (variant, provider, year)
        if key not in self._caps:
            self.groups(variant.basis)
            caps = []
            if variant.winsorise_pct is not None:
                caps.append(
                    self._pct(
                        ("w", variant.basis, year, variant.winsorise_pct),
                        self._year_values.get((variant.basis, year)),
                        variant.winsorise_pct,
                    )
                )
            if variant.capped_p95:
                region = self.region.get(provider)
                if region is not None:
                    caps.append(
                        self._pct(
                            ("r", variant.basis, region, year),
                            self._region_values.get((variant.basis, region, year)),
                            P95,
                        )
                    )
            elif variant.stop_loss_cents is not None:
                caps.append(variant.stop_loss_cents)
            present = [Fraction(c) for c in caps if c is not None]
            self._caps[key] = min(present) if present else None
        return self._caps[key]


def _providers(providers: pl.DataFrame) -> pl.DataFrame:
    """``provider_agb``, ``provider_type``, ``region``; ``region_code`` (the name ``panels.inputs``
    gives it) is accepted for ``region``, and its placeholder ``unknown`` means no region."""
    if "region" not in providers.columns and "region_code" in providers.columns:
        providers = providers.rename({"region_code": "region"})
    _require(providers, ["provider_agb", "provider_type", "region"], "providers")
    return providers.select(
        "provider_agb",
        "provider_type",
        pl.when(pl.col("region") == UNKNOWN_REGION).then(None).otherwise(pl.col("region")).alias("region"),
    )


def _require(frame: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReconciliationError(f"{what}: missing column(s) {', '.join(missing)}")


def _prepare(
    bundle_id: str,
    episodes: pl.DataFrame,
    providers: pl.DataFrame,
    contracts: list[Contract],
    episode_lines: pl.DataFrame | None,
) -> _Bundle:
    if "bundle_id" in episodes.columns:
        episodes = episodes.filter(pl.col("bundle_id") == bundle_id)
    bases = sorted({c.terms.cost_basis for c in contracts})
    need = [
        "episode_id",
        "patient_id",
        "anchor_provider_agb",
        "anchor_year",
        "anchor_date",
        "status",
        *(COST_COLUMN[b] for b in bases),
    ]
    _require(episodes, need, f"episodes of bundle {bundle_id}")
    _require(providers, ["provider_agb", "provider_type", "region"], "providers")
    for contract in contracts:
        if contract.terms.risk_adjust:
            _require(
                episodes,
                [EXPECTED_COLUMN[contract.terms.cost_basis]],
                f"episodes of bundle {bundle_id} (contract {contract.contract_id} has risk_adjust)",
            )
        gate = contract.terms.quality_gate
        if gate is not None:
            _require(
                episodes,
                [gate.outcome],
                f"episodes of bundle {bundle_id} (quality gate of contract {contract.contract_id})",
            )
            if episodes.schema[gate.outcome] != pl.Boolean:
                raise ReconciliationError(
                    f"contract {contract.contract_id}: parameter quality_gate.outcome {gate.outcome!r} is "
                    f"not a yes/no outcome (column type {episodes.schema[gate.outcome]}); a rate needs a Boolean"
                )
        if any(r.insurer_uzovi is not None for r in contract.rows) and "insurer_uzovi" not in episodes.columns:
            raise ReconciliationError(
                f"contract {contract.contract_id} names an insurer but the episodes of "
                f"bundle {bundle_id} have no insurer_uzovi column"
            )
    unknown = sorted(set(episodes["status"].drop_nulls().unique().to_list()) - set(STATUSES))
    if unknown or episodes["status"].null_count():
        raise ReconciliationError(
            f"episodes of bundle {bundle_id}: status must be one of {', '.join(STATUSES)}; found {unknown or [None]}"
        )
    for b in bases:
        if episodes[COST_COLUMN[b]].null_count():
            raise ReconciliationError(f"episodes of bundle {bundle_id}: {COST_COLUMN[b]} has nulls")
    if episodes["episode_id"].n_unique() != episodes.height:
        raise ReconciliationError(f"episodes of bundle {bundle_id}: episode_id is not unique")

    region = dict(zip(providers["provider_agb"].to_list(), providers["region"].to_list(), strict=True))
    ptype = dict(zip(providers["provider_agb"].to_list(), providers["provider_type"].to_list(), strict=True))
    cols = [
        pl.col("episode_id"),
        pl.col("patient_id"),
        pl.col("anchor_provider_agb").alias("provider"),
        (pl.col("insurer_uzovi") if "insurer_uzovi" in episodes.columns else pl.lit(None, pl.String)).alias("insurer"),
        pl.col("anchor_year").cast(pl.Int64).alias("year"),
        pl.col("anchor_date").alias("date"),
        pl.col("status"),
        pl.col("status").is_in(ELIGIBLE).alias("eligible"),
        pl.col("anchor_provider_agb").replace_strict(region, default=None, return_dtype=pl.String).alias("region"),
    ]
    for b in bases:
        cols.append(pl.col(COST_COLUMN[b]).cast(pl.Int64).alias(f"x_{b}"))
        if EXPECTED_COLUMN[b] in episodes.columns:
            cols.append(pl.col(EXPECTED_COLUMN[b]).alias(f"expected_{b}"))
    gates = sorted({c.terms.quality_gate.outcome for c in contracts if c.terms.quality_gate is not None})
    cols.extend(pl.col(g).fill_null(False).alias(f"outcome_{g}") for g in gates)
    frame = episodes.select(cols).sort("episode_id")
    censored = {
        (p, i, y): n
        for p, i, y, n in frame.filter(pl.col("status") == "censored_data")
        .group_by(["provider", "insurer", "year"])
        .len()
        .iter_rows()
    }
    years = frame["year"]
    lines = None
    if episode_lines is not None and any(c.terms.payment_eur_per_phase is not None for c in contracts):
        lines = _phase_costs(bundle_id, episode_lines, bases)
    return _Bundle(
        bundle_id,
        frame,
        region,
        ptype,
        years.min() if frame.height else None,
        years.max() if frame.height else None,
        censored,
        lines,
    )


def _phase_costs(bundle_id: str, lines: pl.DataFrame, bases: list[str]) -> pl.DataFrame:
    """In-bundle cost per episode and phase (``phase_<basis>`` columns)."""
    if "bundle_id" in lines.columns:
        lines = lines.filter(pl.col("bundle_id") == bundle_id)
    _require(
        lines,
        ["episode_id", "component", "phase", *(LINE_COST_COLUMN[b] for b in bases)],
        f"episode_lines of bundle {bundle_id}",
    )
    inside = lines.filter(pl.col("component") == "in_bundle")
    bad = inside.filter(~pl.col("phase").is_in(PHASES) | pl.col("phase").is_null())
    if bad.height:
        raise ReconciliationError(
            f"episode_lines of bundle {bundle_id}: {bad.height} in-bundle line(s) without a "
            f"phase of {', '.join(PHASES)} (e.g. episode {bad['episode_id'][0]}, phase "
            f"{bad['phase'][0]!r})"
        )
    return (
        inside.group_by(["episode_id", "phase"])
        .agg(pl.col(LINE_COST_COLUMN[b]).cast(pl.Int64).sum().alias(f"phase_{b}") for b in bases)
        .sort(["episode_id", "phase"])
    )


# --- one contract --------------------------------------------------------------------------------


def _variant(terms: Terms, baseline: str) -> _Variant:
    capped = baseline == "regional_capped_p95"
    stop = None if terms.stop_loss_eur is None or capped else Fraction(terms.stop_loss_eur) * 100
    return _Variant(terms.cost_basis, terms.winsorise_pct, stop, capped)


def _matches(contract: Contract, provider: str, insurer: str | None) -> bool:
    return any(
        r.provider_agb == provider and (r.insurer_uzovi is None or r.insurer_uzovi == insurer) for r in contract.rows
    )


def _population(data: _Bundle, contract: Contract, baseline: str, keys: Iterable[GroupKey]) -> list[GroupKey]:
    if baseline == "own":
        return [k for k in keys if _matches(contract, k[0], k[1])]
    if baseline == "national":
        return list(keys)
    regions = {data.region[p] for p in contract.providers}
    return [k for k in keys if data.region.get(k[0]) in regions]


@dataclass
class _Baseline:
    value: Fraction | None  # B
    expected_mean: Fraction | None
    n: int
    censored: bool


def _baseline(data: _Bundle, contract: Contract, baseline: str, variant: _Variant) -> _Baseline:
    terms = contract.terms
    assert terms.baseline_years is not None
    years = set(terms.baseline_years)
    groups = data.groups(variant.basis)
    keys = _population(data, contract, baseline, [k for k in groups if k[2] in years])
    censored_keys = _population(data, contract, baseline, [k for k in data.censored if k[2] in years])
    n = sum(groups[k].n for k in keys)
    if n == 0:
        return _Baseline(None, None, 0, bool(censored_keys))
    trend = Fraction(terms.trend)
    total = Fraction(0)
    expected = Fraction(0)
    for k in keys:
        s1, _ = groups[k].capped(data.cap(variant, k[0], k[2]))
        total += s1 * trend ** (terms.reference_year - k[2])
        if terms.risk_adjust:
            e = groups[k].expected
            if e is None:
                raise ReconciliationError(
                    f"contract {contract.contract_id}: risk_adjust needs "
                    f"{EXPECTED_COLUMN[variant.basis]} on every eligible episode "
                    f"(provider {k[0]}, {k[2]} has nulls)"
                )
            expected += e
    return _Baseline(total / n, expected / n if terms.risk_adjust else None, n, bool(censored_keys))


def _target(
    terms: Terms, base: _Baseline, year: int, expected_mean: Fraction | None
) -> tuple[Fraction, Fraction | None]:
    """``T_y`` and the risk ratio, exactly (a negative trend power is a fraction too)."""
    assert base.value is not None
    target = base.value * Fraction(terms.trend) ** (year - terms.reference_year) * (1 - Fraction(terms.discount))
    ratio = None
    if terms.risk_adjust:
        if not base.expected_mean or expected_mean is None:
            raise ReconciliationError("risk_adjust: the mean expected cost of the baseline is zero")
        ratio = expected_mean / base.expected_mean
        target *= ratio
    return target, ratio


@dataclass
class _Moments:
    n: int
    s1: Fraction
    s2: Fraction

    @property
    def mean(self) -> Fraction | None:
        return self.s1 / self.n if self.n else None

    @property
    def variance(self) -> Fraction | None:
        """Sample variance (n - 1), exactly."""
        if self.n < 2:
            return None
        return max(Fraction(0), (self.s2 - self.s1 * self.s1 / self.n) / (self.n - 1))

    def sd(self) -> Decimal | None:
        var = self.variance
        return None if var is None else _sqrt(var)

    def half_width(self) -> Decimal | None:
        """``1.96 * sd / sqrt(n)``: one square root of the exact ``1.96^2 var / n``."""
        var = self.variance
        return None if var is None else _sqrt(Z95 * Z95 * var / self.n)

    def outside(self, gap: Fraction) -> bool | None:
        """``|gap| >= 1.96 sd / sqrt(n)``, compared squared (no square root), exactly."""
        var = self.variance
        if var is None:
            return None
        return gap * gap * self.n >= Z95 * Z95 * var


def _actual_episodes(data: _Bundle, contract: Contract, year: int) -> pl.DataFrame:
    """The contract's episodes (every status) anchored in ``year`` inside the contract period."""
    rows = pl.DataFrame(
        {
            "provider": [r.provider_agb for r in contract.rows],
            "row_insurer": [r.insurer_uzovi for r in contract.rows],
            "start": [r.start_date for r in contract.rows],
            "end": [r.end_date for r in contract.rows],
        },
        schema={"provider": pl.String, "row_insurer": pl.String, "start": pl.Date, "end": pl.Date},
    )
    frame = data.episodes.filter(pl.col("year") == year).join(rows, on="provider", how="inner")
    inside = (
        (pl.col("row_insurer").is_null() | (pl.col("row_insurer") == pl.col("insurer")))
        & (pl.col("start") <= pl.col("date"))
        & (pl.col("end").is_null() | (pl.col("date") <= pl.col("end")))
    )
    return (
        frame.filter(inside).drop(["row_insurer", "start", "end"]).unique("episode_id", keep="first").sort("episode_id")
    )


def _costs(data: _Bundle, variant: _Variant, episodes: pl.DataFrame, year: int) -> list[Fraction]:
    out = []
    for provider, x in episodes.select("provider", f"x_{variant.basis}").iter_rows():
        cap = data.cap(variant, provider, year)
        out.append(Fraction(x) if cap is None or x <= cap else cap)
    return out


def _moments(values: Sequence[Fraction]) -> _Moments:
    return _Moments(len(values), sum(values, Fraction(0)), sum((v * v for v in values), Fraction(0)))


def _shares(data: _Bundle, contract: Contract, counts: Mapping[str, int]) -> dict[str, Fraction] | None:
    key = contract.terms.distribution_key
    providers = contract.providers
    if key is None:
        total = sum(counts.get(p, 0) for p in providers)
        return {p: Fraction(counts.get(p, 0), total) for p in providers} if total else None
    if all(k.isdigit() for k in key):
        return {p: Fraction(key.get(p, 0)) for p in providers}
    shares = {p: Fraction(0) for p in providers}
    for ptype, share in key.items():
        members = [p for p in providers if data.ptype.get(p) == ptype]
        n = sum(counts.get(p, 0) for p in members)
        for p in members:
            shares[p] += Fraction(share) * (Fraction(counts.get(p, 0), n) if n else Fraction(1, len(members)))
    return shares


def _cents(value: Fraction | Decimal | None) -> int | None:
    return None if value is None else round_cents(value)


def _reconcile_contract(data: _Bundle, contract: Contract, data_as_of: date) -> tuple[list, list, list]:
    terms = contract.terms
    last = data.max_year
    if last is not None and contract.end_year is not None:
        last = min(last, contract.end_year)
    years = range(contract.start_year, (last if last is not None else contract.start_year - 1) + 1)
    variant = _variant(terms, terms.baseline)
    base = _baseline(data, contract, terms.baseline, variant) if terms.shared else None
    uses_percentile = terms.winsorise_pct is not None or terms.baseline == "regional_capped_p95"
    rows, settlements, phases = [], [], []
    for year in years:
        frame = _actual_episodes(data, contract, year)
        eligible = frame.filter(pl.col("eligible"))
        n = eligible.height
        costs = _costs(data, variant, eligible, year)
        m = _moments(costs)
        counts = dict(eligible.group_by("provider").len().iter_rows())
        k = year - contract.start_year + 1
        n_censored = frame.filter(pl.col("status") == "censored_data").height
        reasons = []
        if n_censored:
            reasons.append("own")
        row: dict = {
            "contract_id": contract.contract_id,
            "bundle_id": contract.bundle_id,
            "performance_year": year,
            "model": terms.model,
            "baseline": terms.baseline if terms.shared else None,
            "baseline_years": list(terms.baseline_years) if terms.baseline_years else None,
            "cost_basis": terms.cost_basis,
            "contract_year": k,
            "n_episodes": n,
            "n_censored_data": n_censored,
            "n_censored_enrolment": frame.filter(pl.col("status") == "censored_enrolment").height,
            "n_patients": eligible["patient_id"].n_unique(),
            "actual_cents": _cents(m.mean),
            "sd_cents": _cents(m.sd()),
            "data_as_of": data_as_of,
        }
        notes = []
        settlement: int | None
        if terms.shared:
            assert base is not None
            if base.censored:
                reasons.append("baseline")
            if uses_percentile and any(y == year or y in (terms.baseline_years or ()) for _, _, y in data.censored):
                reasons.append("percentile")
            losses_apply = terms.model == "shared_savings_losses" and k >= terms.losses_from_contract_year
            row["losses_apply"] = losses_apply
            gate = terms.quality_gate
            events = None
            quality_met = None
            if gate is not None:
                row["quality_outcome"] = gate.outcome
                if n:
                    events = int(eligible[f"outcome_{gate.outcome}"].sum())
                    row["quality_events"] = events
                    row["quality_rate"] = events / n
                    quality_met = events <= Fraction(gate.threshold) * n
            row["quality_met"] = quality_met
            if base.value is None:
                notes.append(
                    f"no eligible episodes of the {terms.baseline} baseline population in baseline "
                    f"years {', '.join(map(str, terms.baseline_years or ()))}"
                )
                settlement = None
            else:
                expected_mean = None
                if terms.risk_adjust and n:
                    expected = eligible[f"expected_{terms.cost_basis}"]
                    if expected.null_count():
                        raise ReconciliationError(
                            f"contract {contract.contract_id}: risk_adjust needs "
                            f"{EXPECTED_COLUMN[terms.cost_basis]} on every eligible episode"
                        )
                    expected_mean = sum((_exact(e) for e in expected.to_list()), Fraction(0)) / n
                row["baseline_cents"] = round_cents(base.value)
                settlement = 0
                if n == 0:
                    row["gross_savings_cents"] = 0
                    notes.append(f"no eligible episodes of the contract's providers in {year}")
                    if not terms.risk_adjust:  # a risk-adjusted target needs the year's episodes
                        row["target_cents"] = round_cents(_target(terms, base, year, None)[0])
                if n:
                    target, ratio = _target(terms, base, year, expected_mean)
                    row["target_cents"] = round_cents(target)
                    row["risk_ratio"] = float(ratio) if ratio is not None else None
                    if terms.corridor == "ci95":
                        row["corridor_cents"] = _cents(m.half_width())
                    else:
                        row["corridor_cents"] = round_cents(Fraction(terms.minimum_savings_pct) / 100 * target)
                    assert m.mean is not None
                    gap = target - m.mean
                    gross = target * n - m.s1
                    row["gross_savings_cents"] = round_cents(gross)
                    if terms.corridor == "ci95":
                        corridor_met = bool(m.outside(gap))
                    else:
                        corridor_met = abs(gap) * 100 >= Fraction(terms.minimum_savings_pct) * target
                    row["corridor_met"] = corridor_met
                    if gross > 0 and corridor_met and quality_met is not False:
                        assert terms.shared_savings_rate is not None
                        settlement = round_cents(gross * Fraction(terms.shared_savings_rate))
                    elif gross < 0 and corridor_met and losses_apply:
                        assert terms.shared_losses_rate is not None
                        settlement = round_cents(gross * Fraction(terms.shared_losses_rate))
        else:
            if terms.model == "fixed_sum":
                assert terms.fixed_sum_eur_per_patient is not None
                payment = Fraction(terms.fixed_sum_eur_per_patient) * 100 * row["n_patients"]
            elif terms.payment_eur_per_episode is not None:
                payment = Fraction(terms.payment_eur_per_episode) * 100 * n
            else:
                assert terms.payment_eur_per_phase is not None
                payment = sum(map(Fraction, terms.payment_eur_per_phase.values()), Fraction(0)) * 100 * n
                phases.extend(_phase_rows(data, contract, year, eligible, data_as_of))
            result = payment - m.s1
            row["payment_cents"] = round_cents(payment)
            row["target_cents"] = round_cents(payment / n) if n else None
            row["gross_savings_cents"] = round_cents(result)
            settlement = round_cents(result)
            if n == 0:
                notes.append(f"no eligible episodes of the contract's providers in {year}")
        row["settlement_cents"] = settlement
        row["provisional"] = bool(reasons)
        row["provisional_reason"] = ", ".join(reasons) or None
        row["note"] = "; ".join(notes) or None
        rows.append(row)
        shares = _shares(data, contract, counts)
        parts = distribute_cents(settlement, shares) if (settlement and shares) else {}
        for p in contract.providers:
            settlements.append(
                {
                    "contract_id": contract.contract_id,
                    "bundle_id": contract.bundle_id,
                    "performance_year": year,
                    "provider_agb": p,
                    "provider_type": data.ptype.get(p),
                    "n_episodes": counts.get(p, 0),
                    "share": float(shares[p]) if shares else None,
                    "settlement_cents": None if settlement is None else parts.get(p, 0),
                    "data_as_of": data_as_of,
                }
            )
    return rows, settlements, phases


def _phase_rows(data: _Bundle, contract: Contract, year: int, eligible: pl.DataFrame, data_as_of: date) -> list[dict]:
    terms = contract.terms
    assert terms.payment_eur_per_phase is not None
    basis = terms.cost_basis
    if data.lines is None:
        raise ReconciliationError(
            f"contract {contract.contract_id}: payment_eur_per_phase needs the episode_lines "
            f"of bundle {contract.bundle_id}"
        )
    lines = data.lines.join(eligible.select("episode_id"), on="episode_id", how="semi")
    per_episode = lines.group_by("episode_id").agg(pl.col(f"phase_{basis}").sum().alias("lines"))
    check = (
        eligible.select("episode_id", f"x_{basis}")
        .join(per_episode, on="episode_id", how="left")
        .filter(pl.col("lines").fill_null(0) != pl.col(f"x_{basis}"))
    )
    if check.height:
        first = check.row(0, named=True)
        raise ReconciliationError(
            f"contract {contract.contract_id}: the phase costs of {check.height} episode(s) do not add up to "
            f"{COST_COLUMN[basis]} (e.g. episode {first['episode_id']}: lines {first['lines'] or 0}, episode "
            f"{first[f'x_{basis}']}); are the episode_lines complete?"
        )
    n = eligible.height
    cost = dict(lines.group_by("phase").agg(pl.col(f"phase_{basis}").sum()).iter_rows())
    out = []
    for phase in PHASES:
        payment = Fraction(terms.payment_eur_per_phase[phase]) * 100 * n
        actual = int(cost.get(phase, 0))
        out.append(
            {
                "contract_id": contract.contract_id,
                "bundle_id": contract.bundle_id,
                "performance_year": year,
                "phase": phase,
                "n_episodes": n,
                "payment_cents": round_cents(payment),
                "actual_cents": actual,
                "result_cents": round_cents(payment - actual),
                "data_as_of": data_as_of,
            }
        )
    return out


def _placebo(data: _Bundle, contract: Contract, data_as_of: date) -> tuple[list, list]:
    terms = contract.terms
    if not terms.shared or data.min_year is None:
        return [], []
    years = range(data.min_year, contract.start_year)
    rows, summary = [], []
    for baseline in BASELINES:
        variant = _variant(terms, baseline)
        base = _baseline(data, contract, baseline, variant)
        groups = data.groups(variant.basis)
        gaps: list[Fraction] = []
        outside: list[bool] = []
        provisional_years = 0
        uses_percentile = variant.winsorise_pct is not None or baseline == "regional_capped_p95"
        for year in years:
            reasons = _placebo_provisional(data, contract, year, base.censored, uses_percentile)
            keys = _population(data, contract, "own", [k for k in groups if k[2] == year])
            n = sum(groups[k].n for k in keys)
            s1 = s2 = Fraction(0)
            expected = Fraction(0)
            for k in keys:
                a, b = groups[k].capped(data.cap(variant, k[0], year))
                s1 += a
                s2 += b
                if terms.risk_adjust:
                    if groups[k].expected is None:
                        raise ReconciliationError(
                            f"contract {contract.contract_id}: risk_adjust needs "
                            f"{EXPECTED_COLUMN[variant.basis]} on every eligible episode"
                        )
                    expected += groups[k].expected
            m = _Moments(n, s1, s2)
            row = {
                "contract_id": contract.contract_id,
                "bundle_id": contract.bundle_id,
                "baseline": baseline,
                "contract_baseline": baseline == terms.baseline,
                "year": year,
                "baseline_year": year in (terms.baseline_years or ()),
                "n_episodes": n,
                "baseline_cents": _cents(base.value),
                "actual_cents": _cents(m.mean),
                "sd_cents": _cents(m.sd()),
                "band_cents": _cents(m.half_width()),
                "provisional": bool(reasons),
                "provisional_reason": ", ".join(reasons) or None,
                "data_as_of": data_as_of,
            }
            if base.value is None:
                row["note"] = f"no eligible episodes of the {baseline} baseline population in the baseline years"
            elif n == 0:
                row["note"] = f"no eligible episodes of the contract's providers in {year}"
            else:
                target, _ = _target(terms, base, year, expected / n if terms.risk_adjust else None)
                gap = target - m.s1 / n
                row["target_cents"] = round_cents(target)
                row["gap_cents"] = round_cents(gap)
                row["gross_savings_cents"] = round_cents(gap * n)
                flag = m.outside(gap)
                if flag is not None:
                    flag = flag and gap != 0  # no gap is never a spurious saving, even when sd = 0
                row["outside_band"] = flag
                if flag is not None and reasons:
                    provisional_years += 1
                elif flag is not None:
                    gaps.append(gap)
                    outside.append(flag)
            rows.append(row)
        count = len(gaps)
        summary.append(
            {
                "contract_id": contract.contract_id,
                "bundle_id": contract.bundle_id,
                "baseline": baseline,
                "contract_baseline": baseline == terms.baseline,
                "n_years": count,
                "n_outside_band": sum(outside),
                "share_outside_band": sum(outside) / count if count else None,
                "mean_gap_cents": round_cents(sum(gaps, Fraction(0)) / count) if count else None,
                "mean_abs_gap_cents": round_cents(sum((abs(g) for g in gaps), Fraction(0)) / count) if count else None,
                "max_abs_gap_cents": round_cents(max(abs(g) for g in gaps)) if count else None,
                "n_provisional_years": provisional_years,
                "data_as_of": data_as_of,
            }
        )
    return rows, summary


def _placebo_provisional(
    data: _Bundle, contract: Contract, year: int, baseline_censored: bool, uses_percentile: bool
) -> list[str]:
    """Why a placebo year is not final yet, as for a performance year (step 1): ``own`` when a
    ``censored_data`` episode of the contract's providers is anchored in it, ``baseline`` when the
    baseline population has one in the baseline years, ``percentile`` when a cap over all providers
    is used and any episode of the bundle in the year is immature. Only the complete episodes of a
    young year are in (its early anchors), so its gap is biased; the summary leaves such years out."""
    reasons = []
    if _population(data, contract, "own", [k for k in data.censored if k[2] == year]):
        reasons.append("own")
    if baseline_censored:
        reasons.append("baseline")
    if uses_percentile and any(y == year for _, _, y in data.censored):
        reasons.append("percentile")
    return reasons


def _frame(rows: list[dict], schema: Mapping[str, pl.DataType], key: list[str]) -> pl.DataFrame:
    """Rows as a frame of the declared schema, sorted by ``key`` (ties keep the order built: the
    phases stay in care order)."""
    if not rows:
        return pl.DataFrame(schema=dict(schema))
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=dict(schema)).sort(
        key, maintain_order=True
    )


def reconcile(
    bundle_id: str,
    episodes: pl.DataFrame,
    providers: pl.DataFrame,
    contracts: pl.DataFrame,
    data_as_of: date | str,
    *,
    episode_lines: pl.DataFrame | None = None,
    outcomes: Iterable[str] | None = None,
) -> Reconciliation:
    """Reconcile every contract of ``bundle_id`` (rows of ``contracts`` for other bundles are left
    out) on that bundle's ``episodes``; see the module docstring for the steps.

    ``providers`` needs ``provider_agb``, ``provider_type`` and ``region`` (province code);
    ``episode_lines`` (``episode_id``, ``component``, ``phase``, ``allocated_cents``,
    ``allocated_standardised_cents``) is needed only for ``payment_eur_per_phase``; ``outcomes`` are
    the bundle's outcome names (default: from the bundle definition). Invalid contract terms raise
    :class:`ContractTermsError` listing every problem; unusable inputs raise
    :class:`ReconciliationError`."""
    if isinstance(data_as_of, str):
        data_as_of = date.fromisoformat(data_as_of)
    names = set(outcomes) if outcomes is not None else bundle_outcomes().get(bundle_id)
    if names is None:
        raise ReconciliationError(f"bundle {bundle_id!r} has no definition; pass its outcomes")
    providers = _providers(providers)
    _require(contracts, ["bundle_id"], "contracts")
    mine = contracts.filter(pl.col("bundle_id") == bundle_id)
    valid = check_contracts(mine, {bundle_id: names}, providers)
    ordered = [valid[k] for k in sorted(valid)]
    data = _prepare(bundle_id, episodes, providers, ordered, episode_lines)
    rec, settle, placebo, summary, phases = [], [], [], [], []
    for contract in ordered:
        r, s, ph = _reconcile_contract(data, contract, data_as_of)
        rec.extend(r)
        settle.extend(s)
        phases.extend(ph)
        p, ps = _placebo(data, contract, data_as_of)
        placebo.extend(p)
        summary.extend(ps)
    return Reconciliation(
        reconciliation=_frame(rec, RECONCILIATION_SCHEMA, ["contract_id", "bundle_id", "performance_year"]),
        settlement=_frame(settle, SETTLEMENT_SCHEMA, ["contract_id", "bundle_id", "performance_year", "provider_agb"]),
        placebo=_frame(placebo, PLACEBO_SCHEMA, ["contract_id", "bundle_id", "baseline", "year"]),
        placebo_summary=_frame(summary, PLACEBO_SUMMARY_SCHEMA, ["contract_id", "bundle_id", "baseline"]),
        phases=_frame(phases, PHASES_SCHEMA, ["contract_id", "bundle_id", "performance_year"]),
    )


# --- initial and final ---------------------------------------------------------------------------

_KEY = ["contract_id", "bundle_id", "performance_year"]


def _as_of(frame: pl.DataFrame, which: str) -> date | None:
    values = frame["data_as_of"].drop_nulls().unique().to_list() if "data_as_of" in frame.columns else []
    if len(values) > 1:
        raise ReconciliationError(
            f"compare: the {which} reconciliation mixes deliveries (data_as_of {', '.join(map(str, sorted(values)))})"
        )
    return values[0] if values else None


def compare(earlier: pl.DataFrame, later: pl.DataFrame) -> pl.DataFrame:
    """Initial vs final: two ``reconciliation`` frames of different deliveries, per contract x
    bundle x performance year: n_episodes and settlement in each, the change (later - earlier),
    both ``data_as_of`` and ``change`` = ``new`` (only later), ``gone`` (only earlier), ``changed``
    (settlement or n_episodes differ) or ``unchanged``."""
    for frame, which in ((earlier, "earlier"), (later, "later")):
        _require(
            frame,
            [*_KEY, "n_episodes", "settlement_cents", "provisional", "data_as_of"],
            f"compare: the {which} reconciliation",
        )
    as_of_earlier, as_of_later = _as_of(earlier, "earlier"), _as_of(later, "later")
    if as_of_earlier and as_of_later and as_of_earlier > as_of_later:
        raise ReconciliationError(
            f"compare: the earlier reconciliation (data_as_of {as_of_earlier}) is newer "
            f"than the later one ({as_of_later}); are the arguments swapped?"
        )
    cols = ["n_episodes", "settlement_cents", "provisional"]
    a = earlier.select(_KEY + cols).with_columns(pl.lit(True).alias("_a")).rename({c: f"{c}_earlier" for c in cols})
    b = later.select(_KEY + cols).with_columns(pl.lit(True).alias("_b")).rename({c: f"{c}_later" for c in cols})
    joined = a.join(b, on=_KEY, how="full", coalesce=True)
    out = joined.with_columns(
        (pl.col("n_episodes_later") - pl.col("n_episodes_earlier")).alias("n_episodes_change"),
        (pl.col("settlement_cents_later") - pl.col("settlement_cents_earlier")).alias("settlement_change_cents"),
        pl.lit(as_of_earlier, pl.Date).alias("data_as_of_earlier"),
        pl.lit(as_of_later, pl.Date).alias("data_as_of_later"),
        pl.when(pl.col("_a").is_null())
        .then(pl.lit("new"))
        .when(pl.col("_b").is_null())
        .then(pl.lit("gone"))
        .when(
            pl.col("settlement_cents_later").ne_missing(pl.col("settlement_cents_earlier"))
            | pl.col("n_episodes_later").ne_missing(pl.col("n_episodes_earlier"))
        )
        .then(pl.lit("changed"))
        .otherwise(pl.lit("unchanged"))
        .alias("change"),
    )
    return out.select([pl.col(c).cast(t) for c, t in COMPARE_SCHEMA.items()]).sort(_KEY)
