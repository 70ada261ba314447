"""Background care: the claims everyone has, beyond the bundle care paths.

- chronic conditions (persistent once acquired, prevalence rising with age) with quarterly
  dispensings by ATC and GP chain care (ketenzorg); these drive the case-mix covariates;
- GP registration fees every quarter (by age, NZa codes and tariffs);
- calibrated fill-up: GP consults, acute dispensings, background DBC subtrajecten and
  physiotherapy sessions, drawn per patient and year with a rate chosen so that the expected cost
  per insured-year of each table matches the Vektis figure for the year, sex and age class, after
  what the care paths and the chronic care already cost in this block.

Patients differ in how much care they use (a gamma "frailty", persistent across years), so counts
are over-dispersed as in real claims.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transforms.synth.calendar import year_start
from transforms.synth.calibration import CATEGORY_TABLE, Calibration, age_class_index
from transforms.synth.catalogue import price_index
from transforms.synth.paths.common import PathContext
from transforms.synth.tariffs import (
    PHYSIO_SESSION_EUR,
    expected_contact_cents,
    gp_tariff_cents,
    index_cents,
    pharmacy_cents,
)


@dataclass(frozen=True)
class ChronicCondition:
    """Prevalence ``top / (1 + exp(-(age - midpoint) / spread))`` (x ``female_factor`` for women),
    from ``min_age``; dispensed ATC codes (one per patient) and an optional chain-care code."""

    top: float
    midpoint: float
    spread: float
    atc: tuple[str, ...] = ()
    chain_care: str | None = None
    chain_share: float = 1.0
    min_age: int = 0
    female_factor: float = 1.0

    def prevalence(self, age: np.ndarray, sex: np.ndarray) -> np.ndarray:
        p = self.top / (1.0 + np.exp(-(age - self.midpoint) / self.spread))
        p = p * np.where(sex == 1, self.female_factor, 1.0)
        return np.where(age >= self.min_age, np.minimum(p, 0.95), 0.0)


CHRONIC: dict[str, ChronicCondition] = {
    "diabetes": ChronicCondition(0.20, 70, 10, ("A10BA02", "A10BA02", "A10BB12", "A10AE04"), "KZ-DM", 0.85, 20),
    "copd": ChronicCondition(0.12, 76, 8, ("R03AK06", "R03BB04"), "KZ-COPD", 0.6, 40),
    "asthma": ChronicCondition(0.05, 10, 4, ("R03AC02", "R03AK06"), "KZ-ASTMA", 0.2, 4),
    "hypertension": ChronicCondition(
        0.60, 66, 9, ("C09AA05", "C07AB02", "C08CA01", "C03AA03", "C09CA01"), "KZ-CVRM", 0.3, 25
    ),
    "lipid": ChronicCondition(0.42, 65, 8, ("C10AA01", "C10AA05"), None, 1.0, 30),
    "anticoagulation": ChronicCondition(0.32, 79, 7, ("B01AC06", "B01AF01", "B01AF02", "B01AA07"), None, 1.0, 30),
    "depression": ChronicCondition(0.06, 25, 5, ("N06AB04", "N06AB06", "N06AX11"), None, 1.0, 15, 1.7),
    "psychosis": ChronicCondition(0.009, 25, 5, ("N05AH04", "N05AX08"), None, 1.0, 15),
    "epilepsy": ChronicCondition(0.007, 10, 5, ("N03AX14", "N03AF01"), None, 1.0, 2),
    "thyroid": ChronicCondition(0.05, 55, 10, ("H03AA01",), None, 1.0, 15, 4.0),
    "acid": ChronicCondition(0.30, 68, 10, ("A02BC01", "A02BC02"), None, 1.0, 20),
    "rheumatoid_arthritis": ChronicCondition(0.014, 58, 9, (), None, 1.0, 20, 2.2),
    "heart_failure": ChronicCondition(0.16, 86, 6, (), None, 1.0, 45),
    # expensive outpatient drugs (biologicals for IBD/psoriasis, oral oncolytics, DOACs, insulin
    # pumps...): about 1-2% of insured, a third of outpatient pharmacy spending
    "specialty_drugs": ChronicCondition(
        0.035, 60, 15, ("L04AB04", "L04AB01", "L01BC06", "B01AF02", "A10AE04"), None, 1.0, 10
    ),
}
#: dispensings per year and DDD per dispensing: maintenance drugs quarterly (90 DDD), specialty
#: drugs monthly (28 DDD)
DISPENSING_SCHEDULE = {"specialty_drugs": (12, 28.0)}
#: Acute dispensings: (ATC, DDD per dispensing, relative frequency)
ACUTE = (
    ("J01CA04", 10.0, 6),
    ("J01CR02", 10.0, 3),
    ("J01FA10", 3.0, 2),
    ("M01AE01", 30.0, 5),
    ("M01AB05", 30.0, 2),
    ("N02BE01", 30.0, 4),
    ("N02AJ13", 20.0, 1),
    ("D07AC01", 30.0, 3),
    ("S01AD01", 10.0, 1),
    ("H02AB06", 10.0, 2),
    ("B03AA07", 30.0, 1),
    ("N05BA01", 15.0, 1),
    ("N05CF01", 15.0, 2),
    ("A02BC01", 30.0, 2),
)
REGISTRATION_CODES = (("11000", 0, 64), ("11100", 65, 74), ("11101", 75, 200))
#: The ra_drugs bundle's pharmacy drugs (transforms/bundles/ra_drugs.yml), and the specialty drug a
#: patient with rheumatoid arthritis gets in background care instead (a DOAC).
RA_BUNDLE_ATC = ("L04AB01", "L04AB04", "L04AB05", "L04AB06", "L04AA29")
RA_PATIENT_SPECIALTY_ATC = "B01AF02"


def draw_chronic(ctx: PathContext, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """bool[patient, year] per chronic condition; once acquired it stays (a persistent threshold
    per patient against an age-rising prevalence)."""
    n = ctx.pop.size
    years = np.array(list(ctx.years))
    age = years[None, :] - ctx.pop.birth_year[:, None]
    out = {}
    for name, cond in CHRONIC.items():
        u = rng.random(n)
        out[name] = u[:, None] < cond.prevalence(age, ctx.pop.sex[:, None])
    return out


def pad_chronic(chronic: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Newborns added by the birth path have no chronic condition."""
    return {
        k: np.vstack([v, np.zeros((size - v.shape[0], v.shape[1]), dtype=bool)]) if v.shape[0] < size else v
        for k, v in chronic.items()
    }


def exposure_years(ctx: PathContext) -> np.ndarray:
    """Insured years per (patient, year): overlap of the patient's spells with the year / 365.25."""
    pop = ctx.pop
    out = np.zeros((pop.size, len(ctx.years)))
    for y_index, year in enumerate(ctx.years):
        y0, y1 = int(year_start(year)), int(year_start(year + 1)) - 1
        overlap = np.minimum(pop.spell_end, y1) - np.maximum(pop.spell_start, y0) + 1
        overlap = np.clip(overlap, 0, None)
        np.add.at(out[:, y_index], pop.spell_patient, overlap)
    return out / 365.25


def generate(ctx: PathContext, calibration: Calibration) -> None:
    """All background care of the block (call after the care paths)."""
    rng = ctx.rng
    pop = ctx.pop
    n = pop.size
    years = np.array(list(ctx.years))
    chronic = ctx.chronic
    frailty = rng.gamma(0.9, 1 / 0.9, n)
    light = 0.5 + 0.5 * frailty  # first-line use varies less than hospital use

    # -- chronic dispensings and chain care -------------------------------------------------------
    for name, cond in CHRONIC.items():
        if not cond.atc:
            continue
        choice = np.array(cond.atc, dtype=object)[rng.integers(0, len(cond.atc), n)]
        if name == "specialty_drugs":
            # an RA patient's TNF inhibitor belongs to the ra_drugs care path, which plants it: background
            # care never dispenses an RA bundle drug to a patient with RA (it would open unplanted episodes)
            ever_ra = chronic["rheumatoid_arthritis"].any(axis=1)
            choice[ever_ra & np.isin(choice, RA_BUNDLE_ATC)] = RA_PATIENT_SPECIALTY_ATC
        in_chain = rng.random(n) < cond.chain_share
        for y_index, year in enumerate(years):
            p = np.flatnonzero(chronic[name][:, y_index])
            if p.size == 0:
                continue
            y0 = int(year_start(year))
            per_year, ddd = DISPENSING_SCHEDULE.get(name, (4, 90.0))
            interval = 365 // per_year
            offset = rng.integers(0, interval, p.size)
            for q in range(per_year):
                ctx.dispense(p, y0 + offset + interval * q, choice[p], ddd, origin="chronic")
            if cond.chain_care:
                c = p[in_chain[p]]
                for q in range(4):
                    d = y0 + 91 * q + 45 + np.zeros(c.size, dtype=np.int64)
                    ctx.claims.first_line(
                        "gp",
                        c,
                        pop.usual["gp"][c],
                        d,
                        gp_tariff_cents(cond.chain_care, d),
                        origin="chronic",
                        service_cd=cond.chain_care,
                    )

    # -- GP registration fees every quarter ------------------------------------------------------
    for year in years:
        y0 = int(year_start(year))
        age = year - pop.birth_year
        for code, lo, hi in REGISTRATION_CODES:
            p = np.flatnonzero((age >= lo) & (age <= hi))
            for q in range(4):
                # the first day of the quarter (in a leap year 1 April is day 91, not 90)
                quarter_start = (np.datetime64(f"{year}-{3 * q + 1:02d}-01") - np.datetime64("1970-01-01")).astype(
                    np.int64
                )
                d = int(quarter_start) + np.zeros(p.size, dtype=np.int64)
                ctx.claims.first_line(
                    "gp", p, pop.usual["gp"][p], d, gp_tariff_cents(code, d), origin="chronic", service_cd=code
                )

    # -- calibrated fill-up per table ------------------------------------------------------------
    exposure = exposure_years(ctx)
    age_class = age_class_index(np.maximum(years[None, :] - pop.birth_year[:, None], 0))
    sex = np.broadcast_to(pop.sex[:, None], age_class.shape)
    year_index = np.broadcast_to(np.arange(years.size)[None, :], age_class.shape)
    cell = (year_index * 2 + sex) * 19 + age_class  # one id per (year, sex, age class)
    n_cells = years.size * 2 * 19

    def rate_per_insured_year(category: str, unit_cents: np.ndarray) -> np.ndarray:
        """Events per insured-year per (patient, year) that fill the gap to the Vektis target."""
        table = CATEGORY_TABLE[category]
        spent = ctx.claims.cost_by_patient_year(table, ctx.config.first_year, ctx.config.last_year)
        target = calibration.target(years[None, :] + 0 * age_class, sex, age_class, category) * 100.0
        want = np.bincount(cell.ravel(), weights=(target * exposure).ravel(), minlength=n_cells)
        have = np.bincount(cell.ravel(), weights=spent.ravel(), minlength=n_cells)
        insured = np.bincount(cell.ravel(), weights=exposure.ravel(), minlength=n_cells)
        unit = np.bincount(cell.ravel(), weights=(unit_cents * exposure).ravel(), minlength=n_cells)
        unit = np.divide(unit, insured, out=np.ones(n_cells), where=insured > 0)
        rate = np.divide(np.maximum(want - have, 0), insured * unit, out=np.zeros(n_cells), where=insured > 0)
        return rate[cell]

    # GP contacts: consults, visits, M&I procedures, POH-GGZ modules
    elderly = (years[None, :] - pop.birth_year[:, None]) >= 75
    unit = np.where(
        elderly,
        [expected_contact_cents(int(y), True) for y in years],
        [expected_contact_cents(int(y), False) for y in years],
    )
    rate = rate_per_insured_year("gp", unit)
    patient, days = _poisson_days(rng, rate * light[:, None], years)
    ctx.gp_consults(patient, days, origin="background", age=(days // 365 + 1970) - pop.birth_year[patient])

    # acute dispensings
    atc = np.array([a[0] for a in ACUTE], dtype=object)
    ddd = np.array([a[1] for a in ACUTE])
    weight = np.array([a[2] for a in ACUTE], dtype=np.float64)
    weight /= weight.sum()
    unit = (pharmacy_cents(atc, ddd) * weight).sum() * price_index(years)[None, :] / price_index(2017)
    rate = rate_per_insured_year("pharmacy", np.broadcast_to(unit, cell.shape))
    patient, days = _poisson_days(rng, rate * light[:, None], years)
    pick = rng.choice(atc.size, size=patient.size, p=weight)
    ctx.dispense(patient, days, atc[pick], ddd[pick], origin="background")

    # physiotherapy sessions, in series of about twelve
    unit = index_cents(PHYSIO_SESSION_EUR, year_start(years) + 180)[None, :] * 12.0
    rate = rate_per_insured_year("paramedical", np.broadcast_to(unit, cell.shape))
    patient, days = _poisson_days(rng, rate * light[:, None], years)
    ctx.physio_series(patient, days, rng.integers(6, 19, patient.size), origin="background")

    # background DBC subtrajecten
    _background_dbc(ctx, rate_per_insured_year, frailty, cell, age_class, years)


def _poisson_days(rng: np.random.Generator, rate: np.ndarray, years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts per (patient, year) and a uniform day in the year for each event."""
    counts = rng.poisson(rate)
    patient_year = np.repeat(np.arange(counts.size), counts.ravel())
    patient, y_index = np.divmod(patient_year, counts.shape[1])
    days = year_start(years[y_index]) + rng.integers(0, 365, patient.size)
    return patient, days


def _background_dbc(
    ctx: PathContext, rate_fn, frailty: np.ndarray, cell: np.ndarray, age_class: np.ndarray, years: np.ndarray
) -> None:
    rng = ctx.rng
    pop = ctx.pop
    products = ctx.catalogue.background
    # product mix per (sex, age class) and its expected price
    mix = np.zeros((2, 19, len(products)))
    for s in (0, 1):
        for a in range(19):
            w = ctx.catalogue.background_weights(int(a * 5 + 2), s)
            mix[s, a] = w / w.sum() if w.sum() > 0 else 0
    price = np.array([p.price_eur for p in products]) * 100.0
    sex = pop.sex[:, None]
    unit = (mix[sex, age_class] * price).sum(axis=-1) * price_index(years)[None, :]
    rate = rate_fn("msz", unit)
    patient, days = _poisson_days(rng, rate * frailty[:, None], years)
    if patient.size == 0:
        return
    age = np.clip((days // 365 + 1970) - pop.birth_year[patient], 0, 120)
    probs = mix[pop.sex[patient], age_class_index(age)]
    cumulative = probs.cumsum(axis=1)
    pick = (rng.random(patient.size)[:, None] > cumulative).sum(axis=1)
    pick = np.minimum(pick, len(products) - 1)
    for i, product in enumerate(products):
        sel = np.flatnonzero(pick == i)
        if sel.size == 0:
            continue
        p = patient[sel]
        provider = ctx.hospital_for(p, zbc_share=0.0 if product.clinical else 0.08)
        care_days = 1 + rng.poisson(2.0, sel.size) if product.care_day_activity is not None else 0
        ctx.subtraject(
            product.key,
            p,
            provider,
            days[sel],
            care_days=care_days,
            extra_visits=rng.integers(0, 3, sel.size),
            origin="background",
        )
