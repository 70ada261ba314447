"""Calibration targets from the real Vektis open data: who lives where, and what care costs by age and sex.

The generator draws its starting population from the Vektis insured counts (sex x age class x
gemeente) and scales its background care so that cost per insured-year per category matches the
Vektis figures for that year, sex and age class. Years outside 2011-2023 use the nearest year.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from transforms.vektis import calibration_cells, gemeente_population

#: Lower bounds of the 19 Vektis age classes (0-4, 5-9, ..., 85-89, 90+).
AGE_CLASS_MIN = np.arange(0, 95, 5)
AGE_CLASSES = [f"{a}-{a + 4}" for a in AGE_CLASS_MIN[:-1]] + ["90+"]
SEXES = ("M", "V")
#: Cost categories the generator calibrates, each mapped to the delivery table that carries it.
CATEGORIES = ("msz", "pharmacy", "gp", "paramedical", "maternity")
CATEGORY_TABLE = {
    "msz": "dbc",
    "pharmacy": "pharmacy",
    "gp": "gp",
    "paramedical": "paramedical",
    "maternity": "maternity",
}
VEKTIS_YEARS = range(2011, 2024)
#: The CBS division the bundled gemeente codes follow.
GEOGRAPHY_YEAR = 2020


def age_class_index(age: np.ndarray) -> np.ndarray:
    """Index 0..18 of the Vektis age class of each age (negative ages count as 0-4)."""
    return np.clip(np.asarray(age) // 5, 0, 18).astype(np.int64)


def nearest_vektis_year(year: int) -> int:
    return min(max(year, VEKTIS_YEARS.start), VEKTIS_YEARS.stop - 1)


@dataclass(frozen=True)
class Calibration:
    """Targets for years ``first_year..last_year``.

    ``per_capita[y, s, a, c]`` is euros per insured-year for year index y, sex s (0 = M, 1 = V), age
    class a and category c (order of ``CATEGORIES``). ``age_sex_share[s, a]`` is the national
    population mix of the first year; ``gemeente_codes`` and ``gemeente_share[s, a, g]`` place a
    person of that sex and age class in a gemeente (2020 division, so every code is a valid CBS code).
    """

    first_year: int
    per_capita: np.ndarray
    age_sex_share: np.ndarray
    gemeente_codes: tuple[str, ...]
    gemeente_share: np.ndarray
    province_of_gemeente: tuple[str, ...]

    def target(self, year: np.ndarray, sex: np.ndarray, age_class: np.ndarray, category: str) -> np.ndarray:
        """Per-capita target (euros per insured-year) for arrays of year, sex index, age class."""
        c = CATEGORIES.index(category)
        yi = np.clip(np.asarray(year) - self.first_year, 0, self.per_capita.shape[0] - 1)
        return self.per_capita[yi, sex, age_class, c]


def _cells_array(year: int) -> tuple[np.ndarray, np.ndarray]:
    cells = calibration_cells(nearest_vektis_year(year))
    per_capita = np.zeros((2, 19, len(CATEGORIES)))
    insured = np.zeros((2, 19))
    for row in cells.iter_rows(named=True):
        if row["sex"] not in SEXES or row["age_min"] is None:
            continue
        s = SEXES.index(row["sex"])
        a = int(row["age_min"]) // 5
        insured[s, a] = row["insured"]
        for c, cat in enumerate(CATEGORIES):
            per_capita[s, a, c] = row[f"per_capita_{cat}"]
    return per_capita, insured


@lru_cache(maxsize=8)
def load_calibration(first_year: int, last_year: int) -> Calibration:
    """Read the Vektis targets for the delivery's years (cached: the same for every block)."""
    per_capita = np.stack([_cells_array(y)[0] for y in range(first_year, last_year + 1)])
    _, insured = _cells_array(first_year)
    age_sex_share = insured / insured.sum()

    geo = gemeente_population(nearest_vektis_year(GEOGRAPHY_YEAR)).filter(
        pl.col("gemeente_code").is_not_null() & pl.col("sex").is_in(SEXES) & pl.col("age_min").is_not_null()
    )
    codes = tuple(sorted(geo["gemeente_code"].unique().to_list()))
    index = {code: i for i, code in enumerate(codes)}
    share = np.zeros((2, 19, len(codes)))
    for row in geo.iter_rows(named=True):
        share[SEXES.index(row["sex"]), int(row["age_min"]) // 5, index[row["gemeente_code"]]] += row["insured"]
    share /= share.sum(axis=2, keepdims=True)

    import reference

    provinces = dict(reference.table("cbs/gemeenten_2020.parquet").select("gemeente_code", "province_code").iter_rows())
    return Calibration(
        first_year=first_year,
        per_capita=per_capita,
        age_sex_share=age_sex_share,
        gemeente_codes=codes,
        gemeente_share=share,
        province_of_gemeente=tuple(provinces[c] for c in codes),
    )
