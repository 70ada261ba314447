"""``SynthConfig.specialist_scale``: fewer (or more) hospitals, ZBCs and rehabilitation centres, so a
small delivery has realistic volumes per provider, while every province keeps one of each, the
contract province keeps its contracts and their untreated peers, and the planted benchmark providers
stay out of every contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transforms.synth import SynthConfig, generate_delivery, truth_dir
from transforms.synth.calibration import load_calibration
from transforms.synth.providers import (
    CONTRACT_PLAN,
    PROVIDER_KINDS,
    REGIONAL_BASELINE_BUNDLES,
    REGIONAL_PEERS,
    ContractWave,
    build_registry,
    wave_counts,
)


def test_wave_counts_by_hand():
    waves = (ContractWave(2018, 14), ContractWave(2019, 4), ContractWave(2020, 2))
    assert wave_counts(waves, 1.0, 100) == [14, 4, 2]
    assert wave_counts(waves, 2.0, 100) == [14, 4, 2], "more providers keep the plan"
    assert wave_counts(waves, 26 / 110, 22) == [3, 1, 1]  # 3.3, 0.9, 0.5 rounded half up, at least 1
    assert wave_counts(waves, 26 / 110, 4) == [2, 1, 1], "the largest wave gives up one first"
    assert wave_counts(waves, 26 / 110, 2) == [1, 1, 0], "then the latest waves are left out"
    assert wave_counts(waves, 26 / 110, 0) == [0, 0, 0]
    assert wave_counts((ContractWave(2018, 8),), 26 / 110, 2) == [2]


@pytest.mark.parametrize("scale", [0.1, 0.2, 0.5, 2.0])
def test_the_registry_scales_the_specialists_and_keeps_every_province_and_contract_peer(scale):
    config = SynthConfig(patients=300_000, first_year=2015, last_year=2019, seed=3, specialist_scale=scale)
    registry = build_registry(config, load_calibration(config.first_year, config.last_year))
    provinces = np.unique(registry.province)
    contract_province = config.regional.province
    for kind in ("hospital", "zbc", "rehabilitation"):
        members = registry.of_kind(kind)
        assert members.size == max(
            int(np.floor(PROVIDER_KINDS[kind][1] * scale + 0.5)),
            provinces.size + {"hospital": 2, "rehabilitation": 2}.get(kind, 0),
        ), kind
        assert set(registry.province[members]) == set(provinces), f"a {kind} in every province"
    in_province = registry.province == contract_province
    assert (in_province & (registry.kind == "hospital")).sum() >= 1 + REGIONAL_PEERS
    assert (in_province & (registry.kind == "rehabilitation")).sum() >= 3
    planted = set(registry.planted.values())
    assert len(planted) == 2 and not any(registry.province[p] == contract_province for p in planted)
    never = registry.NEVER
    for bundle, plan in CONTRACT_PLAN.items():
        treated = registry.contract_start[bundle] < never
        pool = np.isin(registry.kind, plan["kinds"])
        if not plan["waves"] or not treated.any():
            continue
        if plan.get("group") == "joint":
            assert not any(treated[p] for p in planted), "the planted providers never sign"
        treated &= pool  # partners of another kind (stroke: rehabilitation centres) are not the pool
        peers = pool & ~treated
        if plan.get("group") == "joint":
            peers &= ~np.isin(np.arange(registry.agb.size), list(planted))
        if bundle in REGIONAL_BASELINE_BUNDLES:
            assert (treated & ~in_province).sum() == 0, f"{bundle}: signed in the contract province"
            peers &= in_province
        assert peers.sum() >= REGIONAL_PEERS, f"{bundle}: untreated peers remain"


def test_a_scaled_delivery_says_so_in_its_id_and_truth(tmp_path):
    config = SynthConfig(patients=2_000, first_year=2017, last_year=2018, seed=4, clean=True, specialist_scale=0.2)
    generate_delivery(config, tmp_path / "d")
    assert "-x0.2-" in json.loads((tmp_path / "d" / "delivery.json").read_text())["delivery_id"]
    truth = json.loads((truth_dir(tmp_path / "d") / "truth.json").read_text())
    assert truth["config"]["specialist_scale"] == 0.2
