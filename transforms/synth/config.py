"""Parameters of a synthetic delivery: size, years, seed, faults and the planted reform effects."""

from __future__ import annotations

from datetime import date
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

BUNDLES = (
    "hip_oa",
    "knee_oa",
    "cataract",
    "breast_cancer_surgery",
    "ra_drugs",
    "heart_failure",
    "acute_stroke",
    "birth_care",
    "hand_wrist",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FaultRates(_Frozen):
    """Share of claim lines (per table) that get each fault. All zero with ``--clean``.

    Credit lines and re-declarations are legitimate corrections, not errors, but a pipeline that
    mishandles them loses money, so they are injected at a configurable rate like the errors.
    """

    credit: float = Field(0.01, ge=0, le=0.5, description="lines credited by a negative line referencing them")
    redeclare_share: float = Field(0.7, ge=0, le=1, description="of credited lines, the share re-declared")
    duplicate: float = Field(0.002, ge=0, le=0.5, description="lines delivered twice with the same claim_id")
    invalid_code: float = Field(0.001, ge=0, le=0.5, description="lines with a code not valid on the service date")
    outside_enrolment: float = Field(0.001, ge=0, le=0.5, description="lines for a patient without an enrolment spell")
    unknown_provider: float = Field(0.0005, ge=0, le=0.5, description="lines from an AGB code not in providers")
    bsn_in_id: float = Field(0.0001, ge=0, le=0.5, description="lines whose patient_id is a BSN-like number")
    late_declarations: bool = Field(True, description="withhold lines declared after data_as_of (run-out)")

    @classmethod
    def none(cls) -> FaultRates:
        return cls(
            credit=0,
            redeclare_share=0,
            duplicate=0,
            invalid_code=0,
            outside_enrolment=0,
            unknown_provider=0,
            bsn_in_id=0,
            late_declarations=False,
        )

    def error_rates(self) -> dict[str, float]:
        """The faults that make a line invalid (each expected to be quarantined by ingest)."""
        return {
            "duplicate": self.duplicate,
            "invalid_code": self.invalid_code,
            "outside_enrolment": self.outside_enrolment,
            "unknown_provider": self.unknown_provider,
            "bsn_in_id": self.bsn_in_id,
        }


class BundleEffect(_Frozen):
    """The planted effect of a bundle contract on the treated providers, after the contract start.

    ``price_eur`` changes the declared amount of the triggering subtraject (the operation) of an
    episode anchored at a treated provider on or after the start; ``volume_pct`` raises the rate of
    triggers at treated providers after the start by that percentage.
    """

    price_eur: float = 0.0
    volume_pct: float = Field(0.0, ge=-50, le=200)


def default_effects() -> dict[str, BundleEffect]:
    """Hip/knee as found in the Dutch evaluation (about EUR -245 per patient-quarter on the operation
    price, i.e. about -1,300 per episode over its 5.3 quarters, and +8% volume); none elsewhere."""
    effects = {b: BundleEffect() for b in BUNDLES}
    effects["hip_oa"] = BundleEffect(price_eur=-1300.0, volume_pct=8.0)
    effects["knee_oa"] = BundleEffect(price_eur=-1300.0, volume_pct=8.0)
    return effects


#: Bundles whose care path can add planted extra in-bundle care (see ``paths/common.py``,
#: ``EXTRA_CARE``): the utilisation effects below may name only these.
UTILISATION_BUNDLES = ("hip_oa", "knee_oa", "cataract", "acute_stroke")


class ProviderEffects(_Frozen):
    """Two planted providers of one bundle for the provider benchmark (``docs/panels-spec.md`` section 1).

    Both are hospitals outside the costlier province that never sign the bundle's contract and that
    draw ``patient_share`` of the bundle's patients nationally each (high-volume centres), so that a
    30,000-patient delivery gives each of them at least about 40 eligible episodes for a funnel plot.
    (18% each is more than any Dutch hospital does, about 5% for the largest; lower it for realism
    in large deliveries.) The *utilisation* provider gives ordinary prices but more in-bundle care: its
    patients stay longer and get extra in-bundle subtrajecten, so that its mean in-bundle cost is
    ``utilisation_factor`` times an ordinary provider's, declared and standardised alike. The
    *price* provider gives ordinary care at ``price_factor`` times the national price level for the
    bundle's products, so only its declared cost is higher. A factor of 1 turns that provider off.
    """

    bundle: str = "hip_oa"
    utilisation_factor: float = Field(1.2, ge=1.0, le=3.0)
    price_factor: float = Field(1.2, ge=0.5, le=3.0)
    patient_share: float = Field(
        0.18, ge=0.0, le=0.3, description="of the bundle's patients, drawn by each planted provider"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.bundle not in ("hip_oa", "knee_oa"):
            raise ValueError(f"provider effects are planted for hip_oa or knee_oa, not {self.bundle!r}")
        return self


class RegionalEffects(_Frozen):
    """A costlier province (``docs/panels-spec.md`` section 3, regional and national baselines).

    Episodes anchored at a provider in ``province`` get extra in-bundle care (utilisation, so the
    difference shows in declared and standardised cost) that makes their mean in-bundle cost
    ``factors[bundle]`` times that of the same care elsewhere. The contracts of bundles with a
    regional baseline (cataract, acute_stroke) are placed in ``province`` whatever the factors, so
    that a regional baseline is one province. ``stroke_tail_share`` of stroke patients get one to
    three extra clinical rehabilitation stays (the heavy right tail that makes capping the costliest
    5% at the regional P95 matter); 0 turns it off.
    """

    province: str = Field(
        "PV28", pattern=r"^PV(2\d|3[01])$", description="CBS province code PV20-PV31 (PV28 = Zuid-Holland)"
    )
    factors: dict[str, float] = Field(default_factory=lambda: {"cataract": 1.2, "acute_stroke": 1.2})
    stroke_tail_share: float = Field(0.04, ge=0.0, le=0.3)

    @model_validator(mode="after")
    def _check(self) -> Self:
        unknown = set(self.factors) - set(UTILISATION_BUNDLES)
        if unknown:
            raise ValueError(
                f"regional factors for {sorted(unknown)}: only {', '.join(UTILISATION_BUNDLES)} can have one"
            )
        bad = {b: f for b, f in self.factors.items() if not 1.0 <= f <= 3.0}
        if bad:
            raise ValueError(f"regional factors must lie in [1, 3]: {bad}")
        return self


class PopulationEffect(_Frozen):
    """A planted population contract: the patients of a few GP practices spend a known share less.

    Every claim amount (dbc, gp, pharmacy, paramedical, maternity; not the GP registration fees,
    which are fixed tariffs) of a patient whose usual GP is one of the ``practices`` largest GP
    practices of ``province`` (by expected patients, ties by AGB), with a service date (``end_date``
    for DBC subtrajecten) on or after 1 January ``start_year``, is multiplied by
    ``1 + spending_pct / 100`` and rounded to the cent; the registered activities of such a
    subtraject with an amount are scaled alike. ``spending_pct`` 0 (the default) turns it off; the
    delivery is then byte-identical to one generated without this option. ``truth.json``
    ``population_effect`` records the practices and the planted savings per quarter.
    """

    province: str = Field(
        "PV31", pattern=r"^PV(2\d|3[01])$", description="CBS province code PV20-PV31 (PV31 = Limburg)"
    )
    practices: int = Field(
        2,
        ge=1,
        le=50,
        description="number of GP practices: the largest of the province by patients (all if it has fewer)",
    )
    start_year: int = Field(2019, ge=2015, le=2030, description="the effect applies from 1 January of this year")
    spending_pct: float = Field(
        0.0, ge=-90.0, le=100.0, description="change of the practices' patients' spending, in percent (0 = off)"
    )

    @property
    def active(self) -> bool:
        return self.spending_pct != 0.0


class SynthConfig(_Frozen):
    """Everything that determines a synthetic delivery; the same config gives byte-identical files."""

    patients: int = Field(2000, ge=10)
    first_year: int = Field(2015, ge=2015, le=2030, description="from 2015: the code tables and 120-day subtrajecten")
    last_year: int = Field(2022, ge=2015, le=2030)
    seed: int = 7
    data_as_of: date | None = Field(None, description="default: 31 March after the last year")
    clean: bool = False
    faults: FaultRates = FaultRates()
    effects: dict[str, BundleEffect] = Field(default_factory=default_effects)
    providers: ProviderEffects = ProviderEffects()
    regional: RegionalEffects = RegionalEffects()
    population: PopulationEffect = PopulationEffect()
    specialist_scale: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        description="multiplies the number of hospitals, ZBCs and rehabilitation centres (70, 40, 16): a delivery of a "
        "few hundred thousand insured is then like a region, with realistic volumes per provider "
        "(rounded; at least one per province and enough in the costlier province for its contracts and "
        "two untreated peers; the contract waves shrink with them, see providers._plan_contracts)",
    )
    block_size: int = Field(
        5_000, ge=100, description="patients generated (and written) per block; about 0.9 GB per worker"
    )
    delivery_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.last_year < self.first_year:
            raise ValueError(f"last_year {self.last_year} is before first_year {self.first_year}")
        unknown = set(self.effects) - set(BUNDLES)
        if unknown:
            raise ValueError(f"effects for unknown bundles: {sorted(unknown)}; known: {', '.join(BUNDLES)}")
        if self.data_as_of is not None and self.data_as_of < date(self.last_year, 12, 31):
            raise ValueError(f"data_as_of {self.data_as_of} is before the end of the last year {self.last_year}")
        return self

    @property
    def as_of(self) -> date:
        return self.data_as_of or date(self.last_year + 1, 3, 31)

    @property
    def fault_rates(self) -> FaultRates:
        return FaultRates.none() if self.clean else self.faults

    @property
    def effective_delivery_id(self) -> str:
        if self.delivery_id:
            return self.delivery_id
        mode = "clean" if self.clean else "faulty"
        scale = "" if self.specialist_scale == 1.0 else f"-x{self.specialist_scale:g}"
        return f"synth-{self.patients}p{scale}-{self.first_year}-{self.last_year}-s{self.seed}-{mode}"

    @property
    def exact_truth(self) -> bool:
        """No faults, corrections or late declarations: the truth episodes and settlements are exact."""
        rates = self.fault_rates
        return not rates.late_declarations and rates.credit == 0 and not any(rates.error_rates().values())

    def without_panel_effects(self) -> SynthConfig:
        """The same config with the planted benchmark and regional effects turned off."""
        return self.model_copy(
            update={
                "providers": self.providers.model_copy(
                    update={"utilisation_factor": 1.0, "price_factor": 1.0, "patient_share": 0.0}
                ),
                "regional": self.regional.model_copy(update={"factors": {}, "stroke_tail_share": 0.0}),
            }
        )

    def effect(self, bundle: str) -> BundleEffect:
        return self.effects.get(bundle, BundleEffect())

    @property
    def n_blocks(self) -> int:
        return -(-self.patients // self.block_size)
