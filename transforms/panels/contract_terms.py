"""Contract terms: the ``parameters`` JSON of a ``contracts`` row, validated into a frozen object.

``docs/panels-spec.md`` section 3 lists the parameters, their units and defaults; ``docs/bundles.md`` ("Payment
parameters") says what they mean. Two names are ours, because the spec only says "payment minus
actual cost per episode and phase": ``payment_eur_per_episode`` (one amount per episode) and
``payment_eur_per_phase`` (``{phase: euros}``, birth care's four phases) for model
``bundled_payment``.

Every problem is a :class:`ContractTermsError` (a :class:`UserFacingError`) with one line per problem
that names the contract, the parameter and what is wrong, e.g.::

    contract C-ra_drugs-2019: parameter quality_gate.outcome 'das28_remission' is not an outcome of bundle ra_drugs (outcomes: distinct_drugs, drug_volume, outpatient_visits)
    contract X: unknown parameter 'trnd' (did you mean 'trend'?)

Numbers are read from the JSON text as exact decimals (``1.02`` is ``Decimal('1.02')``, never the
binary float nearest to it). A number must be a JSON number: ``"2%"`` or ``"1.02"`` (a string) and
``true`` are wrong units, as is ``discount: 2`` (a fraction is in [0, 1]).

Which parameters a model takes (anything else is an error, so a forgotten or misplaced term cannot be
silently ignored):

- ``shared_savings``: ``baseline_years`` and ``shared_savings_rate`` (required), ``baseline``,
  ``trend``, ``discount``, ``cost_basis``, ``winsorise_pct``, ``stop_loss_eur``,
  ``minimum_savings_pct`` or ``corridor``, ``quality_gate``, ``distribution_key``, ``risk_adjust``;
- ``shared_savings_losses``: the same plus ``shared_losses_rate`` (required: upside only is model
  ``shared_savings``) and ``losses_from_contract_year``;
- ``fixed_sum``: ``fixed_sum_eur_per_patient`` (required), ``cost_basis``, ``distribution_key``;
- ``bundled_payment``: exactly one of ``payment_eur_per_episode`` / ``payment_eur_per_phase``,
  ``cost_basis``, ``distribution_key``.

:func:`check_contracts` checks a whole ``contracts`` table (every contract x bundle) and reports all
problems at once, including those between rows (provider rows that disagree on model or parameters,
overlapping contracts for the same provider and bundle, baseline years not before the start).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from transforms.errors import UserFacingError

MODELS = ("shared_savings", "shared_savings_losses", "bundled_payment", "fixed_sum")
BASELINES = ("own", "regional", "national", "regional_capped_p95")
COST_BASES = ("declared", "standardised")
PHASES = ("prenatal", "natal", "postnatal", "maternity_care")
#: provider types of the delivery contract (``transforms/contract/tables/providers.yml``)
PROVIDER_TYPES = (
    "hospital",
    "zbc",
    "rehabilitation",
    "gp",
    "pharmacy",
    "physiotherapy",
    "occupational_therapy",
    "midwife",
    "maternity_care",
    "birth_care_organisation",
)
AGB = re.compile(r"^\d{8}$")


class ContractTermsError(UserFacingError, ValueError):
    """Contract terms that cannot be settled; ``problems`` holds one line per problem."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --- numbers ----------------------------------------------------------------------------------


def _number(value: Any) -> Decimal:
    """A JSON number as an exact decimal; strings, booleans and the like are wrong units."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("not a finite number")
        return value
    if isinstance(value, str):
        raise ValueError("a string, not a number")
    raise ValueError(f"a {type(value).__name__}, not a number")


def _list(value: Any) -> Any:
    """A JSON list becomes a tuple (the terms are frozen); anything else fails the tuple check."""
    return tuple(value) if isinstance(value, list) else value


Fraction01 = Annotated[Decimal, BeforeValidator(_number), Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class QualityGate(_Strict):
    """Savings are paid only when the outcome's rate among the year's episodes is <= threshold."""

    outcome: StrictStr
    threshold: Fraction01


class Terms(_Strict):
    """The validated parameters of one contract x bundle (defaults as in ``docs/panels-spec.md``)."""

    model: Literal["shared_savings", "shared_savings_losses", "bundled_payment", "fixed_sum"]
    baseline_years: Annotated[tuple[StrictInt, ...], BeforeValidator(_list), Field(min_length=1)] | None = None
    baseline: Literal["own", "regional", "national", "regional_capped_p95"] = "own"
    trend: Annotated[Decimal, BeforeValidator(_number), Field(gt=0)] = Decimal(1)
    discount: Fraction01 = Decimal(0)
    cost_basis: Literal["declared", "standardised"] = "declared"
    winsorise_pct: Annotated[Decimal, BeforeValidator(_number), Field(gt=0, lt=100)] | None = None
    stop_loss_eur: Annotated[Decimal, BeforeValidator(_number), Field(gt=0)] | None = None
    shared_savings_rate: Fraction01 | None = None
    shared_losses_rate: Fraction01 | None = None
    losses_from_contract_year: Annotated[StrictInt, Field(ge=1)] = 1
    minimum_savings_pct: Annotated[Decimal, BeforeValidator(_number), Field(ge=0)] = Decimal(0)
    corridor: Literal["ci95"] | None = None
    quality_gate: QualityGate | None = None
    distribution_key: dict[StrictStr, Fraction01] | None = None
    fixed_sum_eur_per_patient: Annotated[Decimal, BeforeValidator(_number), Field(ge=0)] | None = None
    payment_eur_per_episode: Annotated[Decimal, BeforeValidator(_number), Field(ge=0)] | None = None
    payment_eur_per_phase: (
        dict[
            Literal["prenatal", "natal", "postnatal", "maternity_care"],
            Annotated[Decimal, BeforeValidator(_number), Field(ge=0)],
        ]
        | None
    ) = None
    risk_adjust: StrictBool = False

    @field_validator("baseline_years")
    @classmethod
    def _years(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if len(set(value)) != len(value):
            raise ValueError("a year is listed twice")
        if any(y < 1990 or y > 2100 for y in value):
            raise ValueError("not a year between 1990 and 2100")
        return tuple(sorted(value))

    @field_validator("distribution_key")
    @classmethod
    def _key(cls, value: dict[str, Decimal] | None) -> dict[str, Decimal] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("empty")
        bad = [k for k in value if not AGB.match(k) and k not in PROVIDER_TYPES]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is neither an 8-digit AGB code nor a provider type ({', '.join(PROVIDER_TYPES)})"
            )
        if any(AGB.match(k) for k in value) and any(k in PROVIDER_TYPES for k in value):
            raise ValueError("mixes AGB codes and provider types; use one or the other")
        total = sum(value.values(), Decimal(0))
        if total != 1:
            raise ValueError(f"the shares add up to {total}, not 1")
        return value

    @field_validator("payment_eur_per_phase")
    @classmethod
    def _phases(cls, value: dict[str, Decimal] | None) -> dict[str, Decimal] | None:
        if value is not None and set(value) != set(PHASES):
            missing = [p for p in PHASES if p not in value]
            raise ValueError(f"every phase needs an amount; missing: {', '.join(missing)}")
        return value

    # --- derived -----------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """A shared-savings model (with a baseline and a target)."""
        return self.model in ("shared_savings", "shared_savings_losses")

    @property
    def reference_year(self) -> int:
        """``L = max(baseline_years)``."""
        assert self.baseline_years
        return max(self.baseline_years)


# --- which parameter goes with which model ------------------------------------------------------

_SHARED = (
    "baseline_years",
    "baseline",
    "trend",
    "discount",
    "cost_basis",
    "winsorise_pct",
    "stop_loss_eur",
    "shared_savings_rate",
    "minimum_savings_pct",
    "corridor",
    "quality_gate",
    "distribution_key",
    "risk_adjust",
)
ALLOWED: dict[str, tuple[str, ...]] = {
    "shared_savings": _SHARED,
    "shared_savings_losses": (*_SHARED, "shared_losses_rate", "losses_from_contract_year"),
    "fixed_sum": ("fixed_sum_eur_per_patient", "cost_basis", "distribution_key"),
    "bundled_payment": ("payment_eur_per_episode", "payment_eur_per_phase", "cost_basis", "distribution_key"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "shared_savings": ("baseline_years", "shared_savings_rate"),
    "shared_savings_losses": ("baseline_years", "shared_savings_rate", "shared_losses_rate"),
    "fixed_sum": ("fixed_sum_eur_per_patient",),
    "bundled_payment": (),  # one of the two payment parameters, checked below
}
PARAMETERS = tuple(n for n in Terms.model_fields if n != "model")

#: the expected unit of each parameter, quoted in error messages
UNITS: dict[str, str] = {
    "baseline_years": "a non-empty list of anchor years, e.g. [2015, 2016, 2017]",
    "baseline": f"one of {', '.join(BASELINES)}",
    "trend": "a yearly factor, a positive number such as 1.02",
    "discount": "a fraction in [0, 1], e.g. 0.02",
    "cost_basis": f"one of {', '.join(COST_BASES)}",
    "winsorise_pct": "a percentile strictly between 0 and 100, e.g. 99",
    "stop_loss_eur": "euros per episode, a number > 0, e.g. 25000",
    "shared_savings_rate": "a fraction in [0, 1], e.g. 0.5",
    "shared_losses_rate": "a fraction in [0, 1], e.g. 0.5",
    "losses_from_contract_year": "a whole contract year >= 1 (1 = first contract year)",
    "minimum_savings_pct": "a percentage of the target >= 0, e.g. 2",
    "corridor": "ci95",
    "quality_gate": '{"outcome": name, "threshold": rate in [0, 1]}',
    "quality_gate.outcome": "the name of a yes/no outcome of the bundle",
    "quality_gate.threshold": "a rate in [0, 1], e.g. 0.05",
    "distribution_key": "{AGB code or provider type: share}, shares in [0, 1] adding up to 1",
    "fixed_sum_eur_per_patient": "euros per patient, a number >= 0",
    "payment_eur_per_episode": "euros per episode, a number >= 0",
    "payment_eur_per_phase": f"{{phase: euros}} for the phases {', '.join(PHASES)}",
    "risk_adjust": "true or false",
}


def _plain(value: Any) -> Any:
    """Decimals back to JSON numbers, for showing a value as the user wrote it."""
    if isinstance(value, Decimal):
        return int(value) if value.as_tuple().exponent == 0 else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    try:
        return json.dumps(_plain(value), default=str, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _reason(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ")
    if error["type"] in ("int_type", "bool_type", "string_type", "dict_type", "tuple_type", "list_type"):
        msg = f"{msg} ({type(error['input']).__name__} given)".replace("Decimal given", "decimal number given")
    return msg[0].lower() + msg[1:] if msg else msg


def _parameter_name(loc: tuple[Any, ...]) -> str:
    """``('quality_gate', 'threshold')`` -> ``quality_gate.threshold``; list indexes are dropped,
    a dict key is kept (``distribution_key.06123456``)."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ".".join(parts)


def _loads(parameters: str | Mapping[str, Any] | None) -> Any:
    if parameters is None:
        return {}
    if isinstance(parameters, Mapping):
        return dict(parameters)
    return json.loads(parameters, parse_float=Decimal)


def parse_terms(
    contract_id: str,
    bundle_id: str,
    model: str,
    parameters_json: str | Mapping[str, Any] | None,
    bundle_outcomes: set[str] | frozenset[str] | Iterable[str],
) -> Terms:
    """Validate one contract's ``parameters`` (JSON text, or an already parsed mapping) for its
    ``model``; ``bundle_outcomes`` are the outcome names of the bundle (for ``quality_gate``).

    Raises :class:`ContractTermsError` with one line per problem, each naming the contract and the
    parameter."""
    where = f"contract {contract_id}"
    outcomes = set(bundle_outcomes)
    problems: list[str] = []
    if model not in MODELS:
        raise ContractTermsError([f"{where}: model {model!r} is not one of {', '.join(MODELS)}"])
    try:
        raw = _loads(parameters_json)
    except (json.JSONDecodeError, InvalidOperation) as exc:
        raise ContractTermsError([f"{where}: parameters are not valid JSON ({exc})"]) from None
    if not isinstance(raw, dict):
        raise ContractTermsError([f"{where}: parameters must be a JSON object {{name: value}}, not {_show(raw)}"])

    allowed = ALLOWED[model]
    known: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in PARAMETERS:
            close = difflib.get_close_matches(str(name), PARAMETERS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(allowed)})"
            problems.append(f"{where}: unknown parameter {name!r}{hint}")
        elif name not in allowed:
            problems.append(
                f"{where}: parameter {name} does not apply to model {model} (its parameters: {', '.join(allowed)})"
            )
        else:
            known[name] = value
    for name in REQUIRED[model]:
        if raw.get(name) is None:
            problems.append(f"{where}: parameter {name} is missing; model {model} requires it ({UNITS[name]})")
    if model == "bundled_payment":
        given = [n for n in ("payment_eur_per_episode", "payment_eur_per_phase") if raw.get(n) is not None]
        if not given:
            problems.append(
                f"{where}: parameter payment_eur_per_episode or payment_eur_per_phase is "
                f"missing; model bundled_payment requires one of them "
                f"({UNITS['payment_eur_per_episode']}; or {UNITS['payment_eur_per_phase']})"
            )
        elif len(given) == 2:
            problems.append(
                f"{where}: parameters payment_eur_per_episode and payment_eur_per_phase "
                f"are both given; give one of them"
            )
    if "corridor" in raw and "minimum_savings_pct" in raw:
        problems.append(
            f"{where}: parameters corridor and minimum_savings_pct are both given; the "
            f"ci95 corridor replaces the percentage, give one of them"
        )
    if raw.get("baseline") == "regional_capped_p95" and "stop_loss_eur" in raw:
        problems.append(
            f"{where}: parameter stop_loss_eur does not apply with baseline "
            f"regional_capped_p95 (the cap is the regional 95th percentile instead)"
        )

    terms: Terms | None = None
    try:
        terms = Terms.model_validate({"model": model, **known})
    except ValidationError as exc:
        for error in exc.errors():
            name = _parameter_name(error["loc"])
            top = name.split(".")[0]
            if error["type"] == "missing":
                problems.append(f"{where}: parameter {name} is missing ({UNITS.get(name, UNITS[top])})")
                continue
            if error["type"] == "extra_forbidden":
                parent, _, child = name.rpartition(".")
                close = difflib.get_close_matches(child, list(QualityGate.model_fields), n=1, cutoff=0.6)
                hint = f"did you mean '{parent}.{close[0]}'? " if close else ""
                problems.append(f"{where}: unknown parameter {name!r} ({hint}{parent} is {UNITS.get(parent, '')})")
                continue
            unit = UNITS.get(name, UNITS.get(top, ""))
            problems.append(
                f"{where}: parameter {name} = {_show(error['input'])} is wrong: {_reason(error)}; expected {unit}"
            )
    gate = known.get("quality_gate")
    outcome = gate.get("outcome") if isinstance(gate, dict) else None
    if isinstance(outcome, str) and outcome not in outcomes:
        problems.append(
            f"{where}: parameter quality_gate.outcome {outcome!r} is not an "
            f"outcome of bundle {bundle_id} (outcomes: {', '.join(sorted(outcomes)) or 'none'})"
        )
    if problems:
        raise ContractTermsError(problems)
    assert terms is not None
    return terms


# --- the whole contracts table -----------------------------------------------------------------

CONTRACT_COLUMNS = (
    "contract_id",
    "bundle_id",
    "provider_agb",
    "insurer_uzovi",
    "start_date",
    "end_date",
    "model",
    "parameters",
)


@dataclass(frozen=True)
class ContractRow:
    """One participating provider (for one insurer, or all when ``insurer_uzovi`` is None)."""

    provider_agb: str
    insurer_uzovi: str | None
    start_date: date
    end_date: date | None

    def covers(self, anchor: date) -> bool:
        return self.start_date <= anchor and (self.end_date is None or anchor <= self.end_date)


@dataclass(frozen=True)
class Contract:
    """One contract x bundle: its terms and its provider rows (sorted)."""

    contract_id: str
    bundle_id: str
    terms: Terms
    rows: tuple[ContractRow, ...]

    @property
    def start_year(self) -> int:
        """The contract's first start year: contract year ``k = y - start_year + 1``."""
        return min(r.start_date for r in self.rows).year

    @property
    def end_year(self) -> int | None:
        """The last year any row covers; None when a row is open-ended."""
        if any(r.end_date is None for r in self.rows):
            return None
        return max(r.end_date for r in self.rows if r.end_date is not None).year

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(sorted({r.provider_agb for r in self.rows}))


def _canonical(parameters: str | None) -> str:
    try:
        return json.dumps(_loads(parameters), sort_keys=True, default=str)
    except (json.JSONDecodeError, InvalidOperation):
        return str(parameters)


def contract_problems(
    contracts: pl.DataFrame, bundle_outcomes: Mapping[str, Iterable[str]], providers: pl.DataFrame | None = None
) -> tuple[dict[tuple[str, str], Contract], list[str]]:
    """Check every contract x bundle of a ``contracts`` table; returns the valid contracts by
    ``(contract_id, bundle_id)`` and the sorted list of problems (one line each).

    ``bundle_outcomes`` maps each known bundle id to its outcome names. With ``providers``
    (``provider_agb``, ``provider_type``, ``region``) the providers and the distribution key are
    checked against it too."""
    missing = [c for c in CONTRACT_COLUMNS if c not in contracts.columns]
    if missing:
        raise ContractTermsError([f"contracts table: missing column(s) {', '.join(missing)}"])
    problems: list[str] = []
    valid: dict[tuple[str, str], Contract] = {}
    types: dict[str, str | None] = {}
    regions: dict[str, str | None] = {}
    if providers is not None:
        types = dict(zip(providers["provider_agb"].to_list(), providers["provider_type"].to_list(), strict=True))
        if "region" in providers.columns:
            regions = dict(zip(providers["provider_agb"].to_list(), providers["region"].to_list(), strict=True))
    rows = contracts.select(CONTRACT_COLUMNS).sort(
        ["contract_id", "bundle_id", "provider_agb", "insurer_uzovi"], nulls_last=False
    )
    for (contract_id, bundle_id), group in rows.group_by(["contract_id", "bundle_id"], maintain_order=True):
        where = f"contract {contract_id}"
        if bundle_id not in bundle_outcomes:
            problems.append(
                f"{where}: bundle {bundle_id!r} is not a known bundle ({', '.join(sorted(bundle_outcomes))})"
            )
            continue
        models = sorted(set(group["model"].to_list()), key=str)
        params = sorted({_canonical(p) for p in group["parameters"].to_list()})
        if len(models) > 1:
            problems.append(
                f"{where}, bundle {bundle_id}: the provider rows disagree on model ({', '.join(map(str, models))})"
            )
            continue
        if len(params) > 1:
            problems.append(
                f"{where}, bundle {bundle_id}: the provider rows disagree on parameters ({' vs '.join(params)})"
            )
            continue
        try:
            terms = parse_terms(
                contract_id, bundle_id, models[0], group["parameters"][0], set(bundle_outcomes[bundle_id])
            )
        except ContractTermsError as exc:
            problems.extend(exc.problems)
            continue
        contract_rows = tuple(
            ContractRow(r["provider_agb"], r["insurer_uzovi"], r["start_date"], r["end_date"])
            for r in group.iter_rows(named=True)
        )
        bad = False
        for r in contract_rows:
            if r.end_date is not None and r.end_date < r.start_date:
                problems.append(
                    f"{where}: provider {r.provider_agb} ends ({r.end_date}) before it starts ({r.start_date})"
                )
                bad = True
        contract = Contract(contract_id, bundle_id, terms, contract_rows)
        if terms.baseline_years and max(terms.baseline_years) >= contract.start_year:
            problems.append(
                f"{where}: parameter baseline_years {list(terms.baseline_years)} must lie before "
                f"the contract's first start year {contract.start_year}"
            )
            bad = True
        if providers is not None:
            for agb in contract.providers:
                if agb not in types:
                    problems.append(f"{where}: provider {agb} is not in the providers table")
                    bad = True
                elif regions and regions.get(agb) is None:
                    problems.append(f"{where}: provider {agb} has no region (province) in the providers table")
                    bad = True
        key = terms.distribution_key
        if key and not bad:
            own = set(contract.providers)
            for name in sorted(key):
                if AGB.match(name) and name not in own:
                    problems.append(
                        f"{where}: parameter distribution_key names provider {name}, which is "
                        f"not a provider of the contract for bundle {bundle_id}"
                    )
                    bad = True
                elif name in PROVIDER_TYPES and providers is not None and not any(types.get(a) == name for a in own):
                    problems.append(
                        f"{where}: parameter distribution_key names provider type {name}, but "
                        f"no provider of the contract for bundle {bundle_id} is a {name}"
                    )
                    bad = True
        if not bad:
            valid[(contract_id, bundle_id)] = contract
    problems.extend(_overlaps(valid))
    return valid, sorted(set(problems))


def _overlaps(contracts: Mapping[tuple[str, str], Contract]) -> list[str]:
    """The same provider in two contracts of a bundle, for overlapping insurers and periods: its
    episodes would be settled twice."""
    problems = []
    by_provider: dict[tuple[str, str], list[tuple[str, ContractRow]]] = {}
    for (contract_id, bundle_id), contract in contracts.items():
        for row in contract.rows:
            by_provider.setdefault((bundle_id, row.provider_agb), []).append((contract_id, row))
    for (bundle_id, agb), entries in sorted(by_provider.items()):
        for i, (ca, a) in enumerate(entries):
            for cb, b in entries[i + 1 :]:
                if ca == cb and a.insurer_uzovi == b.insurer_uzovi:
                    continue
                insurers = a.insurer_uzovi is None or b.insurer_uzovi is None or a.insurer_uzovi == b.insurer_uzovi
                far = date.max
                periods = a.start_date <= (b.end_date or far) and b.start_date <= (a.end_date or far)
                if insurers and periods:
                    problems.append(
                        f"contract {ca}: provider {agb} is also in contract {cb} for bundle "
                        f"{bundle_id} in an overlapping period; its episodes would be settled twice"
                    )
    return problems


def check_contracts(
    contracts: pl.DataFrame, bundle_outcomes: Mapping[str, Iterable[str]], providers: pl.DataFrame | None = None
) -> dict[tuple[str, str], Contract]:
    """Every contract x bundle of the table, validated; raises one :class:`ContractTermsError`
    listing all problems (one line each) when there is any."""
    valid, problems = contract_problems(contracts, bundle_outcomes, providers)
    if problems:
        raise ContractTermsError(problems)
    return valid
