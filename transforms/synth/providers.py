"""Synthetic providers placed in real gemeenten, the bundle contracts between them and insurers,
and the rule by which patients pick nearby providers.

Counts follow the Dutch landscape (about 70 hospitals, a few dozen independent treatment centres
(ZBCs), a GP practice per ~3,500 insured, a pharmacy per ~8,000, ...), with at least one of every
kind in every province so that "nearby" always exists. AGB codes start with the real zorgsoort
prefix of their kind (``reference/agb``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from transforms.synth.calendar import day
from transforms.synth.calibration import Calibration
from transforms.synth.config import SynthConfig

#: provider type -> (AGB zorgsoort prefix, fixed count or None, insured per provider when scaled)
PROVIDER_KINDS: dict[str, tuple[str, int | None, int | None]] = {
    "hospital": ("06", 70, None),
    "zbc": ("22", 40, None),
    "rehabilitation": ("23", 16, None),
    "gp": ("01", None, 3_500),
    "pharmacy": ("02", None, 8_000),
    "physiotherapy": ("04", None, 2_500),
    "occupational_therapy": ("88", None, 20_000),
    "midwife": ("08", None, 30_000),
    "maternity_care": ("33", None, 150_000),
    "birth_care_organisation": ("53", 12, None),
}
PROVINCE_MINIMUM = 1  # at least one provider of every kind per province

#: Insurers (UZOVI codes are synthetic, four digits) with market shares close to the Dutch groups'.
INSURERS = ("3311", "7029", "3343", "3358", "0203", "3314", "8971", "0101", "9664", "3353")
INSURER_SHARE = np.array([0.30, 0.21, 0.24, 0.11, 0.05, 0.03, 0.02, 0.02, 0.01, 0.01])
INSURER_SHARE = INSURER_SHARE / INSURER_SHARE.sum()


@dataclass(frozen=True)
class ContractWave:
    """Providers of one bundle that start a contract in the same year."""

    year: int
    count: int


#: Staggered adoption per bundle. The first wave is the start year in ``bundles.md``; hip/knee get
#: later joiners so that staggered-adoption estimators have more than one cohort to work with.
CONTRACT_PLAN: dict[str, dict] = {
    "hip_oa": {"kinds": ("hospital", "zbc"), "waves": (ContractWave(2018, 14), ContractWave(2019, 4), ContractWave(2020, 2)), "model": "shared_savings_losses", "group": "joint"},
    "knee_oa": {"kinds": ("hospital", "zbc"), "waves": (), "model": "shared_savings_losses", "group": "joint"},
    "cataract": {"kinds": ("hospital", "zbc"), "waves": (ContractWave(2018, 8),), "model": "shared_savings_losses"},
    "breast_cancer_surgery": {"kinds": ("hospital",), "waves": (ContractWave(2019, 9),), "model": "shared_savings_losses"},
    "ra_drugs": {"kinds": ("hospital",), "waves": (ContractWave(2019, 7),), "model": "shared_savings"},
    "heart_failure": {"kinds": ("hospital",), "waves": (ContractWave(2021, 1),), "model": "fixed_sum"},
    "acute_stroke": {"kinds": ("hospital",), "waves": (ContractWave(2019, 1),), "model": "shared_savings_losses"},
    "birth_care": {"kinds": ("birth_care_organisation",), "waves": (ContractWave(2017, 4),), "model": "bundled_payment"},
    "hand_wrist": {"kinds": ("zbc",), "waves": (ContractWave(2024, 1),), "model": "bundled_payment"},
}

CONTRACT_PARAMETERS: dict[str, dict] = {
    "hip_oa": {"baseline_years": [2015, 2016, 2017], "baseline": "own", "trend": 1.02, "discount": 0.02,
               "shared_savings_rate": 0.5, "shared_losses_rate": 0.5, "stop_loss_eur": 25000, "winsorise_pct": 99},
    "knee_oa": {"baseline_years": [2015, 2016, 2017], "baseline": "own", "trend": 1.02, "discount": 0.02,
                "shared_savings_rate": 0.5, "shared_losses_rate": 0.5, "stop_loss_eur": 25000, "winsorise_pct": 99},
    "cataract": {"baseline_years": [2016, 2017], "baseline": "regional", "trend": 1.02, "shared_savings_rate": 0.5,
                 "shared_losses_rate": 0.5},
    "breast_cancer_surgery": {"baseline_years": [2017, 2018], "baseline": "national", "shared_savings_rate": 0.5,
                              "shared_losses_rate": 0.5, "minimum_savings_pct": 2.0},
    "ra_drugs": {"baseline_years": [2017, 2018], "baseline": "own", "shared_savings_rate": 0.5,
                 "quality_gate": {"outcome": "das28_remission", "threshold": 0.4}},
    "heart_failure": {"fixed_sum_eur_per_patient": 3200},
    "acute_stroke": {"baseline_years": [2017, 2018], "baseline": "regional_capped_p95", "shared_savings_rate": 0.5,
                     "shared_losses_rate": 0.5, "losses_from_contract_year": 2,
                     "distribution_key": {"hospital": 0.4, "rehabilitation": 0.6}},
    "birth_care": {"phases": ["prenatal", "natal", "postnatal", "maternity_care"], "prospective": True},
    "hand_wrist": {"prospective": True, "window_days": 365},
}


@dataclass(frozen=True)
class ProviderRegistry:
    """All providers of the delivery, and per bundle the day each provider's contract starts."""

    agb: np.ndarray  # str, one per provider
    kind: np.ndarray  # str
    gemeente: np.ndarray  # index into Calibration.gemeente_codes
    province: np.ndarray  # province code (str)
    price_factor: np.ndarray  # negotiated price level relative to the national mean (float)
    contract_start: dict[str, np.ndarray]  # bundle -> day the provider is treated from (int, large = never)
    contracts: pl.DataFrame
    gemeente_codes: tuple[str, ...]

    NEVER = np.iinfo(np.int32).max

    @property
    def agb_series(self) -> pl.Series:
        return pl.Series("provider_agb", self.agb.tolist(), dtype=pl.String)

    def of_kind(self, kind: str) -> np.ndarray:
        return np.flatnonzero(self.kind == kind)

    def frame(self) -> pl.DataFrame:
        """The ``providers`` table of the delivery."""
        return pl.DataFrame(
            {
                "provider_agb": self.agb.tolist(),
                "provider_type": self.kind.tolist(),
                "gemeente_code": [self.gemeente_codes[g] for g in self.gemeente],
            }
        )

    def nearby(self, kind: str, patient_gemeente: np.ndarray, patient_province: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Pick, for each patient, a provider of ``kind`` in the same gemeente if there is one, else in
        the same province (``u`` in [0, 1) makes the pick; deterministic given ``u``)."""
        candidates = self.of_kind(kind)
        chosen = np.full(patient_gemeente.shape, -1, dtype=np.int64)
        for level, patient_key, provider_key in (
            ("gemeente", patient_gemeente, self.gemeente[candidates]),
            ("province", patient_province, self.province[candidates]),
        ):
            todo = chosen < 0
            if not todo.any():
                break
            order = np.argsort(provider_key, kind="stable")
            keys_sorted = provider_key[order]
            lo = np.searchsorted(keys_sorted, patient_key[todo], side="left")
            hi = np.searchsorted(keys_sorted, patient_key[todo], side="right")
            n = hi - lo
            has = n > 0
            pick = lo + np.floor(u[todo] * np.maximum(n, 1)).astype(np.int64)
            idx = np.flatnonzero(todo)[has]
            chosen[idx] = candidates[order[pick[has]]]
        todo = chosen < 0
        if todo.any():  # cannot happen with PROVINCE_MINIMUM, kept for safety
            chosen[todo] = candidates[np.floor(u[todo] * candidates.size).astype(np.int64)]
        return chosen


def _count(kind: str, patients: int, n_provinces: int) -> int:
    _, fixed, per = PROVIDER_KINDS[kind]
    n = fixed if fixed is not None else int(round(patients / per))
    return max(n, n_provinces * PROVINCE_MINIMUM)


def build_registry(config: SynthConfig, calibration: Calibration) -> ProviderRegistry:
    """Place providers in gemeenten (by population), give them AGB codes, price levels and contracts."""
    rng = np.random.default_rng([config.seed, 0xA6B])
    gem_pop = (calibration.gemeente_share * calibration.age_sex_share[:, :, None]).sum(axis=(0, 1))
    gem_pop = gem_pop / gem_pop.sum()
    provinces = np.array(calibration.province_of_gemeente)
    province_codes = np.unique(provinces)

    agb, kinds, gemeenten, factors = [], [], [], []
    for kind, (prefix, _, _) in PROVIDER_KINDS.items():
        n = _count(kind, config.patients, province_codes.size)
        # one per province first (in its most populous gemeente), then the rest by population
        first = [int(np.flatnonzero(provinces == p)[np.argmax(gem_pop[provinces == p])]) for p in province_codes]
        rest = rng.choice(gem_pop.size, size=n - len(first), p=gem_pop).tolist() if n > len(first) else []
        placed = (first + rest)[:n]
        numbers = rng.choice(900_000, size=n, replace=False) + 100_000
        agb += [f"{prefix}{k:06d}" for k in numbers]
        kinds += [kind] * n
        gemeenten += placed
        spread = 0.08 if kind in ("hospital", "zbc", "rehabilitation") else 0.03
        level = 0.88 if kind == "zbc" else 1.0
        factors += (level * rng.lognormal(0.0, spread, size=n)).tolist()

    agb_a = np.array(agb, dtype=object)
    kind_a = np.array(kinds, dtype=object)
    gem_a = np.array(gemeenten, dtype=np.int64)
    registry_wo_contracts = dict(
        agb=agb_a, kind=kind_a, gemeente=gem_a, province=provinces[gem_a],
        price_factor=np.array(factors), gemeente_codes=calibration.gemeente_codes,
    )
    contract_start, contracts = _plan_contracts(config, rng, registry_wo_contracts)
    return ProviderRegistry(contract_start=contract_start, contracts=contracts, **registry_wo_contracts)


def _contract_groups(bundle: str, members: np.ndarray, reg: dict) -> list[list[int]]:
    """The providers that sign one contract together.

    Stroke: the hospital with three rehabilitation centres of its province (others if the province
    has fewer). Birth care: each organisation with the midwife practices of its province. Otherwise
    all providers of a wave sign one contract.
    """
    if bundle == "acute_stroke":
        groups = []
        for hospital in members:
            same = np.flatnonzero((reg["kind"] == "rehabilitation") & (reg["province"] == reg["province"][hospital]))
            others = np.flatnonzero((reg["kind"] == "rehabilitation") & (reg["province"] != reg["province"][hospital]))
            groups.append([int(hospital), *np.concatenate([same, others])[:3].tolist()])
        return groups
    if bundle == "birth_care":
        return [
            [int(org), *np.flatnonzero((reg["kind"] == "midwife") & (reg["province"] == reg["province"][org])).tolist()]
            for org in members
        ]
    return [[int(m) for m in members]]


def _plan_contracts(config: SynthConfig, rng: np.random.Generator, reg: dict) -> tuple[dict[str, np.ndarray], pl.DataFrame]:
    """Choose the treated providers per bundle and write the ``contracts`` table.

    Only contracts that start on or before ``data_as_of`` are known to the delivery.
    """
    n = reg["agb"].size
    start = {b: np.full(n, ProviderRegistry.NEVER, dtype=np.int64) for b in CONTRACT_PLAN}
    rows: list[dict] = []
    as_of = config.as_of
    for bundle, plan in CONTRACT_PLAN.items():
        if plan.get("group") == "joint" and bundle == "knee_oa":
            continue  # hip and knee share one contract per provider (see hip_oa)
        pool = np.flatnonzero(np.isin(reg["kind"], plan["kinds"]))
        total = sum(w.count for w in plan["waves"])
        chosen = rng.choice(pool, size=min(total, pool.size), replace=False)
        offset = 0
        for wave in plan["waves"]:
            members = chosen[offset : offset + wave.count]
            offset += wave.count
            start_date = date(wave.year, 1, 1)
            if start_date > as_of:
                continue
            bundles = ("hip_oa", "knee_oa") if plan.get("group") == "joint" else (bundle,)
            end_date = date(2022, 12, 31) if bundle == "birth_care" else None
            for group_no, group in enumerate(_contract_groups(bundle, members, reg)):
                contract_id = f"C-{bundle}-{wave.year}" + (f"-{group_no + 1:02d}" if bundle == "birth_care" else "")
                for member in group:
                    for b in bundles:
                        start[b][member] = min(start[b][member], day(start_date))
                        rows.append(
                            {
                                "contract_id": contract_id,
                                "bundle_id": b,
                                "provider_agb": reg["agb"][member],
                                "insurer_uzovi": INSURERS[0] if bundle == "hand_wrist" else None,
                                "start_date": start_date,
                                "end_date": end_date,
                                "model": plan["model"],
                                "parameters": json.dumps(CONTRACT_PARAMETERS[b], sort_keys=True),
                            }
                        )
    contracts = pl.DataFrame(
        rows,
        schema={
            "contract_id": pl.String, "bundle_id": pl.String, "provider_agb": pl.String, "insurer_uzovi": pl.String,
            "start_date": pl.Date, "end_date": pl.Date, "model": pl.String, "parameters": pl.String,
        },
    )
    return start, contracts
