"""A researcher's panel request (``zorgpad panel build SPEC.yaml``), validated before any data are read.

A spec is a small YAML file (``docs/did-panels.md`` is its reference)::

    name: hip_knee_episode_cost
    bundles: [hip_oa, knee_oa]
    unit: episode            # episode | episode_quarter | provider_period | gemeente_year
    period: year             # year | quarter | month
    years: [2015, 2021]
    outcomes: [in_bundle_cents, total_cents, complication, length_of_stay]
    covariates: [age_at_anchor, sex, n_chronic_conditions, prior_year_standardised_cents]
    treatment: {from: contracts, anticipation: 0}
    control: never_treated   # or not_yet_treated
    filters: {status: [complete, death]}
    cluster: provider_agb

Everything that can be wrong with the file itself -- an unknown field, a misspelt unit, a year range
the wrong way round, an unknown bundle -- is refused here with one line naming the field
(:class:`SpecError`); whether the outcomes and covariates are columns of the episodes is checked
against the episodes' parquet schemas (their footers, no rows) in the preflight. The spec's hash
(:func:`spec_hash`) is taken over its validated, normalised content, so a comment or a reordered
key does not change it and any change of meaning does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from transforms.bundles import load_bundles
from transforms.errors import UserFacingError

UNITS = ("episode", "episode_quarter", "provider_period", "gemeente_year")
PERIODS = ("year", "quarter", "month")
STATUSES = ("complete", "censored_enrolment", "censored_data", "death")
DEFAULT_STATUSES = ("complete", "death")
#: Outcomes a provider_period panel computes itself (the others are means of episode columns).
VOLUME_OUTCOMES = ("volume", "log_volume")
#: Columns a spec may cluster by, per unit.
CLUSTERS = {
    "episode": ("provider_agb", "unit_id"),
    "episode_quarter": ("provider_agb", "unit_id"),
    "provider_period": ("provider_agb", "unit_id"),
    "gemeente_year": ("gemeente_code", "unit_id"),
}
MAX_SPEC_BYTES = 1_000_000


class SpecError(UserFacingError):
    """A spec that cannot be built: the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Treatment(_Strict):
    """Where the treatment comes from: the store's contracts (the cohort of a provider is the period of
    its first contract start for the spec's bundles, whichever insurer signed it)."""

    source: Literal["contracts"] = Field("contracts", alias="from")
    anticipation: int = Field(0, ge=0, le=24, description="periods before the start in which units already react")


class Range(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class PanelSpec(_Strict):
    """One panel request. Field descriptions are the spec reference (``docs/did-panels.md``)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="the panel's name (lower case, digits, _)")
    bundles: tuple[str, ...] = Field(min_length=1, description="bundle ids whose episodes make the panel")
    unit: Literal["episode", "episode_quarter", "provider_period", "gemeente_year"]
    period: Literal["year", "quarter", "month"] = "year"
    years: tuple[int, int] = Field(description="first and last calendar year of the panel's periods")
    outcomes: tuple[str, ...] = Field(
        min_length=1,
        description="episode columns (means per cell for aggregated units); volume and log_volume for provider_period",
    )
    covariates: tuple[str, ...] = Field(
        (), description="episode columns measured before the anchor; fixed before treatment in aggregated units"
    )
    treatment: Treatment = Treatment()
    control: Literal["never_treated", "not_yet_treated"] = "never_treated"
    filters: dict[str, Any] = Field(
        default_factory=lambda: {"status": list(DEFAULT_STATUSES)},
        description="episode column -> allowed values, or {min, max}; status is complete and death unless given",
    )
    cluster: str = Field("provider_agb", description="the column standard errors cluster by")
    weights: Literal["none", "episodes", "insured_years"] = Field(
        "none",
        description="episodes: aggregated rows weighted by their number of episodes; insured_years: "
        "gemeente_year rows by their Vektis insured-years",
    )
    adjust: bool = Field(False, description="add <outcome>_adjusted = outcome / completion of its period")
    mature_at: float = Field(0.95, gt=0, le=1, description="a period is mature from this completion on")
    maturity_table: Literal["dbc", "dbc_activity", "gp", "pharmacy", "paramedical", "maternity"] | None = Field(
        None, description="the claim table whose completion the periods carry (default: the bundles' anchor table)"
    )
    method: Literal["dr", "ipw", "reg"] = Field("dr", description="estimator used by --estimate")
    min_episodes: int = Field(
        1,
        ge=1,
        description="provider_period: a provider is in the panel with at least this many episodes over all periods",
    )

    @field_validator("years")
    @classmethod
    def _years(cls, value: tuple[int, int]) -> tuple[int, int]:
        first, last = value
        if not 1990 <= first <= 2100 or not 1990 <= last <= 2100:
            raise ValueError(f"years must lie between 1990 and 2100, not {first}-{last}")
        if first > last:
            raise ValueError(f"the first year {first} is after the last {last}")
        return value

    @field_validator("bundles")
    @classmethod
    def _bundles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = load_bundles()
        unknown = [b for b in value if b not in known]
        if unknown:
            raise ValueError(f"unknown bundle {unknown[0]!r}; bundles are {', '.join(sorted(known))}")
        if len(set(value)) != len(value):
            raise ValueError("a bundle is listed twice")
        return value

    @field_validator("outcomes", "covariates")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen = [c for i, c in enumerate(value) if c in value[:i]]
        if seen:
            raise ValueError(f"{seen[0]!r} is listed twice")
        return value

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: dict[str, Any]) -> dict[str, Any]:
        statuses = value.get("status")
        if statuses is not None:
            if not isinstance(statuses, list) or not statuses:
                raise ValueError("status: give a list of statuses")
            unknown = [s for s in statuses if s not in STATUSES]
            if unknown:
                raise ValueError(f"status: unknown status {unknown[0]!r}; statuses are {', '.join(STATUSES)}")
        # the status filter holds unless the spec gives its own: a filter on sex alone must not let
        # censored episodes (whose follow-up is not in the data) into the panel
        checked: dict[str, Any] = {"status": list(DEFAULT_STATUSES)} if "status" not in value else {}
        for column, allowed in value.items():
            if isinstance(allowed, list):
                if not allowed:
                    raise ValueError(f"{column}: an empty list keeps nothing")
                bad = [v for v in allowed if not isinstance(v, (str, int, bool))]
                if bad:
                    raise ValueError(f"{column}: {bad[0]!r} is not a value (give strings, numbers or true/false)")
                checked[column] = allowed
            elif isinstance(allowed, dict):
                try:
                    checked[column] = Range.model_validate(allowed)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    raise ValueError(
                        f"{column}{'.' + where if where else ''}: {first['msg'].removeprefix('Value error, ')}"
                    ) from None
            else:
                raise ValueError(f"{column}: give a list of allowed values or {{min: .., max: ..}}, not {allowed!r}")
        return checked

    @model_validator(mode="after")
    def _consistent(self) -> PanelSpec:
        overlap = [c for c in self.covariates if c in self.outcomes]
        if overlap:
            raise _FieldError("covariates", f"{overlap[0]!r} is also an outcome")
        if self.unit == "episode_quarter" and self.period != "quarter":
            raise _FieldError(
                "period",
                f"unit episode_quarter bins lines by calendar quarter: period must be quarter, not {self.period}",
            )
        if self.unit == "gemeente_year" and self.period != "year":
            raise _FieldError("period", f"unit gemeente_year is yearly: period must be year, not {self.period}")
        volume = [o for o in self.outcomes if o in VOLUME_OUTCOMES]
        if volume and self.unit != "provider_period":
            raise _FieldError("outcomes", f"{volume[0]} is an outcome of unit provider_period only")
        if self.weights == "insured_years" and self.unit != "gemeente_year":
            raise _FieldError("weights", f"insured_years weigh gemeente_year rows; unit {self.unit} has none")
        if self.cluster not in CLUSTERS[self.unit]:
            raise _FieldError(
                "cluster", f"unit {self.unit} clusters by {' or '.join(CLUSTERS[self.unit])}, not {self.cluster!r}"
            )
        if self.unit == "episode_quarter":
            costs = [o for o in self.outcomes if not o.endswith("_cents")]
            if costs:
                raise _FieldError(
                    "outcomes",
                    f"unit episode_quarter sums allocated cents per quarter: {costs[0]!r} is not a *_cents column",
                )
        if self.unit == "gemeente_year":
            self._gemeente_year()
        return self

    def _gemeente_year(self) -> None:
        """gemeente_year outcomes and covariates are Vektis measures (``transforms.did_panel.gemeente``),
        not episode columns; Vektis costs are final, so the store's completion does not adjust them."""
        from transforms.did_panel.gemeente import COVARIATES, OUTCOMES

        for field_name, names, valid in (
            ("outcomes", self.outcomes, OUTCOMES),
            ("covariates", self.covariates, COVARIATES),
        ):
            wrong = [n for n in names if n not in valid]
            if wrong:
                raise _FieldError(
                    field_name,
                    f"{wrong[0]!r} is not one of the {field_name} of unit gemeente_year "
                    f"(Vektis, per gemeente and year): {', '.join(valid)}",
                )
        if self.adjust:
            raise _FieldError(
                "adjust",
                "unit gemeente_year: Vektis costs are final, the store's claims completion "
                "does not apply to them; leave adjust false",
            )

    @property
    def repeated_cross_sections(self) -> bool:
        """Whether the panel's rows are independent observations for the estimator (episodes, episode
        quarters) rather than units followed over every period (providers, gemeenten)."""
        return self.unit in ("episode", "episode_quarter")

    @property
    def statuses(self) -> tuple[str, ...] | None:
        value = self.filters.get("status")
        return tuple(value) if isinstance(value, list) else None


class _FieldError(ValueError):
    """A consistency error of the whole spec that belongs to one field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("list[", "Range", "function-"))]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "spec"


def _explain(error: dict) -> str:
    loc = tuple(error.get("loc") or ())
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    field = _location(loc)
    if isinstance(cause, _FieldError):
        return f"field `{cause.field}`: {cause}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        return (
            f"field `{field}`: not a spec field (fields: {', '.join(PanelSpec.model_fields)})"
            if len(loc) == 1
            else f"field `{field}`: not a field here"
        )
    if error["type"] == "missing":
        return f"field `{field}`: required"
    if error["type"] == "literal_error" and ctx.get("expected"):
        return f"field `{field}`: {error.get('input')!r} is not one of {ctx['expected']}"
    return f"field `{field}`: {message}"


def parse_spec(data: object, *, source: str = "spec") -> PanelSpec:
    """Validate a loaded spec; raises :class:`SpecError` naming the (first) wrong field."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a spec is a YAML mapping of fields (name, bundles, unit, ...), not {type(data).__name__}"
        )
    try:
        return PanelSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        raise SpecError(
            f"{source}: {_explain(errors[0])}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        ) from None


def load_spec(path: Path | str) -> PanelSpec:
    """Read and validate a spec file (YAML); one clear :class:`SpecError` for anything wrong with it."""
    spec_path = Path(path).expanduser()
    if not spec_path.is_file():
        raise SpecError(f"{path}: no such spec file" if not spec_path.exists() else f"{path}: not a file")
    if spec_path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: {spec_path.stat().st_size:,} bytes is not a spec (a spec is a few lines of YAML)")
    try:
        data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    return parse_spec(data, source=str(path))


def normalised(spec: PanelSpec) -> dict:
    """The spec with every default filled in, as plain JSON values (what the hash is taken over)."""
    return json.loads(spec.model_dump_json(by_alias=True))


def spec_hash(spec: PanelSpec) -> str:
    """SHA-256 of the normalised spec as canonical JSON: the same request gives the same hash."""
    text = json.dumps(normalised(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


__all__ = [
    "CLUSTERS",
    "PERIODS",
    "UNITS",
    "VOLUME_OUTCOMES",
    "PanelSpec",
    "SpecError",
    "Treatment",
    "load_spec",
    "normalised",
    "parse_spec",
    "spec_hash",
]
