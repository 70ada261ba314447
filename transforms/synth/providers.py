"""Synthetic providers placed in real gemeenten, the bundle contracts between them and insurers,
and the rule by which patients pick nearby providers.

Counts follow the Dutch landscape (about 70 hospitals, a few dozen independent treatment centres
(ZBCs), a GP practice per ~3,500 insured, a pharmacy per ~8,000, ...), with at least one of every
kind in every province so that "nearby" always exists. AGB codes start with the real zorgsoort
prefix of their kind (``reference/agb``).

The specialist providers (hospitals, ZBCs, rehabilitation centres) have national counts whatever the
size of the delivery, so a small delivery spreads its patients thin over them (a 200,000-patient
delivery gives a hospital 2-6 hip operations a year). ``SynthConfig.specialist_scale`` multiplies
those counts (rounded), so that a delivery of a few hundred thousand insured is like a region with
realistic volumes per provider. Whatever the scale there is at least one of each per province, and
the costlier province (``SynthConfig.regional.province``, where the regional-baseline contracts are
signed) gets at least ``1 + REGIONAL_PEERS`` hospitals and ``STROKE_REHAB_CENTRES`` rehabilitation
centres. With fewer providers the contract waves shrink with them (:func:`wave_counts`).
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
#: The kinds whose count ``SynthConfig.specialist_scale`` multiplies.
SPECIALIST_KINDS = ("hospital", "zbc", "rehabilitation")
#: Providers of a contract's pool that never sign it, whatever the scale: for the regional-baseline
#: bundles in the contract province (the regional peers), elsewhere in the whole pool (the untreated
#: comparison providers).
REGIONAL_PEERS = 2

#: Insurers (UZOVI codes are synthetic, four digits) with market shares close to the Dutch groups'.
INSURERS = ("3311", "7029", "3343", "3358", "0203", "3314", "8971", "0101", "9664", "3353")
INSURER_SHARE = np.array([0.30, 0.21, 0.24, 0.11, 0.05, 0.03, 0.02, 0.02, 0.01, 0.01])
INSURER_SHARE = INSURER_SHARE / INSURER_SHARE.sum()


@dataclass(frozen=True)
class ContractWave:
    """Providers of one bundle that start a contract in the same year."""

    year: int
    count: int


#: Staggered adoption per bundle. The first wave is the start year in ``docs/bundles.md``; hip/knee get
#: later joiners so that staggered-adoption estimators have more than one cohort to work with.
CONTRACT_PLAN: dict[str, dict] = {
    "hip_oa": {
        "kinds": ("hospital", "zbc"),
        "waves": (ContractWave(2018, 14), ContractWave(2019, 4), ContractWave(2020, 2)),
        "model": "shared_savings_losses",
        "group": "joint",
    },
    "knee_oa": {"kinds": ("hospital", "zbc"), "waves": (), "model": "shared_savings_losses", "group": "joint"},
    "cataract": {"kinds": ("hospital", "zbc"), "waves": (ContractWave(2018, 8),), "model": "shared_savings_losses"},
    "breast_cancer_surgery": {
        "kinds": ("hospital",),
        "waves": (ContractWave(2019, 9),),
        "model": "shared_savings_losses",
    },
    "ra_drugs": {"kinds": ("hospital",), "waves": (ContractWave(2019, 7),), "model": "shared_savings"},
    "heart_failure": {"kinds": ("hospital",), "waves": (ContractWave(2021, 1),), "model": "fixed_sum"},
    "acute_stroke": {"kinds": ("hospital",), "waves": (ContractWave(2019, 1),), "model": "shared_savings_losses"},
    "birth_care": {
        "kinds": ("birth_care_organisation",),
        "waves": (ContractWave(2017, 4),),
        "model": "bundled_payment",
    },
    "hand_wrist": {"kinds": ("zbc",), "waves": (ContractWave(2024, 1),), "model": "bundled_payment"},
}

#: Contract parameters per bundle, in the names and units of ``docs/panels-spec.md`` section 3. Together the
#: contracts use every parameter of its table at least once:
#: - hip_oa: own baseline, trend, discount, winsorising at P99, stop-loss, shared savings and losses;
#: - knee_oa (same contract as hip): the same with ``risk_adjust`` (its target depends on the
#:   case-mix model, so the truth has no settlement for it);
#: - cataract: regional baseline on standardised cost, the ci95 corridor;
#: - breast_cancer_surgery: national baseline, a 2% minimum-savings corridor and a quality gate on
#:   re-operation within 90 days (``reoperation_90d``, at most 15%: Dutch re-excision rates after
#:   breast-conserving surgery are about 10-15%). The source documents put the quality gate on the
#:   RA contract, but ``ra_drugs.yml`` declares no Boolean outcome (only counts), so a rate cannot be
#:   gated there;
#: - ra_drugs: own baseline, shared savings only;
#: - heart_failure: ``fixed_sum_eur_per_patient``;
#: - acute_stroke: regional baseline with the costliest 5% capped at the regional P95, losses from
#:   contract year 2, a distribution key (filled in per contract with the AGB codes: 40% to the
#:   hospital, 20% to each rehabilitation centre);
#: - birth_care: ``payment_eur_per_phase`` (model bundled_payment); hand_wrist:
#:   ``payment_eur_per_episode`` (model bundled_payment). These two names are the project's choice.
CONTRACT_PARAMETERS: dict[str, dict] = {
    "hip_oa": {
        "baseline_years": [2015, 2016, 2017],
        "baseline": "own",
        "trend": 1.02,
        "discount": 0.02,
        "shared_savings_rate": 0.5,
        "shared_losses_rate": 0.5,
        "stop_loss_eur": 25000,
        "winsorise_pct": 99,
    },
    "knee_oa": {
        "baseline_years": [2015, 2016, 2017],
        "baseline": "own",
        "trend": 1.02,
        "discount": 0.02,
        "shared_savings_rate": 0.5,
        "shared_losses_rate": 0.5,
        "stop_loss_eur": 25000,
        "winsorise_pct": 99,
        "risk_adjust": True,
    },
    "cataract": {
        "baseline_years": [2016, 2017],
        "baseline": "regional",
        "trend": 1.02,
        "cost_basis": "standardised",
        "corridor": "ci95",
        "shared_savings_rate": 0.5,
        "shared_losses_rate": 0.5,
    },
    "breast_cancer_surgery": {
        "baseline_years": [2017, 2018],
        "baseline": "national",
        "shared_savings_rate": 0.5,
        "shared_losses_rate": 0.5,
        "minimum_savings_pct": 2.0,
        "quality_gate": {"outcome": "reoperation_90d", "threshold": 0.15},
    },
    "ra_drugs": {"baseline_years": [2017, 2018], "baseline": "own", "shared_savings_rate": 0.5},
    "heart_failure": {"fixed_sum_eur_per_patient": 2000},
    "acute_stroke": {
        "baseline_years": [2017, 2018],
        "baseline": "regional_capped_p95",
        "shared_savings_rate": 0.5,
        "shared_losses_rate": 0.5,
        "losses_from_contract_year": 2,
    },
    "birth_care": {"payment_eur_per_phase": {"prenatal": 700, "natal": 650, "postnatal": 350, "maternity_care": 2300}},
    "hand_wrist": {"payment_eur_per_episode": 1500},
}
#: acute_stroke: the distribution key's shares per provider type, turned into AGB codes per contract.
STROKE_DISTRIBUTION = {"hospital": 0.4, "rehabilitation": 0.6}
#: Bundles whose contracts use a regional baseline: their contracts are placed in one province
#: (``SynthConfig.regional.province``), so that "the same province" is one province.
REGIONAL_BASELINE_BUNDLES = ("cataract", "acute_stroke")
#: The DBC products of a bundle's care path, for a bundle-specific price level (the planted price
#: provider of ``SynthConfig.providers``).
BUNDLE_PRODUCTS = {
    "hip_oa": ("hip_oa_outpatient", "hip_oa_prosthesis", "hip_oa_followup", "hip_complication", "hip_oa_clinical_stay"),
    "knee_oa": (
        "knee_oa_outpatient",
        "knee_oa_prosthesis",
        "knee_oa_followup",
        "knee_complication",
        "knee_oa_clinical_stay",
    ),
}
#: Negotiated price levels of hospitals, ZBCs and rehabilitation centres: ``level * exp(e)`` with
#: ``e ~ N(0, PRICE_SPREAD)`` truncated at +-2 standard deviations, so no provider is more than about
#: 5% from its kind's level and none is a cost outlier by its prices alone (a wider, untruncated
#: spread, e.g. lognormal with sigma 0.08, would give levels from about 0.8 to 1.25).
PRICE_SPREAD = 0.025
PRICE_LEVEL = {"zbc": 0.95}
#: Rehabilitation centres in the regional-contract province: the stroke contract's hospital signs
#: with three of them.
STROKE_REHAB_CENTRES = 3
#: Providers of a kind that the regional-contract province gets at least (moved there from elsewhere
#: when the placement by population left it fewer): the stroke contract's hospital and
#: ``REGIONAL_PEERS`` untreated hospitals, and the stroke contract's rehabilitation centres.
REGIONAL_MINIMUM = {"hospital": 1 + REGIONAL_PEERS, "rehabilitation": STROKE_REHAB_CENTRES}


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
    product_price: dict[str, np.ndarray]  # product key -> per-provider multiplier of price_factor
    planted: dict[str, int]  # "utilisation" / "price" -> provider index of the planted benchmark providers
    referral: tuple[np.ndarray, np.ndarray]  # (provider indices, cumulative patient share) for ProviderEffects.bundle

    NEVER = np.iinfo(np.int32).max

    def price_level(self, product_key: str, provider: np.ndarray) -> np.ndarray:
        """The provider's negotiated price level for a product (its level, times a planted
        bundle-specific multiplier)."""
        level = self.price_factor[provider]
        multiplier = self.product_price.get(product_key)
        return level if multiplier is None else level * multiplier[provider]

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

    def nearby(
        self, kind: str, patient_gemeente: np.ndarray, patient_province: np.ndarray, u: np.ndarray
    ) -> np.ndarray:
        """Pick, for each patient, a provider of ``kind`` in the same gemeente if there is one, else in
        the same province (``u`` in [0, 1) makes the pick; deterministic given ``u``)."""
        candidates = self.of_kind(kind)
        chosen = np.full(patient_gemeente.shape, -1, dtype=np.int64)
        for _level, patient_key, provider_key in (
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


def _count(kind: str, config: SynthConfig, n_provinces: int) -> int:
    """How many providers of ``kind``: the fixed count (times ``specialist_scale`` for the specialist
    kinds, rounded half up) or one per so many insured; at least one per province, plus for the kinds
    of :data:`REGIONAL_MINIMUM` enough to put that many in the contract province (the first of every
    province stays where it is, see :func:`_at_least_in_province`)."""
    _, fixed, per = PROVIDER_KINDS[kind]
    if fixed is None:
        n = round(config.patients / per)
    elif kind in SPECIALIST_KINDS and config.specialist_scale != 1.0:
        n = int(np.floor(fixed * config.specialist_scale + 0.5))
    else:
        n = fixed
    return max(n, n_provinces * PROVINCE_MINIMUM + REGIONAL_MINIMUM.get(kind, 1) - 1)


def build_registry(config: SynthConfig, calibration: Calibration) -> ProviderRegistry:
    """Place providers in gemeenten (by population), give them AGB codes, price levels and contracts."""
    rng = np.random.default_rng([config.seed, 0xA6B])
    gem_pop = (calibration.gemeente_share * calibration.age_sex_share[:, :, None]).sum(axis=(0, 1))
    gem_pop = gem_pop / gem_pop.sum()
    provinces = np.array(calibration.province_of_gemeente)
    province_codes = np.unique(provinces)

    contract_province = config.regional.province
    agb, kinds, gemeenten, factors = [], [], [], []
    for kind, (prefix, _, _) in PROVIDER_KINDS.items():
        n = _count(kind, config, province_codes.size)
        # one per province first (in its most populous gemeente), then the rest by population
        first = [int(np.flatnonzero(provinces == p)[np.argmax(gem_pop[provinces == p])]) for p in province_codes]
        rest = rng.choice(gem_pop.size, size=n - len(first), p=gem_pop).tolist() if n > len(first) else []
        placed = (first + rest)[:n]
        if kind in REGIONAL_MINIMUM:
            placed = _at_least_in_province(placed, REGIONAL_MINIMUM[kind], contract_province, provinces, gem_pop)
        numbers = rng.choice(900_000, size=n, replace=False) + 100_000
        agb += [f"{prefix}{k:06d}" for k in numbers]
        kinds += [kind] * n
        gemeenten += placed
        if kind in ("hospital", "zbc", "rehabilitation"):
            e = np.clip(rng.normal(0.0, PRICE_SPREAD, size=n), -2 * PRICE_SPREAD, 2 * PRICE_SPREAD)
        else:
            e = rng.normal(0.0, 0.03, size=n)
        factors += (PRICE_LEVEL.get(kind, 1.0) * np.exp(e)).tolist()

    agb_a = np.array(agb, dtype=object)
    kind_a = np.array(kinds, dtype=object)
    gem_a = np.array(gemeenten, dtype=np.int64)
    registry_wo_contracts = dict(
        agb=agb_a,
        kind=kind_a,
        gemeente=gem_a,
        province=provinces[gem_a],
        price_factor=np.array(factors),
        gemeente_codes=calibration.gemeente_codes,
    )
    planted, product_price, referral = _plant_benchmark_providers(config, rng, registry_wo_contracts)
    contract_start, contracts = _plan_contracts(config, rng, registry_wo_contracts, exclude=set(planted.values()))
    return ProviderRegistry(
        contract_start=contract_start,
        contracts=contracts,
        product_price=product_price,
        planted=planted,
        referral=referral,
        **registry_wo_contracts,
    )


def _at_least_in_province(
    placed: list[int], k: int, province: str, provinces: np.ndarray, gem_pop: np.ndarray
) -> list[int]:
    """Move providers placed at random (not the first one per province) into ``province`` until it
    has ``k`` (into its most populous gemeenten), when there are enough providers."""
    in_province = [i for i, g in enumerate(placed) if provinces[g] == province]
    n_provinces = np.unique(provinces).size
    movable = [i for i in range(n_provinces, len(placed)) if provinces[placed[i]] != province]
    members = np.flatnonzero(provinces == province)
    if members.size == 0:
        return placed
    populous = members[np.argsort(-gem_pop[members], kind="stable")]
    out = list(placed)
    for j, i in enumerate(movable[::-1][: max(0, k - len(in_province))]):
        out[i] = int(populous[(j + 1) % populous.size])
    return out


def _plant_benchmark_providers(
    config: SynthConfig, rng: np.random.Generator, reg: dict
) -> tuple[dict[str, int], dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Choose the two planted benchmark hospitals of ``config.providers`` (outside the regional
    province, in different gemeenten) and set their price levels: the utilisation provider at the
    national level (1.0) for everything, the price provider at 1.0 for everything except the
    bundle's products, which it prices at ``price_factor``."""
    effects = config.providers
    n = reg["agb"].size
    hospitals = np.flatnonzero((reg["kind"] == "hospital") & (reg["province"] != config.regional.province))
    order = rng.permutation(hospitals)
    chosen: list[int] = []
    for h in order:
        if all(reg["gemeente"][h] != reg["gemeente"][c] for c in chosen):
            chosen.append(int(h))
        if len(chosen) == 2:
            break
    planted = {"utilisation": chosen[0], "price": chosen[1]}
    reg["price_factor"][chosen] = 1.0
    multiplier = np.ones(n)
    multiplier[planted["price"]] = effects.price_factor
    product_price = {key: multiplier for key in BUNDLE_PRODUCTS[effects.bundle]}
    shares = {
        "utilisation": effects.patient_share if effects.utilisation_factor != 1.0 else 0.0,
        "price": effects.patient_share if effects.price_factor != 1.0 else 0.0,
    }
    providers = np.array([planted["utilisation"], planted["price"]], dtype=np.int64)
    cumulative = np.cumsum([shares["utilisation"], shares["price"]])
    return planted, product_price, (providers, cumulative)


def _parameters(bundle: str, group: list[int], reg: dict) -> dict:
    """The ``parameters`` JSON of one contract row: the bundle's parameters, with the stroke
    distribution key in AGB codes (each type's share split equally over its providers, in millionths
    that add up to exactly 1: the last provider takes what rounding left over)."""
    from decimal import Decimal

    params = dict(CONTRACT_PARAMETERS[bundle])
    if bundle == "acute_stroke":
        kinds = [str(reg["kind"][m]) for m in group]
        shares = [
            (Decimal(str(STROKE_DISTRIBUTION.get(kind, 0.0))) / kinds.count(kind)).quantize(Decimal("0.000001"))
            for kind in kinds
        ]
        shares[-1] += Decimal(1) - sum(shares)
        params["distribution_key"] = {str(reg["agb"][m]): float(share) for m, share in zip(group, shares)}
    return params


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


def wave_counts(waves: tuple[ContractWave, ...], ratio: float, capacity: int) -> list[int]:
    """How many providers sign in each wave of a bundle's plan when there are ``ratio`` times the
    default number of providers of its kinds and at most ``capacity`` may sign.

    With fewer providers than the default (``ratio < 1``) every wave shrinks by ``ratio`` (rounded
    half up) but keeps at least one provider; then, while the waves need more than ``capacity``, the
    largest wave (the earliest of equal ones) gives up one provider, down to one each, and after that
    the latest waves are dropped (count 0). With the default counts or more the plan is kept as it is
    (within the capacity). Public so its rounding and dropping can be tested by hand."""
    counts = [w.count for w in waves]
    if ratio < 1.0:
        counts = [max(1, int(np.floor(c * ratio + 0.5))) for c in counts]
    capacity = max(capacity, 0)
    while sum(counts) > capacity:
        largest = max(range(len(counts)), key=lambda i: (counts[i], -i))
        if counts[largest] > 1:
            counts[largest] -= 1
        else:
            counts[max(i for i, c in enumerate(counts) if c > 0)] = 0
    return counts


def _plan_contracts(
    config: SynthConfig, rng: np.random.Generator, reg: dict, exclude: set[int] = frozenset()
) -> tuple[dict[str, np.ndarray], pl.DataFrame]:
    """Choose the treated providers per bundle and write the ``contracts`` table.

    Only contracts that start on or before ``data_as_of`` are known to the delivery. The planted
    benchmark providers (``exclude``) never sign the hip/knee contract; contracts of bundles with a
    regional baseline are signed by providers of one province (``config.regional.province``; when
    it has fewer than ``REGIONAL_PEERS + 1`` providers of the bundle's kinds, which the registry's
    :data:`REGIONAL_MINIMUM` prevents, they come from elsewhere).

    Fewer providers (``SynthConfig.specialist_scale`` below 1): the waves of ``CONTRACT_PLAN`` are
    scaled by the number of providers of the plan's kinds over their default number (e.g. 14 hospitals
    and 12 ZBCs of 110: hip 14/4/2 becomes 3/1/1, cataract 8 becomes 2), each wave keeping at least
    one provider, and so that ``REGIONAL_PEERS`` providers of the pool (for the regional-baseline
    bundles: of the province) stay untreated; when even one provider per wave would leave fewer peers,
    the latest waves are left out (:func:`wave_counts`). The planted benchmark providers are never
    counted as peers of the hip/knee contract.
    """
    n = reg["agb"].size
    start = {b: np.full(n, ProviderRegistry.NEVER, dtype=np.int64) for b in CONTRACT_PLAN}
    rows: list[dict] = []
    as_of = config.as_of
    for bundle, plan in CONTRACT_PLAN.items():
        if plan.get("group") == "joint" and bundle == "knee_oa":
            continue  # hip and knee share one contract per provider (see hip_oa)
        pool = np.flatnonzero(np.isin(reg["kind"], plan["kinds"]))
        default_size = sum(PROVIDER_KINDS[kind][1] or 0 for kind in plan["kinds"])
        ratio = pool.size / default_size if default_size else 1.0
        if plan.get("group") == "joint":
            pool = np.array([p for p in pool if int(p) not in exclude], dtype=np.int64)
        if bundle in REGIONAL_BASELINE_BUNDLES:
            local = pool[reg["province"][pool] == config.regional.province]
            # keep at least REGIONAL_PEERS providers of the province out of the contract, as regional peers
            capacity = local.size - REGIONAL_PEERS if local.size > REGIONAL_PEERS else pool.size - REGIONAL_PEERS
        else:
            capacity = pool.size - REGIONAL_PEERS
        counts = wave_counts(plan["waves"], ratio, capacity)
        total = sum(counts)
        if bundle in REGIONAL_BASELINE_BUNDLES:
            take = min(total, max(local.size - REGIONAL_PEERS, 0))
            chosen_local = rng.choice(local, size=take, replace=False)
            others = np.setdiff1d(pool, local)
            chosen = np.concatenate(
                [chosen_local, rng.choice(others, size=min(total - take, others.size), replace=False)]
            )
        else:
            chosen = rng.choice(pool, size=min(total, pool.size), replace=False)
        offset = 0
        for wave, count in zip(plan["waves"], counts):
            members = chosen[offset : offset + count]
            offset += count
            if not members.size:
                continue
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
                                "parameters": json.dumps(_parameters(b, group, reg), sort_keys=True),
                            }
                        )
    contracts = pl.DataFrame(
        rows,
        schema={
            "contract_id": pl.String,
            "bundle_id": pl.String,
            "provider_agb": pl.String,
            "insurer_uzovi": pl.String,
            "start_date": pl.Date,
            "end_date": pl.Date,
            "model": pl.String,
            "parameters": pl.String,
        },
    )
    return start, contracts
