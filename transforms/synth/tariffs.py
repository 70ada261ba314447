"""First-line prices: NZa GP maximum tariffs from the bundled table, and typical pharmacy and
paramedical prices. A tariff for a year not in the table is the nearest known year's, grown or
shrunk by 2% a year."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

import reference
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
    for code, year, eur in reference.table("gp/gp_tariffs.parquet").select("service_cd", "year", "max_tariff_eur").iter_rows():
        if eur is not None:
            table.setdefault(code, []).append((int(year), float(eur)))
    for code, (year, eur) in {**FALLBACK_TARIFF, **CHAIN_CARE_EUR}.items():
        table.setdefault(code, []).append((year, eur))
    return table


def gp_tariff_cents(code: str, days: np.ndarray) -> np.ndarray:
    """Tariff in cents of GP service ``code`` on each day."""
    if code.startswith("130"):
        known = [MI_EUR]
    else:
        known = _tariff_table().get(code)
        if not known:
            raise KeyError(f"no tariff for GP service {code}")
    years = np.array([k[0] for k in known])
    euros = np.array([k[1] for k in known])
    y = year_of(days)
    nearest = np.abs(y[:, None] - years[None, :]).argmin(axis=1)
    value = euros[nearest] * (1.0 + GROWTH) ** (y - years[nearest])
    return np.round(value * 100).astype(np.int64)


def consult_code(days: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The consult code a GP declares for a regular consult (reform of 2022)."""
    y = year_of(days)
    before = np.where(u < 0.78, "12000", np.where(u < 0.90, "12001", "12004"))
    after = np.where(u < 0.18, "12010", np.where(u < 0.86, "12011", "12001"))
    return np.where(y < CONSULT_CODE_SWITCH_YEAR, before, after).astype(object)


def gp_tariffs_for_codes(codes: np.ndarray, days: np.ndarray) -> np.ndarray:
    out = np.zeros(codes.size, dtype=np.int64)
    for code in np.unique(codes):
        sel = codes == code
        out[sel] = gp_tariff_cents(str(code), days[sel])
    return out


#: Pharmacy: euros per defined daily dose (typical Dutch prices) and the dispensing fee.
DISPENSING_FEE_EUR = 6.5
ATC_EUR_PER_DDD = {
    "A10BA02": 0.05, "A10BB12": 0.06, "A10AE04": 1.6, "A02BC01": 0.03, "A02BC02": 0.04,
    "R03AC02": 0.15, "R03AK06": 1.1, "R03BB04": 1.4, "C01DA02": 0.4, "C03CA01": 0.04, "C03AA03": 0.03,
    "C07AB02": 0.05, "C07AB07": 0.04, "C08CA01": 0.03, "C09AA02": 0.03, "C09AA05": 0.04, "C09CA01": 0.05,
    "C10AA01": 0.03, "C10AA05": 0.05, "B01AC06": 0.03, "B01AA07": 0.08, "B01AF01": 2.4, "B01AF02": 2.4,
    "N06AB04": 0.05, "N06AB06": 0.06, "N06AX11": 0.08, "N05AH04": 0.3, "N05AX08": 0.25, "N03AX14": 0.4,
    "N03AF01": 0.15, "H03AA01": 0.05, "L01XC02": 250.0, "L01BC06": 9.0, "L02BA01": 0.2, "L02BG03": 0.25,
    "L02BG04": 0.25, "L04AB01": 32.0, "L04AB04": 30.0, "L04AB05": 31.0, "L04AB06": 33.0, "L04AA29": 30.0,
    "L04AX03": 0.6, "M01AE01": 0.06, "M01AB05": 0.08, "N02BE01": 0.1, "N02AJ13": 0.3, "J01CA04": 0.3,
    "J01CR02": 0.6, "J01FA10": 1.0, "D07AC01": 0.5, "S01AD01": 1.0, "S01BC03": 0.8, "S01CA01": 0.9,
    "G03AA07": 0.1, "B03AA07": 0.05, "N05BA01": 0.05, "N05CF01": 0.06, "H02AB06": 0.1,
}


def pharmacy_cents(atc: np.ndarray, ddd: np.ndarray) -> np.ndarray:
    """Declared amount of a dispensing: DDD x price per DDD + the dispensing fee."""
    per_ddd = np.array([ATC_EUR_PER_DDD[a] for a in atc]) if atc.size else np.zeros(0)
    return np.round((per_ddd * ddd + DISPENSING_FEE_EUR) * 100).astype(np.int64)


PHYSIO_SESSION_EUR = 31.0
OCCUPATIONAL_SESSION_EUR = 18.0  # per quarter-hour unit, two units typical
MATERNITY_EUR = {  # midwife and maternity-care fees (typical, 2017)
    "prenatal": 370.0, "birth_home": 480.0, "birth_outpatient_hospital": 480.0, "postnatal": 250.0,
    "maternity_care_hours": 47.0,  # per hour
}


def index_cents(euros: float, days: np.ndarray, base_year: int = 2017) -> np.ndarray:
    """A 2017 price in cents on each day, grown 2% a year."""
    return np.round(euros * (1.0 + GROWTH) ** (year_of(days) - base_year) * 100).astype(np.int64)
