"""Expected contract settlements (``docs/panels-spec.md`` section 3, nacalculatie), computed by the generator.

Plain Python in exact rational arithmetic (``fractions.Fraction``), from the generator's truth
episodes (``episode_truth``) and its contracts table; independent of ``transforms.panels`` and
``transforms.episodes``. The steps, per contract, bundle and performance year ``y`` (the anchor
year), and the choices made where the spec is silent:

1. Eligible episodes: status ``complete`` or ``death``. ``censored_data`` episodes of the
   contract's providers anchored in ``y`` are counted (``n_censored_data``); they are not in
   ``n_episodes`` or the means. A settlement row is ``provisional`` while a ``censored_data``
   episode exists that would enter its numbers once mature: the contract's own episodes of ``y``,
   the baseline population's in the baseline years (shared-savings models), and, when a percentile
   over all providers caps ``c`` (``winsorise_pct``, ``regional_capped_p95``), any episode of the
   bundle anchored in ``y`` or in a baseline year. A placebo row looks at its own episodes only.
2. Episode cost ``c`` = in-bundle cents on ``cost_basis``; capped (upper tail only) at the
   ``winsorise_pct`` percentile of all providers' eligible episodes of the bundle and anchor year
   (linear interpolation between order statistics: position ``(n - 1) * pct / 100``); then at
   ``stop_loss_eur``; for ``baseline: regional_capped_p95`` at the 95th percentile (same
   interpolation) of the eligible episodes of the bundle and anchor year anchored in the episode's
   province.
3. Baseline ``B`` = mean of ``c * trend ** (L - year)`` over the baseline population's eligible
   episodes anchored in ``baseline_years`` (``L`` = the latest); ``own`` = anchored at the
   contract's providers, ``regional`` and ``regional_capped_p95`` = anchored at any provider in a
   province of the contract's providers (the contract's own included), ``national`` = all.
4. ``T_y = B * trend ** (y - L) * (1 - discount)``; ``A_y`` = mean ``c`` of the contract's eligible
   episodes anchored in ``y`` inside the period of their provider's own contract row(s) (on or after
   its start date, up to its end date); ``n_y``. Performance years run from the first start year.
5. ``S_y = (T_y - A_y) * n_y``.
6. Corridor: not met when ``|T - A| * 100 < minimum_savings_pct * T``; with ``corridor: ci95``
   instead when ``|T - A| < 1.96 * sd(c) / sqrt(n)`` (sample sd, ``n - 1``; compared squared, so
   exactly; not met when ``n < 2``).
7. Quality gate: the outcome's rate among the ``n_y`` episodes must be at or below the threshold.
8. Settlement = ``S * shared_savings_rate`` when ``S > 0`` (corridor and gate met),
   ``S * shared_losses_rate`` when ``S < 0``, the corridor met and ``k >= losses_from_contract_year``
   (``k = y - start_year + 1``), else 0; rounded half away from zero once. Every ``*_cents`` column
   is its exact value rounded half away from zero; the exact values are given as ``p/q`` strings.
9. Shares, one row per provider of the contract and year (every model; for a per-phase bundled
   payment of the whole): by ``distribution_key`` (AGB codes: those shares, providers not named 0;
   or provider types: a type's share split over the contract's providers of that type pro rata to
   their eligible episodes of the year, equally when they have none; a provider of a type not named
   0), else pro rata to the providers' eligible episodes of the year (0 without any); the cents of
   ``settlement_cents`` by largest remainder, so the shares add up to it.
10. ``fixed_sum``: ``fixed_sum_eur_per_patient * patients - sum(c)`` with patients the distinct
    ``patient_id`` of the year's eligible episodes (an episode without a ``patient_id`` counts as
    a patient of its own); ``target`` is that payment per episode. ``bundled_payment``:
    ``n * payment_eur_per_episode - sum(c)``, or per phase with ``payment_eur_per_phase`` (one row
    per phase, and one with ``phase`` null for the whole).

Years of the contract without eligible episodes get no row. ``risk_adjust`` needs the case-mix
model's expected costs, which only the panels fit, and a contract with one insurer needs the
patients' insurer, which the truth episodes do not carry: such a contract gets no row (its reason
is in ``truth.json``). Placebo rows (``kind = placebo``) apply steps 1-6 to every year before the
contract start on the contract's providers' eligible episodes, with ``outside_band`` true when
``|T - A| >= 1.96 * sd / sqrt(n)`` and ``T != A`` (null below two episodes).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction

PHASES = ("prenatal", "natal", "postnatal", "maternity_care")
Z95 = Fraction(196, 100)
#: Every parameter name a contract may carry (docs/panels-spec.md section 3, plus the project's two
#: bundled-payment names) and the kind of value it takes.
PARAMETERS: dict[str, str] = {
    "baseline_years": "years",
    "baseline": "baseline",
    "trend": "positive",
    "discount": "fraction",
    "cost_basis": "basis",
    "winsorise_pct": "percent",
    "stop_loss_eur": "positive",
    "shared_savings_rate": "fraction",
    "shared_losses_rate": "fraction",
    "losses_from_contract_year": "year_index",
    "minimum_savings_pct": "percent",
    "corridor": "corridor",
    "quality_gate": "gate",
    "distribution_key": "key",
    "fixed_sum_eur_per_patient": "positive",
    "risk_adjust": "bool",
    "payment_eur_per_episode": "positive",
    "payment_eur_per_phase": "phases",
}
SHARED_MODELS = ("shared_savings", "shared_savings_losses")


class ContractParameterError(ValueError):
    """An unknown parameter or a wrong unit, naming the contract and the parameter."""


@dataclass(frozen=True)
class TruthEpisode:
    bundle_id: str
    episode_id: str
    anchor_date: date
    provider: str
    province: str
    status: str
    declared: int
    standardised: int
    outcomes: dict[str, bool] = field(default_factory=dict)
    phases: dict[str, tuple[int, int]] = field(default_factory=dict)  # phase -> (declared, standardised)
    patient_id: str | None = None  # fixed_sum pays per distinct patient; None: the episode is its own patient

    @property
    def year(self) -> int:
        return self.anchor_date.year

    def cost(self, basis: str, phase: str | None = None) -> int:
        if phase is not None:
            declared, standardised = self.phases.get(phase, (0, 0))
            return declared if basis == "declared" else standardised
        return self.declared if basis == "declared" else self.standardised


@dataclass(frozen=True)
class Contract:
    contract_id: str
    bundle_id: str
    model: str
    providers: tuple[str, ...]
    start_date: date
    end_date: date | None
    parameters: dict
    insurers: tuple[str, ...] = ()  # the rows' insurer_uzovi codes; empty = all insurers
    #: (provider_agb, start_date, end_date) per contract row; empty = every provider from
    #: ``start_date`` to ``end_date``
    periods: tuple[tuple[str, date, date | None], ...] = ()


def half_away(x: Fraction) -> int:
    """Round to an integer, halves away from zero."""
    q = (2 * abs(x.numerator) + x.denominator) // (2 * x.denominator)
    return q if x >= 0 else -q


def percentile(values: list[int], pct: Fraction) -> Fraction:
    """Linear-interpolation percentile of ``values`` (position ``(n - 1) * pct / 100``)."""
    v = sorted(values)
    h = (len(v) - 1) * pct / 100
    j = math.floor(h)
    if j + 1 >= len(v):
        return Fraction(v[-1])
    return v[j] + (h - j) * (v[j + 1] - v[j])


def exact(x: Fraction | None) -> str | None:
    return None if x is None else f"{x.numerator}/{x.denominator}"


def number(value) -> Fraction:
    """A parameter value as an exact fraction of the decimal the contract wrote."""
    return Fraction(str(value))


def check_parameters(contract: Contract) -> None:
    """An unknown name or a wrong unit is an error naming the contract and the parameter."""
    for name, value in contract.parameters.items():
        kind = PARAMETERS.get(name)
        where = f"contract {contract.contract_id} ({contract.bundle_id}): parameter {name!r}"
        if kind is None:
            raise ContractParameterError(f"{where} is unknown; known: {', '.join(PARAMETERS)}")
        ok = {
            "years": isinstance(value, list) and value and all(isinstance(y, int) for y in value),
            "baseline": value in ("own", "regional", "national", "regional_capped_p95"),
            "positive": isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
            "fraction": isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1,
            "basis": value in ("declared", "standardised"),
            "percent": isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 100,
            "year_index": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            "corridor": value == "ci95",
            "gate": isinstance(value, dict)
            and set(value) == {"outcome", "threshold"}
            and isinstance(value["threshold"], (int, float))
            and 0 <= value["threshold"] <= 1,
            "key": isinstance(value, dict)
            and value
            and all(isinstance(s, (int, float)) and s >= 0 for s in value.values()),
            "bool": isinstance(value, bool),
            "phases": isinstance(value, dict)
            and set(value) <= set(PHASES)
            and value
            and all(isinstance(s, (int, float)) and s >= 0 for s in value.values()),
        }[kind]
        if not ok:
            raise ContractParameterError(f"{where} has a wrong value or unit: {value!r}")


def contracts_from_rows(rows: list[dict]) -> list[Contract]:
    """Group contracts-table rows into one :class:`Contract` per contract and bundle."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["contract_id"], row["bundle_id"])].append(row)
    out = []
    for (cid, bundle), members in sorted(groups.items()):
        ends = [m["end_date"] for m in members]
        out.append(
            Contract(
                contract_id=cid,
                bundle_id=bundle,
                model=members[0]["model"],
                providers=tuple(sorted({m["provider_agb"] for m in members})),
                start_date=min(m["start_date"] for m in members),
                end_date=None if any(e is None for e in ends) else max(ends),
                parameters=json.loads(members[0]["parameters"]),
                insurers=tuple(sorted({m["insurer_uzovi"] for m in members if m.get("insurer_uzovi")})),
                periods=tuple(
                    sorted(
                        ((m["provider_agb"], m["start_date"], m["end_date"]) for m in members),
                        key=lambda r: (r[0], r[1], r[2] or date.max),
                    )
                ),
            )
        )
    return out


def not_computable(contract: Contract) -> str | None:
    """Why the generator cannot give this contract's settlement exactly (None: it can)."""
    if contract.parameters.get("risk_adjust"):
        return (
            "risk_adjust scales the target by the case-mix model's expected cost, which only the panels "
            "fit (Poisson pseudo-likelihood); the generator does not know it exactly"
        )
    if contract.insurers:
        return (
            f"the contract is with insurer(s) {', '.join(contract.insurers)} only; the truth episodes do not "
            f"carry the patient's insurer"
        )
    return None


class Reconciliation:
    """All settlement and placebo rows of a delivery's contracts."""

    def __init__(
        self,
        episodes: list[TruthEpisode],
        province_of: dict[str, str],
        type_of: dict[str, str],
        data_as_of: date,
        first_year: int,
        last_year: int,
    ) -> None:
        self.by_bundle: dict[str, list[TruthEpisode]] = defaultdict(list)
        self.by_year: dict[tuple[str, int], list[TruthEpisode]] = defaultdict(list)
        for e in episodes:
            self.by_bundle[e.bundle_id].append(e)
            self.by_year[(e.bundle_id, e.year)].append(e)
        self.province_of = province_of
        self.type_of = type_of
        self.data_as_of = data_as_of
        self.first_year = first_year
        self.last_year = last_year

    # -- step 2 --------------------------------------------------------------------------------
    def _cost_function(self, contract: Contract, basis: str, phase: str | None):
        p = contract.parameters
        eligible = [e for e in self.by_bundle[contract.bundle_id] if e.status in ("complete", "death")]
        caps_w: dict[int, Fraction] = {}
        caps_r: dict[tuple[str, int], Fraction] = {}
        if p.get("winsorise_pct") is not None:
            per_year: dict[int, list[int]] = defaultdict(list)
            for e in eligible:
                per_year[e.year].append(e.cost(basis, phase))
            caps_w = {y: percentile(v, number(p["winsorise_pct"])) for y, v in per_year.items()}
        if p.get("baseline") == "regional_capped_p95":
            per_region: dict[tuple[str, int], list[int]] = defaultdict(list)
            for e in eligible:
                per_region[(e.province, e.year)].append(e.cost(basis, phase))
            caps_r = {k: percentile(v, Fraction(95)) for k, v in per_region.items()}
        stop = number(p["stop_loss_eur"]) * 100 if p.get("stop_loss_eur") is not None else None

        def c(e: TruthEpisode) -> Fraction:
            x = Fraction(e.cost(basis, phase))
            if caps_w:
                x = min(x, caps_w[e.year])
            if stop is not None:
                x = min(x, stop)
            if caps_r:
                x = min(x, caps_r[(e.province, e.year)])
            return x

        return c, eligible

    def _in_contract(self, contract: Contract, e: TruthEpisode) -> bool:
        """Anchored at a provider of the contract inside the period of one of its rows."""
        if not contract.periods:
            return (
                e.provider in contract.providers
                and e.anchor_date >= contract.start_date
                and (contract.end_date is None or e.anchor_date <= contract.end_date)
            )
        return any(
            agb == e.provider and start <= e.anchor_date and (end is None or e.anchor_date <= end)
            for agb, start, end in contract.periods
        )

    def rows(self, contract: Contract) -> tuple[list[dict], list[dict]]:
        """(settlement and placebo rows, provider shares) of one contract and bundle."""
        check_parameters(contract)
        p = contract.parameters
        basis = p.get("cost_basis", "declared")
        if contract.model in SHARED_MODELS:
            return self._shared(contract, basis)
        if contract.model == "fixed_sum":
            return self._payment(contract, basis, None, number(p["fixed_sum_eur_per_patient"]) * 100, per_patient=True)
        if contract.model == "bundled_payment":
            if "payment_eur_per_phase" in p:
                rows = []
                payments = {ph: number(v) * 100 for ph, v in p["payment_eur_per_phase"].items()}
                for ph in PHASES:
                    if ph in payments:
                        rows += self._payment(contract, basis, ph, payments[ph])[0]
                whole, shares = self._payment(contract, basis, None, sum(payments.values()))
                return rows + whole, shares
            return self._payment(contract, basis, None, number(p["payment_eur_per_episode"]) * 100)
        raise ContractParameterError(f"contract {contract.contract_id}: unknown model {contract.model!r}")

    def _years(self, contract: Contract) -> range:
        last = self.last_year if contract.end_date is None else min(self.last_year, contract.end_date.year)
        return range(contract.start_date.year, last + 1)

    def _base_row(self, contract: Contract, kind: str, year: int, phase: str | None, basis: str) -> dict:
        return {
            "contract_id": contract.contract_id,
            "bundle_id": contract.bundle_id,
            "model": contract.model,
            "kind": kind,
            "performance_year": year,
            "contract_year": year - contract.start_date.year + 1 if kind == "settlement" else None,
            "phase": phase,
            "cost_basis": basis,
            "baseline": contract.parameters.get("baseline"),
            "data_as_of": self.data_as_of,
        }

    def _payment(
        self, contract: Contract, basis: str, phase: str | None, payment: Fraction, per_patient: bool = False
    ) -> tuple[list[dict], list[dict]]:
        """Rows of a payment model (``payment`` per episode, or per distinct patient), and the
        providers' shares of the whole (``phase`` None)."""
        c, _ = self._cost_function(contract, basis, phase)
        rows, shares = [], []
        for y in self._years(contract):
            mine = [e for e in self.by_year[(contract.bundle_id, y)] if self._in_contract(contract, e)]
            eligible = [e for e in mine if e.status in ("complete", "death")]
            if not eligible:
                continue
            n = len(eligible)
            units = (
                len(
                    {
                        ("patient", e.patient_id) if e.patient_id is not None else ("episode", e.episode_id)
                        for e in eligible
                    }
                )
                if per_patient
                else n
            )
            target = payment * units / n  # the payment per episode
            actual = sum((c(e) for e in eligible), Fraction(0)) / n
            gross = (target - actual) * n
            rows.append(
                {
                    **self._base_row(contract, "settlement", y, phase, basis),
                    **self._money(n, mine, None, target, actual, gross, gross),
                    "corridor_met": None,
                    "quality_met": None,
                    "quality_rate": None,
                    "outside_band": None,
                }
            )
            if phase is None:
                shares += self._shares(contract, y, eligible, half_away(gross))
        return rows, shares

    def _money(
        self, n: int, mine: list[TruthEpisode], baseline, target, actual, gross, settlement, immature: bool = False
    ) -> dict:
        """The counts and the money columns; ``immature``: a censored_data episode outside ``mine``
        (baseline population, percentile) would still change the row."""
        censored = sum(e.status == "censored_data" for e in mine)
        out = {"n_episodes": n, "n_censored_data": censored, "provisional": censored > 0 or immature}
        for name, value in (
            ("baseline", baseline),
            ("target", target),
            ("actual", actual),
            ("gross_savings", gross),
            ("settlement", settlement),
        ):
            out[f"{name}_cents"] = None if value is None else half_away(value)
            out[f"{name}_exact"] = exact(value)
        return out

    def _shared(self, contract: Contract, basis: str) -> tuple[list[dict], list[dict]]:
        p = contract.parameters
        c, eligible = self._cost_function(contract, basis, None)
        trend = number(p.get("trend", 1))
        discount = number(p.get("discount", 0))
        years = [y for y in p["baseline_years"]]
        latest = max(years)
        kind = p.get("baseline", "own")
        provinces = {self.province_of[a] for a in contract.providers}
        if kind == "own":
            population = [e for e in eligible if e.provider in contract.providers]
        elif kind in ("regional", "regional_capped_p95"):
            population = [e for e in eligible if e.province in provinces]
        else:
            population = eligible
        base = [e for e in population if e.year in years]
        # censored_data episodes that would enter the numbers once mature (step 1)
        censored = [e for e in self.by_bundle[contract.bundle_id] if e.status == "censored_data"]
        if kind == "own":
            censored_base = any(e.provider in contract.providers and e.year in years for e in censored)
        elif kind in ("regional", "regional_capped_p95"):
            censored_base = any(e.province in provinces and e.year in years for e in censored)
        else:
            censored_base = any(e.year in years for e in censored)
        uses_percentile = p.get("winsorise_pct") is not None or kind == "regional_capped_p95"
        censored_years = {e.year for e in censored}
        if not base:
            raise ValueError(
                f"contract {contract.contract_id} ({contract.bundle_id}): no eligible episodes in the "
                f"baseline years {years}"
            )
        baseline = sum((c(e) * trend ** (latest - e.year) for e in base), Fraction(0)) / len(base)
        ssr = number(p["shared_savings_rate"])
        slr = number(p.get("shared_losses_rate", 0))
        losses_from = p.get("losses_from_contract_year", 1)
        min_pct = number(p.get("minimum_savings_pct", 0))
        gate = p.get("quality_gate")
        rows, shares = [], []
        start_year = contract.start_date.year
        placebo_years = range(self.first_year, start_year)
        for kind_of_row, y_range in (("placebo", placebo_years), ("settlement", self._years(contract))):
            for y in y_range:
                if kind_of_row == "settlement":
                    mine = [e for e in self.by_year[(contract.bundle_id, y)] if self._in_contract(contract, e)]
                else:
                    mine = [e for e in self.by_year[(contract.bundle_id, y)] if e.provider in contract.providers]
                chosen = [e for e in mine if e.status in ("complete", "death")]
                if not chosen:
                    continue
                n = len(chosen)
                costs = [c(e) for e in chosen]
                actual = sum(costs, Fraction(0)) / n
                target = baseline * trend ** (y - latest) * (1 - discount)
                gross = (target - actual) * n
                diff = target - actual
                variance = sum(((x - actual) ** 2 for x in costs), Fraction(0)) / (n - 1) if n > 1 else None
                inside_ci = None if variance is None else diff * diff * n < Z95 * Z95 * variance
                if p.get("corridor") == "ci95":
                    corridor_met = False if inside_ci is None else not inside_ci
                else:
                    corridor_met = not (abs(diff) * 100 < min_pct * target)
                rate = None
                quality_met = True
                if gate is not None:
                    rate = Fraction(sum(bool(e.outcomes.get(gate["outcome"])) for e in chosen), n)
                    quality_met = rate <= number(gate["threshold"])
                k = y - start_year + 1
                immature = False
                if kind_of_row == "placebo":
                    settlement = None
                elif gross > 0 and corridor_met and quality_met:
                    settlement = gross * ssr
                elif gross < 0 and corridor_met and k >= losses_from:
                    settlement = gross * slr
                else:
                    settlement = Fraction(0)
                if kind_of_row == "settlement":
                    immature = censored_base or (uses_percentile and bool(censored_years & {y, *years}))
                row = {
                    **self._base_row(contract, kind_of_row, y, None, basis),
                    **self._money(n, mine, baseline, target, actual, gross, settlement, immature),
                    "corridor_met": corridor_met,
                    "quality_met": quality_met if gate is not None else None,
                    "quality_rate": exact(rate),
                    "outside_band": (None if inside_ci is None else (not inside_ci and diff != 0))
                    if kind_of_row == "placebo"
                    else None,
                }
                rows.append(row)
                if kind_of_row == "settlement":
                    shares += self._shares(contract, y, chosen, half_away(settlement))
        return rows, shares

    def _shares(self, contract: Contract, year: int, chosen: list[TruthEpisode], settlement_cents: int) -> list[dict]:
        """Step 9: each provider's share, and the settlement's cents by largest remainder (the floor of
        ``|cents| * share`` each, the cents left over one each to the largest remainders, ties to
        the lower AGB code, the sign put back), so the shares add up to ``settlement_cents``."""
        key = contract.parameters.get("distribution_key")
        counts = Counter(e.provider for e in chosen)
        share: dict[str, Fraction] = {agb: Fraction(0) for agb in contract.providers}
        if key:
            for agb in contract.providers:
                if agb in key:
                    share[agb] = number(key[agb])
                elif self.type_of.get(agb) in key:  # the type's share, pro rata to episodes within the type
                    peers = [a for a in contract.providers if self.type_of.get(a) == self.type_of[agb] and a not in key]
                    total = sum(counts[a] for a in peers)
                    part = Fraction(counts[agb], total) if total else Fraction(1, len(peers))
                    share[agb] = number(key[self.type_of[agb]]) * part
        else:
            share.update({agb: Fraction(k, len(chosen)) for agb, k in counts.items()})
        magnitude = abs(settlement_cents)
        floors = {agb: math.floor(magnitude * s) for agb, s in share.items()}
        left = magnitude - sum(floors.values()) if share and sum(share.values()) == 1 else 0
        for agb in sorted(share, key=lambda a: (-(magnitude * share[a] - floors[a]), a))[:left]:
            floors[agb] += 1
        sign = -1 if settlement_cents < 0 else 1
        return [
            {
                "contract_id": contract.contract_id,
                "bundle_id": contract.bundle_id,
                "performance_year": year,
                "provider_agb": agb,
                "share": exact(s),
                "share_cents": sign * floors[agb],
            }
            for agb, s in sorted(share.items())
        ]
