"""First-line prices: NZa GP maximum tariffs from the bundled table, and typical pharmacy and
paramedical prices. A tariff for a year not in the table is the nearest known year's, grown or
shrunk by 2% a year."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

import reference
from transforms.money import euros_to_cents
from transforms.synth.calendar import year_of

GROWTH = 0.02
CONSULT_CODE_SWITCH_YEAR = 2022  # 12000 until 2021; 12010/12011/12001 from 2022

#: Tariffs missing from the bundled table (euros in the given year), e.g. the 12000 consult in
#: 2016 is listed without amount in the transcription; the NZa maximum was about 9.07.
FALLBACK_TARIFF = {"12000": (2016, 9.07), "12008": (2016, 4.50), "12009": (2016, 6.50)}
#: Chain-care fee per quarter (project codes; care groups negotiate these, typical levels).
CHAIN_CARE_EUR = {"KZ-DM": (2017, 62.0), "KZ-COPD": (2017, 45.0), "KZ-CVRM": (2017, 28.0), "KZ-ASTMA": (2017, 30.0)}
MI_EUR = (2017, 38.0)  # M&I procedures, typical


@lru_cache(maxsize=1)
def _tariff_table() -> dict[str, list[tuple[int, float]]]:
    table: dict[str, list[tuple[int, float]]] = {}
    for code, year, eur in (
        reference.table("gp/gp_tariffs.parquet").select("service_cd", "year", "max_tariff_eur").iter_rows()
    ):
        if eur is not None:
            table.setdefault(code, []).append((int(year), float(eur)))
    for code, (year, eur) in {**FALLBACK_TARIFF, **CHAIN_CARE_EUR}.items():
        table.setdefault(code, []).append((year, eur))
    return table


def gp_tariff_cents(code: str, days: np.ndarray) -> np.ndarray:
    """Tariff in cents of GP service ``code`` on each day."""
    days = np.asarray(days)
    return _tariff_by_year(code, year_of(days))


def _tariff_by_year(code: str, years: np.ndarray) -> np.ndarray:
    if code.startswith("130"):
        known = [MI_EUR]
    else:
        known = _tariff_table().get(code)
        if not known:
            raise KeyError(f"no tariff for GP service {code}")
    known_years = np.array([k[0] for k in known])
    euros = np.array([k[1] for k in known])
    nearest = np.abs(years[:, None] - known_years[None, :]).argmin(axis=1)
    value = euros[nearest] * (1.0 + GROWTH) ** (years - known_years[nearest])
    return euros_to_cents(value)


#: GP service codes the generator declares for contacts, and their relative frequency per era
#: (before / from the 2022 consult reform) and age group (under 75 / 75 and over).
GP_CONTACT_CODES = ("12000", "12001", "12004", "12010", "12011", "12002", "12003", "13004", "13005", "13008", "11201")
_CONTACT_MIX = {
    # era, elderly: weights aligned with GP_CONTACT_CODES
    (False, False): (0.64, 0.08, 0.12, 0.00, 0.00, 0.02, 0.01, 0.03, 0.02, 0.02, 0.06),
    (False, True): (0.45, 0.12, 0.08, 0.00, 0.00, 0.14, 0.08, 0.04, 0.05, 0.03, 0.01),
    (True, False): (0.00, 0.12, 0.00, 0.16, 0.56, 0.02, 0.01, 0.03, 0.02, 0.02, 0.06),
    (True, True): (0.00, 0.16, 0.00, 0.08, 0.41, 0.14, 0.08, 0.04, 0.05, 0.03, 0.01),
}
_CONSULT_ONLY = {  # a plain consult (care paths: before a referral)
    False: (0.78, 0.12, 0.10, 0, 0, 0, 0, 0, 0, 0, 0),
    True: (0, 0.12, 0, 0.18, 0.70, 0, 0, 0, 0, 0, 0),
}


def _tariff_matrix(years: np.ndarray) -> np.ndarray:
    """cents[code index, year - min(years)] for GP_CONTACT_CODES."""
    span = np.arange(years.min(), years.max() + 1)
    return np.stack([_tariff_by_year(code, span) for code in GP_CONTACT_CODES])


def contact_codes(days: np.ndarray, u: np.ndarray, age: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pick GP contact codes (index into GP_CONTACT_CODES) and their tariffs in cents.

    Without ``age`` a plain consult is picked (the contact before a referral); with ``age`` the full
    contact mix (visits for the elderly, M&I procedures, POH-GGZ modules).
    """
    days = np.asarray(days)
    years = year_of(days)
    after = years >= CONSULT_CODE_SWITCH_YEAR
    idx = np.zeros(days.size, dtype=np.int64)
    groups = (
        ((a, e) for a in (False, True) for e in (False, True))
        if age is not None
        else ((a, None) for a in (False, True))
    )
    for era, elderly in groups:
        sel = after == era
        if elderly is not None:
            sel &= (np.asarray(age) >= 75) == elderly
            weights = np.array(_CONTACT_MIX[(era, elderly)])
        else:
            weights = np.array(_CONSULT_ONLY[era], dtype=float)
        cumulative = np.cumsum(weights / weights.sum())
        idx[sel] = np.minimum(np.searchsorted(cumulative, u[sel], side="right"), len(weights) - 1)
    if days.size == 0:
        return idx, np.zeros(0, dtype=np.int64)
    matrix = _tariff_matrix(years)
    return idx, matrix[idx, years - years.min()]


def expected_contact_cents(year: int, elderly: bool) -> float:
    """Mean tariff of the GP contact mix in a year (to calibrate the number of contacts)."""
    weights = np.array(_CONTACT_MIX[(year >= CONSULT_CODE_SWITCH_YEAR, elderly)])
    prices = np.array([_tariff_by_year(code, np.array([year]))[0] for code in GP_CONTACT_CODES])
    return float((weights * prices).sum() / weights.sum())


#: Pharmacy: euros per defined daily dose (typical Dutch prices) and the dispensing fee.
DISPENSING_FEE_EUR = 7.5
ATC_EUR_PER_DDD = {
    "A10BA02": 0.05,
    "A10BB12": 0.06,
    "A10AE04": 1.6,
    "A02BC01": 0.03,
    "A02BC02": 0.04,
    "R03AC02": 0.15,
    "R03AK06": 1.1,
    "R03BB04": 1.4,
    "C01DA02": 0.4,
    "C03CA01": 0.04,
    "C03AA03": 0.03,
    "C07AB02": 0.05,
    "C07AB07": 0.04,
    "C08CA01": 0.03,
    "C09AA02": 0.03,
    "C09AA05": 0.04,
    "C09CA01": 0.05,
    "C10AA01": 0.03,
    "C10AA05": 0.05,
    "B01AC06": 0.03,
    "B01AA07": 0.08,
    "B01AF01": 2.4,
    "B01AF02": 2.4,
    "N06AB04": 0.05,
    "N06AB06": 0.06,
    "N06AX11": 0.08,
    "N05AH04": 0.3,
    "N05AX08": 0.25,
    "N03AX14": 0.4,
    "N03AF01": 0.15,
    "H03AA01": 0.05,
    "L01XC02": 250.0,
    "L01BC06": 9.0,
    "L02BA01": 0.2,
    "L02BG03": 0.25,
    "L02BG04": 0.25,
    "L04AB01": 32.0,
    "L04AB04": 30.0,
    "L04AB05": 31.0,
    "L04AB06": 33.0,
    "L04AA29": 30.0,
    "L04AX03": 0.6,
    "M01AE01": 0.06,
    "M01AB05": 0.08,
    "N02BE01": 0.1,
    "N02AJ13": 0.3,
    "J01CA04": 0.3,
    "J01CR02": 0.6,
    "J01FA10": 1.0,
    "D07AC01": 0.5,
    "S01AD01": 1.0,
    "S01BC03": 0.8,
    "S01CA01": 0.9,
    "G03AA07": 0.1,
    "B03AA07": 0.05,
    "N05BA01": 0.05,
    "N05CF01": 0.06,
    "H02AB06": 0.1,
}


def pharmacy_cents(atc: np.ndarray, ddd: np.ndarray) -> np.ndarray:
    """Declared amount of a dispensing: DDD x price per DDD + the dispensing fee."""
    per_ddd = np.array([ATC_EUR_PER_DDD[a] for a in atc]) if atc.size else np.zeros(0)
    return euros_to_cents(per_ddd * ddd + DISPENSING_FEE_EUR)


PHYSIO_SESSION_EUR = 31.0
OCCUPATIONAL_SESSION_EUR = 18.0  # per quarter-hour unit, two units typical
MATERNITY_EUR = {  # midwife and maternity-care fees (typical, 2017; a full midwife trajectory is ~1,100)
    "prenatal": 520.0,
    "birth_home": 560.0,
    "birth_outpatient_hospital": 560.0,
    "postnatal": 330.0,
    "maternity_care_hours": 58.0,  # per hour, incl. the intake and partus assistance surcharges
}


def index_cents(euros: float, days: np.ndarray, base_year: int = 2017) -> np.ndarray:
    """A 2017 price in cents on each day, grown 2% a year."""
    return euros_to_cents(euros * (1.0 + GROWTH) ** (year_of(days) - base_year))
