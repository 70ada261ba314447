"""Building blocks shared by the care paths: drawing trigger events, GP contacts and referrals,
physiotherapy series, contract treatment and the planted effects.

A care path module exposes ``generate(ctx) -> None``: it draws its trigger events for the block's
patients, writes every claim line of the path through ``ctx.claims`` and records each planted
trigger with ``ctx.plant``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from transforms.synth.calendar import year_of, year_start
from transforms.synth.catalogue import Catalogue, Product
from transforms.synth.claims import ActivityLines, ClaimBuffer, codes_series
from transforms.synth.config import SynthConfig
from transforms.synth.population import Population
from transforms.synth.providers import ProviderRegistry
from transforms.synth.tariffs import (
    GP_CONTACT_CODES,
    OCCUPATIONAL_SESSION_EUR,
    PHYSIO_SESSION_EUR,
    contact_codes,
    index_cents,
    pharmacy_cents,
)

#: Planted extra in-bundle care (``SynthConfig.providers`` utilisation provider and
#: ``SynthConfig.regional`` factors), per bundle: the catalogue product of the extra subtrajecten,
#: the mean in-bundle cost of an ordinary eligible episode at national prices in 2017 euros, and the
#: share of events whose patient is still alive and insured when the extra care starts (both
#: measured on 100,000-patient clean deliveries, 2015-2022). An event with utilisation factor ``f``
#: gets ``m = (f - 1) * mean / (price * reach)`` extra subtrajecten on average (``floor(m)``, plus
#: one with probability ``m - floor(m)``), so its episode's expected in-bundle cost is about ``f``
#: times an ordinary one's, declared and standardised alike.
EXTRA_CARE: dict[str, tuple[str, float, float]] = {
    "hip_oa": ("hip_oa_clinical_stay", 10_600.0, 1.0),
    "knee_oa": ("knee_oa_clinical_stay", 11_200.0, 1.0),
    "cataract": ("cataract_outpatient", 2_790.0, 1.0),
    "acute_stroke": ("rehab_outpatient", 12_300.0, 0.85),
}


@dataclass
class PlantedTrigger:
    """Triggers planted by a path (arrays), linked to their claim lines after finalising."""

    bundle: str
    patient: np.ndarray
    anchor_day: np.ndarray
    provider: np.ndarray
    table: str  # table of the trigger line
    row: np.ndarray  # buffer row of the trigger line
    treated: np.ndarray  # anchored at a treated provider on/after its contract start
    price_effect_cents: np.ndarray  # planted change of the trigger line's amount
    role: str = "trigger"  # "trigger", or e.g. "second_eye" / "recurrence" for a trigger inside an episode


@dataclass
class PathContext:
    """Everything a care path needs for one block."""

    config: SynthConfig
    pop: Population
    registry: ProviderRegistry
    catalogue: Catalogue
    claims: ClaimBuffer
    rng: np.random.Generator
    chronic: dict[str, np.ndarray]  # condition -> bool[patient, year]
    planted: list[PlantedTrigger] = field(default_factory=list)

    @property
    def years(self) -> range:
        return range(self.config.first_year, self.config.last_year + 1)

    @property
    def first_day(self) -> int:
        return int(year_start(self.config.first_year))

    @property
    def last_day(self) -> int:
        return int(year_start(self.config.last_year + 1)) - 1

    def product(self, key: str) -> Product:
        return self.catalogue[key]

    def plant(self, trigger: PlantedTrigger) -> None:
        self.planted.append(trigger)

    # -- events ------------------------------------------------------------------------------------
    def draw_events(
        self, probability: Callable[[np.ndarray, np.ndarray, int], np.ndarray], eligible: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One Bernoulli draw per patient and year with ``probability(age, sex, year)``; the event
        day is uniform in the year and must fall while the patient is insured and alive.
        Returns (patient, day) arrays."""
        patients, days = [], []
        n = self.pop.size
        for year in self.years:
            age = year - self.pop.birth_year
            p = probability(age, self.pop.sex, year)
            if eligible is not None:
                p = np.where(eligible if eligible.ndim == 1 else eligible[:, year - self.config.first_year], p, 0.0)
            hit = np.flatnonzero(self.rng.random(n) < p)
            d = int(year_start(year)) + self.rng.integers(0, 365, hit.size)
            ok = self.pop.spell_at(hit, d) >= 0
            patients.append(hit[ok])
            days.append(d[ok])
        return np.concatenate(patients), np.concatenate(days)

    def treated(self, bundle: str, provider: np.ndarray, day: np.ndarray) -> np.ndarray:
        return self.registry.contract_start[bundle][provider] <= day

    def apply_volume_effect(
        self, bundle: str, patient: np.ndarray, day: np.ndarray, provider: np.ndarray
    ) -> np.ndarray:
        """Thin candidate events drawn at the raised rate (1 + v): keep all at treated providers after
        the start, and 1 / (1 + v) of the others. Returns the mask of kept events."""
        v = self.config.effect(bundle).volume_pct / 100.0
        if v <= 0:
            return np.ones(patient.size, dtype=bool)
        treated = self.treated(bundle, provider, day)
        return treated | (self.rng.random(patient.size) < 1.0 / (1.0 + v))

    def draw_treated_events(
        self,
        bundle: str,
        probability: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
        *,
        zbc_share: float = 0.0,
        elsewhere_share: float = 0.08,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Trigger events of a bundle with their provider, the planted volume effect applied:
        candidates at the raised rate, a hospital per event, then thinning outside treatment."""
        boost = self.volume_boost(bundle)
        patient, day = self.draw_events(lambda age, sex, year: probability(age, sex, year) * boost)
        provider = self.hospital_for(patient, zbc_share=zbc_share, elsewhere_share=elsewhere_share, bundle=bundle)
        keep = self.apply_volume_effect(bundle, patient, day, provider)
        return patient[keep], day[keep], provider[keep]

    def volume_boost(self, bundle: str) -> float:
        return 1.0 + max(self.config.effect(bundle).volume_pct, 0.0) / 100.0

    def hospital_for(
        self, patient: np.ndarray, zbc_share: float = 0.0, elsewhere_share: float = 0.08, bundle: str | None = None
    ) -> np.ndarray:
        """The hospital a patient goes to: mostly the usual one, sometimes a ZBC (elective care) or
        another hospital anywhere (patients travel for reputation or waiting times). For the bundle
        of the planted benchmark providers, each of them draws ``patient_share`` of the patients
        from the whole country (high-volume centres)."""
        u = self.rng.random(patient.size)
        chosen = self.pop.usual["hospital"][patient].copy()
        to_zbc = u < zbc_share
        chosen[to_zbc] = self.pop.usual["zbc"][patient[to_zbc]]
        away = (u >= zbc_share) & (u < zbc_share + elsewhere_share)
        hospitals = self.registry.of_kind("hospital")
        chosen[away] = hospitals[self.rng.integers(0, hospitals.size, int(away.sum()))]
        if bundle is not None and bundle == self.config.providers.bundle:
            providers, cumulative = self.registry.referral
            if cumulative.size and cumulative[-1] > 0:
                v = self.rng.random(patient.size)
                pick = np.searchsorted(cumulative, v, side="right")
                referred = pick < providers.size
                chosen[referred] = providers[pick[referred]]
        return chosen

    # -- planted utilisation (provider benchmark, costlier province) ---------------------------------
    def utilisation_factor(self, bundle: str, provider: np.ndarray) -> np.ndarray:
        """Per event, the planted factor on the in-bundle cost of an episode anchored at ``provider``:
        the utilisation provider's factor for its bundle, times the province's factor."""
        factor = np.ones(np.size(provider))
        effects = self.config.providers
        if bundle == effects.bundle and effects.utilisation_factor != 1.0:
            factor[provider == self.registry.planted["utilisation"]] *= effects.utilisation_factor
        regional = self.config.regional
        f = regional.factors.get(bundle, 1.0)
        if f != 1.0:
            factor[self.registry.province[provider] == regional.province] *= f
        return factor

    def extra_care_count(self, bundle: str, factor: np.ndarray) -> np.ndarray:
        """How many extra in-bundle subtrajecten (``EXTRA_CARE``) each event gets for its factor."""
        key, mean_eur, reach = EXTRA_CARE[bundle]
        m = (np.asarray(factor) - 1.0) * mean_eur / (self.product(key).price_eur * reach)
        whole = np.floor(m)
        extra = whole + (self.rng.random(m.size) < (m - whole))
        return np.where(m > 0, extra, 0).astype(np.int64)

    def extra_care(
        self,
        bundle: str,
        patient: np.ndarray,
        provider: np.ndarray,
        first_start: np.ndarray,
        count: np.ndarray,
        *,
        spacing: int,
        days: int,
        care_days: np.ndarray | int = 0,
    ) -> None:
        """Declare ``count`` extra subtrajecten of the bundle's ``EXTRA_CARE`` product per event: the
        first from ``first_start``, then every ``spacing`` days, each ``days`` long."""
        key = EXTRA_CARE[bundle][0]
        for k in range(int(count.max()) if count.size else 0):
            sel = np.flatnonzero(count > k)
            start = first_start[sel] + k * spacing
            cd = care_days[sel] if isinstance(care_days, np.ndarray) else care_days
            self.subtraject(
                key,
                patient[sel],
                provider[sel],
                start,
                days=np.full(sel.size, days),
                care_days=cd,
                main_activity_day=start,
            )

    # -- lines ---------------------------------------------------------------------------------------
    def subtraject(
        self,
        key: str,
        patient: np.ndarray,
        provider: np.ndarray,
        start: np.ndarray,
        *,
        days: np.ndarray | int | None = None,
        care_days: np.ndarray | int = 0,
        main_activity_day: np.ndarray | None = None,
        extra_visits: np.ndarray | int = 0,
        amount_cents: np.ndarray | None = None,
        origin: str = "path",
    ) -> np.ndarray:
        """Declare one subtraject of catalogue product ``key`` per patient.

        Activities: the product's listed activities on ``main_activity_day`` (default the start),
        the care-day activity with quantity ``care_days``, and ``extra_visits`` repeat visits spread
        over the subtraject. Returns the buffer rows.
        """
        product = self.product(key)
        n = patient.size
        if days is None:
            days = np.maximum(1, np.round(product.days * self.rng.uniform(0.6, 1.0, n))).astype(np.int64)
        end = start + np.minimum(np.asarray(days, dtype=np.int64), max_days(start, product))
        main_day = start if main_activity_day is None else main_activity_day
        main_day = np.clip(main_day, start, end)
        acts: list[ActivityLines] = []
        for act in product.activities:
            if act.quantity == 0:
                acts.append(
                    ActivityLines(act.code, main_day, np.broadcast_to(np.asarray(care_days, dtype=np.int64), (n,)))
                )
            else:
                amount = index_cents(act.addon_price_eur, main_day) * act.quantity if act.addon_price_eur else None
                acts.append(ActivityLines(act.code, main_day, np.full(n, act.quantity), amount))
        visits = np.broadcast_to(np.asarray(extra_visits, dtype=np.int64), (n,))
        if visits.any():
            repeat_code = "190013"
            for k in range(int(visits.max())):
                has = visits > k
                visit_day = start + np.round((end - start) * (k + 1) / (visits + 1)).astype(np.int64)
                acts.append(ActivityLines(repeat_code, visit_day, has.astype(np.int64)))
        if amount_cents is None and any(a.addon_price_eur for a in product.activities):
            amount_cents = self.claims.dbc_price_cents(product, provider, end) + sum(
                index_cents(a.addon_price_eur, main_day) * a.quantity for a in product.activities if a.addon_price_eur
            )
        return self.claims.dbc(
            product, patient, provider, start, end, origin=origin, amount_cents=amount_cents, activities=acts
        )

    def gp_consults(
        self,
        patient: np.ndarray,
        days: np.ndarray,
        *,
        referral_specialism: str | None = None,
        origin: str = "path",
        age: np.ndarray | None = None,
    ) -> np.ndarray:
        """GP contacts: a plain consult (with the consult code of its year), optionally a referral;
        with ``age``, the full contact mix (visits, M&I, POH-GGZ) for background care."""
        idx, cents = contact_codes(days, self.rng.random(np.size(days)), age)
        extra = {"service_cd": codes_series(GP_CONTACT_CODES, idx)}
        if referral_specialism is not None:
            extra["referral_specialism_cd"] = referral_specialism
        return self.claims.first_line("gp", patient, self.pop.usual["gp"][patient], days, cents, origin=origin, **extra)

    def physio_series(
        self,
        patient: np.ndarray,
        start: np.ndarray,
        sessions: np.ndarray,
        *,
        interval_days: int = 7,
        discipline: str = "physiotherapy",
        origin: str = "path",
    ) -> None:
        """A series of weekly paramedical sessions (intake first)."""
        kind = "physiotherapy" if discipline == "physiotherapy" else "occupational_therapy"
        intake_cd, session_cd = ("1870", "1000") if discipline == "physiotherapy" else ("4001", "4000")
        price = PHYSIO_SESSION_EUR if discipline == "physiotherapy" else 2 * OCCUPATIONAL_SESSION_EUR
        provider = self.pop.usual[kind][patient]
        for k in range(int(sessions.max()) if sessions.size else 0):
            has = sessions > k
            p = patient[has]
            d = start[has] + k * interval_days + self.rng.integers(0, 3, p.size)
            self.claims.first_line(
                "paramedical",
                p,
                provider[has],
                d,
                index_cents(price, d),
                origin=origin,
                discipline=discipline,
                service_cd=intake_cd if k == 0 else session_cd,
            )

    def dispense(
        self,
        patient: np.ndarray,
        days: np.ndarray,
        atc: np.ndarray | str,
        ddd: np.ndarray | float,
        *,
        origin: str = "path",
    ) -> np.ndarray:
        """Pharmacy dispensings at the patient's usual pharmacy."""
        n = patient.size
        atc_a = np.broadcast_to(np.asarray(atc, dtype=object), (n,)).copy()
        ddd_a = np.broadcast_to(np.asarray(ddd, dtype=np.float64), (n,)).copy()
        prescriber = self.registry.agb[self.pop.usual["gp"][patient]]
        return self.claims.first_line(
            "pharmacy",
            patient,
            self.pop.usual["pharmacy"][patient],
            days,
            pharmacy_cents(atc_a, ddd_a),
            origin=origin,
            atc_cd=atc_a,
            ddd=ddd_a,
            prescriber_agb=prescriber,
        )


def max_days(start: np.ndarray, product: Product) -> np.ndarray:
    """Maximum subtraject length: 120 days from 2015 (regular and follow-up care types), 365 before."""
    return np.where(year_of(start) >= 2015, 120, 365)


def age_band_rate(age: np.ndarray, bands: dict[tuple[int, int], float]) -> np.ndarray:
    """Rate per age from a table {(age_from, age_to): rate} (inclusive bounds; 0 elsewhere)."""
    out = np.zeros(np.shape(age))
    for (lo, hi), rate in bands.items():
        out = np.where((age >= lo) & (age <= hi), rate, out)
    return out
