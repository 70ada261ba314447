"""Bundle definitions as data: one YAML file per bundle in this folder, validated on load.

A researcher adds a bundle by adding a file; a wrong definition (an unknown code, a negative window,
an unknown component or table) fails with a message naming the file and the field. The episode
engine (``transforms.episodes``) reads only these objects.

Structure of a definition (see ``hip_oa.yml`` for a commented example)::

    id, title, contract_start_years
    trigger:      any_of: [line rule, ...]      the lines that open (or join) an episode
                  requires: [line rule, ...]    (optional) other lines needed in the same window
    window:       kind: days (pre_days, post_days) | calendar_year | phases (pre_days, post_days)
    in_bundle:    [line rule, ...]              lines allocated to the ``in_bundle`` component
    outcomes:     [outcome, ...]                flags and counts per episode
    exclusions:   min_age / max_age / sex       episodes of other patients are not built

A *line rule* selects money lines: ``table`` (dbc, gp, pharmacy, paramedical, maternity) and any of
``specialism``, ``diagnosis``, ``activity``, ``atc`` (prefixes), ``service``, ``discipline``; all
given criteria must hold, each list is a set of alternatives.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from transforms.contract import load_contract
from transforms.errors import UserFacingError

BUNDLE_DIR = Path(__file__).resolve().parent
#: The tables a line rule may select from: the contract's claim tables.
TABLES = load_contract().claim_tables
COMPONENTS = ("in_bundle", "msz_other", "gp", "pharmacy", "paramedical", "maternity")
TABLE_COMPONENT = {
    "dbc": "msz_other",
    "gp": "gp",
    "pharmacy": "pharmacy",
    "paramedical": "paramedical",
    "maternity": "maternity",
}
PHASES = ("prenatal", "natal", "postnatal", "maternity_care")
#: Any date in the NZa tables' span: a code is known when it is valid on some day of it.
CODE_SPAN = (date(2012, 1, 1), date(2030, 12, 31))


class CarePathCodes(BaseModel):
    """Codes with a meaning for every episode (``schema/care_path.yml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    care_day_activities: tuple[str, ...]
    gp_contact_services: tuple[str, ...]
    maternity_care_hours_service: str


def _codes(code_list) -> set[str]:
    return set(code_list.frame()[code_list.code].to_list())


@lru_cache(maxsize=1)
def care_path_codes() -> CarePathCodes:
    """The care-path codes, each checked to be a code of its contract code list or value set."""
    codes = CarePathCodes.model_validate(yaml.safe_load((BUNDLE_DIR / "schema" / "care_path.yml").read_text()))
    contract = load_contract()
    known = {
        "care_day_activities": _codes(contract.code_lists["nza_activity"]),
        "gp_contact_services": _codes(contract.code_lists["gp_service"]),
    }
    for field, valid in known.items():
        unknown = sorted(set(getattr(codes, field)) - valid)
        if unknown:
            raise ValueError(f"schema/care_path.yml {field}: unknown codes {unknown}")
    if codes.maternity_care_hours_service not in (contract.table("maternity").column("service_cd").allowed or ()):
        raise ValueError("schema/care_path.yml maternity_care_hours_service: not a maternity service_cd")
    return codes


class BundleDefinitionError(UserFacingError, ValueError):
    """A bundle definition that cannot be used, with the file and the problem."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LineRule(_Frozen):
    """Selects claim lines: every given criterion must hold; each list lists alternatives."""

    table: str
    specialism: tuple[str, ...] | None = None
    diagnosis: tuple[str, ...] | None = None
    activity: tuple[str, ...] | None = None
    atc: tuple[str, ...] | None = Field(None, description="ATC prefixes, e.g. L04AB or L04AB01")
    service: tuple[str, ...] | None = None
    discipline: tuple[str, ...] | None = None

    @field_validator("table")
    @classmethod
    def _a_claim_table(cls, value: str) -> str:
        if value not in TABLES:
            raise ValueError(f"table {value!r} is not a claim table of the contract ({', '.join(TABLES)})")
        return value

    @model_validator(mode="after")
    def _fits_table(self) -> Self:
        dbc_only = {"specialism": self.specialism, "diagnosis": self.diagnosis, "activity": self.activity}
        for name, value in dbc_only.items():
            if value is not None and self.table != "dbc":
                raise ValueError(f"{name} applies to dbc lines only, not to {self.table}")
        if self.atc is not None and self.table != "pharmacy":
            raise ValueError("atc applies to pharmacy lines only")
        if self.service is not None and self.table not in ("gp", "paramedical", "maternity"):
            raise ValueError(f"service applies to gp, paramedical and maternity lines, not to {self.table}")
        if self.discipline is not None and self.table != "paramedical":
            raise ValueError("discipline applies to paramedical lines only")
        return self


class Trigger(_Frozen):
    any_of: tuple[LineRule, ...] = Field(min_length=1)
    requires: tuple[LineRule, ...] = ()


class Window(_Frozen):
    kind: Literal["days", "calendar_year", "phases"]
    pre_days: int = Field(0, ge=0)
    post_days: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _days(self) -> Self:
        if self.kind != "calendar_year" and self.pre_days + self.post_days == 0:
            raise ValueError("a day window needs pre_days and/or post_days")
        return self


#: Fields of an outcome that a kind may need or read (``schema/outcome_kinds.yml``).
OUTCOME_FIELDS = ("rules", "activity", "within_days", "value", "component")


class OutcomeKind(_Frozen):
    """One kind of outcome: the column it gives and the fields of an outcome it needs and reads."""

    type: Literal["boolean", "count", "cents"]
    description: str
    requires: tuple[Literal[OUTCOME_FIELDS], ...] = ()
    allows: tuple[Literal[OUTCOME_FIELDS], ...] = ()


#: The declared outcome kinds (one entry per kind; its function is registered in
#: ``transforms.episodes.outcomes``).
OUTCOME_KINDS_FILE = BUNDLE_DIR / "schema" / "outcome_kinds.yml"


def outcome_kinds() -> dict[str, OutcomeKind]:
    """The outcome kinds of :data:`OUTCOME_KINDS_FILE`, by name: what a definition may declare."""
    return _outcome_kinds(OUTCOME_KINDS_FILE)


@lru_cache(maxsize=4)
def _outcome_kinds(path: Path) -> dict[str, OutcomeKind]:
    raw = yaml.safe_load(Path(path).read_text())
    return {name: OutcomeKind.model_validate(spec) for name, spec in raw.items()}


def outcome_kinds_of_type(kind_type: str) -> tuple[str, ...]:
    """The names of the outcome kinds whose column is of ``kind_type`` (e.g. ``boolean``)."""
    return tuple(name for name, kind in outcome_kinds().items() if kind.type == kind_type)


class Outcome(_Frozen):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: str
    description: str
    rules: tuple[LineRule, ...] = ()
    activity: tuple[str, ...] = ()
    within_days: int | None = Field(None, gt=0)
    value: int | None = None
    component: Literal["in_bundle", "any"] = "any"

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> Self:
        kinds = outcome_kinds()
        if self.kind not in kinds:
            raise ValueError(f"outcome {self.name}: unknown kind {self.kind!r}; known: {', '.join(kinds)}")
        kind = kinds[self.kind]
        given = {f for f in OUTCOME_FIELDS if f in self.model_fields_set}
        missing = [f for f in kind.requires if f not in given or getattr(self, f) in ((), None)]
        if missing:
            raise ValueError(f"outcome {self.name}: a {self.kind} outcome needs {', '.join(missing)}")
        unread = sorted(given - set(kind.requires) - set(kind.allows))
        if unread:
            raise ValueError(f"outcome {self.name}: a {self.kind} outcome does not use {', '.join(unread)}")
        return self


class Exclusions(_Frozen):
    min_age: int | None = None
    max_age: int | None = None
    sex: Literal["M", "V"] | None = None


class BundleDefinition(_Frozen):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    description: str = ""
    contract_start_years: tuple[int, ...] = ()
    trigger: Trigger
    window: Window
    in_bundle: tuple[LineRule, ...]
    outcomes: tuple[Outcome, ...] = ()
    exclusions: Exclusions = Exclusions()

    @field_validator("outcomes")
    @classmethod
    def _unique_outcomes(cls, value: tuple[Outcome, ...]) -> tuple[Outcome, ...]:
        names = [o.name for o in value]
        if len(names) != len(set(names)):
            raise ValueError(f"outcome names must be unique: {names}")
        return value

    def rules(self) -> list[LineRule]:
        return [
            *self.trigger.any_of,
            *self.trigger.requires,
            *self.in_bundle,
            *(r for o in self.outcomes for r in o.rules),
        ]


def _check_codes(bundle: BundleDefinition) -> None:
    """Every code a definition names exists in the contract's code lists (some day in their span)."""
    lists = load_contract().code_lists
    problems = []

    def known(list_name: str, code: str, scope: str | None = None) -> bool:
        frame = lists[list_name].frame()
        hit = frame.filter(frame[lists[list_name].code] == code)
        if scope is not None and lists[list_name].scope:
            hit = hit.filter(hit[lists[list_name].scope] == scope)
        return hit.height > 0

    for rule in bundle.rules():
        for s in rule.specialism or ():
            if not known("nza_specialism", s):
                problems.append(f"unknown specialism {s}")
        for d in rule.diagnosis or ():
            scopes = rule.specialism or (None,)
            if not any(known("nza_diagnosis", d, s) for s in scopes):
                problems.append(f"unknown diagnosis {d} within specialism {'/'.join(s for s in scopes if s)}")
        for a in (*(rule.activity or ()),):
            if not known("nza_activity", a):
                problems.append(f"unknown care activity {a}")
        for atc in rule.atc or ():
            if not (1 <= len(atc) <= 7 and atc[0] in "ABCDGHJLMNPRSV"):
                problems.append(f"not an ATC code or prefix: {atc}")
        if rule.table == "gp":
            for s in rule.service or ():
                if not known("gp_service", s):
                    problems.append(f"unknown GP service {s}")
        if rule.table == "maternity":
            allowed = load_contract().table("maternity").column("service_cd").allowed
            for s in rule.service or ():
                if s not in allowed:
                    problems.append(f"unknown maternity service {s}")
    for outcome in bundle.outcomes:
        for a in outcome.activity:
            if not known("nza_activity", a):
                problems.append(f"outcome {outcome.name}: unknown care activity {a}")
    if problems:
        raise ValueError("; ".join(sorted(set(problems))))


def parse_bundle(path: Path) -> BundleDefinition:
    """Load and validate one definition file."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        bundle = BundleDefinition.model_validate(raw)
        if bundle.id != Path(path).stem:
            raise ValueError(f"the id {bundle.id!r} differs from the file name {Path(path).stem!r}")
        _check_codes(bundle)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise BundleDefinitionError(f"bundle definition {Path(path).name}: {details}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise BundleDefinitionError(f"bundle definition {Path(path).name}: {exc}") from None
    return bundle


@lru_cache(maxsize=4)
def load_bundles(folder: Path = BUNDLE_DIR) -> dict[str, BundleDefinition]:
    """All bundle definitions of a folder, by id."""
    bundles = {}
    for path in sorted(Path(folder).glob("*.yml")):
        bundle = parse_bundle(path)
        bundles[bundle.id] = bundle
    return bundles


def select_bundles(names: list[str] | tuple[str, ...] | None, folder: Path = BUNDLE_DIR) -> list[BundleDefinition]:
    bundles = load_bundles(folder)
    if not names:
        return list(bundles.values())
    unknown = [n for n in names if n not in bundles]
    if unknown:
        raise BundleDefinitionError(f"unknown bundle(s) {', '.join(unknown)}; known: {', '.join(bundles)}")
    return [bundles[n] for n in names]
