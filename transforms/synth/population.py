"""The insured population of one patient block: who they are, where they live, when they are insured.

Starting population: sex x age class from the Vektis insured counts of the first year, gemeente
conditional on sex and age class (2020 division). Then year by year: deaths (a Gompertz mortality
curve close to the Dutch life table), insurer switches at year boundaries (about 6% a year, as in
the Dutch switching season), and spells abroad (an enrolment gap, after which about half return).
Newborns are added by the birth care path with a spell from their birth day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from transforms.synth.calendar import year_start
from transforms.synth.calibration import AGE_CLASS_MIN, Calibration
from transforms.synth.providers import INSURER_SHARE, ProviderRegistry

OPEN = np.iinfo(np.int32).max  # an open spell end / no death
KEY_SHIFT = 20  # composite key patient << 20 | day  (days < 2**20, i.e. before year 4840)

SWITCH_RATE = 0.06
ABROAD_RATE = 0.004
RETURN_SHARE = 0.5
INFANT_MORTALITY = 0.0035

#: Provider kinds every patient has a "usual" provider of, chosen nearby.
USUAL_PROVIDER_KINDS = (
    "gp",
    "pharmacy",
    "physiotherapy",
    "occupational_therapy",
    "midwife",
    "maternity_care",
    "hospital",
    "zbc",
    "rehabilitation",
)

#: First digit of the postcode per province (PV code), used to give a gemeente a plausible postcode3.
PROVINCE_POSTCODE_DIGIT = {
    "PV20": "9",
    "PV21": "8",
    "PV22": "9",
    "PV23": "7",
    "PV24": "8",
    "PV25": "6",
    "PV26": "3",
    "PV27": "1",
    "PV28": "2",
    "PV29": "4",
    "PV30": "5",
    "PV31": "6",
}


def annual_mortality(age: np.ndarray) -> np.ndarray:
    """Probability of dying within a year at ``age`` (Gompertz fit to the Dutch life table: about
    0.4% at 50, 5% at 80, 17% at 90), capped at 60%."""
    return np.minimum(np.exp(-10.3 + 0.095 * np.asarray(age, dtype=np.float64)), 0.6)


def postcode3_of(gemeente_codes: tuple[str, ...], provinces: tuple[str, ...]) -> np.ndarray:
    """A deterministic, plausible postcode3 per gemeente (synthetic: province digit + two digits)."""
    out = []
    for code, province in zip(gemeente_codes, provinces):
        number = int(code[2:])
        out.append(f"{PROVINCE_POSTCODE_DIGIT.get(province, '5')}{number % 97:02d}")
    return np.array(out, dtype=object)


@dataclass
class Population:
    """Arrays describing the block's patients (index = local patient number) and their spells."""

    block: int
    birth_year: np.ndarray
    sex: np.ndarray  # 0 = M, 1 = V
    gemeente: np.ndarray
    province: np.ndarray
    postcode3: np.ndarray
    death_day: np.ndarray
    usual: dict[str, np.ndarray]
    spell_patient: np.ndarray
    spell_start: np.ndarray
    spell_end: np.ndarray
    spell_insurer: np.ndarray
    mother: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # -1 = not a newborn

    @property
    def size(self) -> int:
        return self.birth_year.size

    def sort_spells(self) -> None:
        order = np.lexsort((self.spell_start, self.spell_patient))
        for name in ("spell_patient", "spell_start", "spell_end", "spell_insurer"):
            setattr(self, name, getattr(self, name)[order])

    def spell_at(self, patient: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Index of the spell covering (patient, day), or -1 when the patient is not insured then.

        Death ends every spell: a day after the death day is never covered.
        """
        keys = (self.spell_patient.astype(np.int64) << KEY_SHIFT) | self.spell_start
        q = (np.asarray(patient, dtype=np.int64) << KEY_SHIFT) | np.asarray(days, dtype=np.int64)
        idx = np.searchsorted(keys, q, side="right") - 1
        ok = idx >= 0
        idx_c = np.where(ok, idx, 0)
        ok &= self.spell_patient[idx_c] == patient
        ok &= self.spell_end[idx_c] >= days
        ok &= days <= self.death_day[np.asarray(patient, dtype=np.int64)]
        return np.where(ok, idx_c, -1)

    def insurer_on(self, patient: np.ndarray, days: np.ndarray) -> np.ndarray:
        spell = self.spell_at(patient, days)
        return np.where(spell >= 0, self.spell_insurer[np.maximum(spell, 0)], -1)

    def age_in(self, patient: np.ndarray, year: np.ndarray) -> np.ndarray:
        return np.asarray(year) - self.birth_year[patient]

    def die(self, patient: np.ndarray, days: np.ndarray) -> None:
        """Record deaths (from a care path) and end the patients' spells on the death day."""
        patient = np.asarray(patient, dtype=np.int64)
        days = np.asarray(days, dtype=np.int64)
        earlier = days < self.death_day[patient]
        self.death_day[patient[earlier]] = days[earlier]
        self._truncate_spells()

    def _truncate_spells(self) -> None:
        death = self.death_day[self.spell_patient]
        keep = self.spell_start <= death
        self.spell_end = np.minimum(self.spell_end, death)
        for name in ("spell_patient", "spell_start", "spell_end", "spell_insurer"):
            setattr(self, name, getattr(self, name)[keep])

    def add_newborns(
        self,
        mother: np.ndarray,
        birth_day: np.ndarray,
        rng: np.random.Generator,
        registry: ProviderRegistry,
        horizon_end: int,
    ) -> np.ndarray:
        """Append newborns of ``mother`` born on ``birth_day``; they are insured from birth with the
        mother's insurer. Returns their local patient numbers."""
        n = mother.size
        first = self.size
        new = np.arange(first, first + n)
        birth_year = birth_day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
        self.birth_year = np.concatenate([self.birth_year, birth_year])
        self.sex = np.concatenate([self.sex, rng.integers(0, 2, n)])
        for name in ("gemeente", "province", "postcode3"):
            setattr(self, name, np.concatenate([getattr(self, name), getattr(self, name)[mother]]))
        infant_death = np.where(rng.random(n) < INFANT_MORTALITY, birth_day + rng.integers(0, 365, n), OPEN)
        self.death_day = np.concatenate([self.death_day, infant_death])
        for kind in self.usual:
            self.usual[kind] = np.concatenate([self.usual[kind], self.usual[kind][mother]])
        self.mother = np.concatenate([self.mother, mother])
        insurer = self.insurer_on(mother, birth_day)
        insurer = np.where(insurer >= 0, insurer, 0)
        self.spell_patient = np.concatenate([self.spell_patient, new])
        self.spell_start = np.concatenate([self.spell_start, birth_day])
        self.spell_end = np.concatenate([self.spell_end, np.full(n, OPEN)])
        self.spell_insurer = np.concatenate([self.spell_insurer, insurer])
        self._truncate_spells()
        self.sort_spells()
        return new


def draw_population(
    block: int,
    n: int,
    first_year: int,
    last_year: int,
    calibration: Calibration,
    registry: ProviderRegistry,
    rng: np.random.Generator,
) -> Population:
    """Draw ``n`` patients and simulate their enrolment from 1 January ``first_year`` to the end of
    ``last_year``."""
    cell = rng.choice(calibration.age_sex_share.size, size=n, p=calibration.age_sex_share.ravel())
    sex, age_class = np.divmod(cell, 19)
    age = AGE_CLASS_MIN[age_class] + rng.integers(0, 5, n)
    old = age_class == 18
    age[old] = 90 + np.minimum(rng.geometric(0.25, old.sum()) - 1, 15)
    birth_year = first_year - age

    gemeente = np.empty(n, dtype=np.int64)
    for s in (0, 1):
        for a in range(19):
            members = np.flatnonzero((sex == s) & (age_class == a))
            if members.size:
                gemeente[members] = rng.choice(
                    calibration.gemeente_codes.__len__(), size=members.size, p=calibration.gemeente_share[s, a]
                )
    provinces = np.array(calibration.province_of_gemeente, dtype=object)
    province = provinces[gemeente]
    postcode3 = postcode3_of(calibration.gemeente_codes, calibration.province_of_gemeente)[gemeente]
    usual = {kind: registry.nearby(kind, gemeente, province, rng.random(n)) for kind in USUAL_PROVIDER_KINDS}

    # enrolment, year by year
    spells_p, spells_s, spells_e, spells_i = [], [], [], []
    current_start = np.full(n, year_start(first_year), dtype=np.int64)
    current_insurer = rng.choice(INSURER_SHARE.size, size=n, p=INSURER_SHARE)
    insured = np.ones(n, dtype=bool)
    return_day = np.full(n, OPEN, dtype=np.int64)
    death_day = np.full(n, OPEN, dtype=np.int64)
    for year in range(first_year, last_year + 1):
        y0, y1 = int(year_start(year)), int(year_start(year + 1)) - 1
        alive = death_day == OPEN
        # return from abroad
        back = alive & ~insured & (return_day <= y1)
        current_start[back] = return_day[back]
        insured[back] = True
        return_day[back] = OPEN
        # deaths
        dies = alive & (rng.random(n) < annual_mortality(year - birth_year))
        death_day[dies] = rng.integers(y0, y1 + 1, dies.sum())
        # leaving for abroad (an enrolment gap)
        leaves = alive & ~dies & insured & (rng.random(n) < ABROAD_RATE)
        leave_day = rng.integers(y0, y1 + 1, n)
        leaves &= leave_day > current_start
        _close(spells_p, spells_s, spells_e, spells_i, leaves, current_start, leave_day, current_insurer)
        insured[leaves] = False
        returns = leaves & (rng.random(n) < RETURN_SHARE)
        return_day[returns] = leave_day[returns] + rng.integers(30, 400, returns.sum())
        # switching insurer at the year boundary
        if year < last_year:
            switch = insured & (death_day == OPEN) & (rng.random(n) < SWITCH_RATE)
            _close(spells_p, spells_s, spells_e, spells_i, switch, current_start, np.full(n, y1), current_insurer)
            new_insurer = (current_insurer + rng.integers(1, INSURER_SHARE.size, n)) % INSURER_SHARE.size
            current_insurer = np.where(switch, new_insurer, current_insurer)
            current_start = np.where(switch, y1 + 1, current_start)
    # spells still running (death truncates them below)
    _close(spells_p, spells_s, spells_e, spells_i, insured, current_start, np.full(n, OPEN), current_insurer)

    pop = Population(
        block=block,
        birth_year=birth_year.astype(np.int64),
        sex=sex.astype(np.int64),
        gemeente=gemeente,
        province=province,
        postcode3=postcode3,
        death_day=death_day,
        usual=usual,
        spell_patient=np.concatenate(spells_p),
        spell_start=np.concatenate(spells_s),
        spell_end=np.concatenate(spells_e),
        spell_insurer=np.concatenate(spells_i),
        mother=np.full(n, -1, dtype=np.int64),
    )
    pop._truncate_spells()
    pop.sort_spells()
    return pop


def _close(
    p: list, s: list, e: list, i: list, mask: np.ndarray, start: np.ndarray, end: np.ndarray, insurer: np.ndarray
) -> None:
    idx = np.flatnonzero(mask)
    p.append(idx)
    s.append(start[idx].copy())
    e.append(end[idx].copy())
    i.append(insurer[idx].copy())
