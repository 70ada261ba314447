"""The deployments build with their schedules and parameters (without serving them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_deployments_have_schedules_and_parameters(monkeypatch):
    monkeypatch.setenv("ZORGPAD_DATA", "/srv/zorgpad")
    monkeypatch.setenv("ZORGPAD_DASK_SCHEDULER", "tcp://scheduler:8786")
    spec = importlib.util.spec_from_file_location("deployments", ROOT / "deploy" / "deployments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monthly, weekly = module.build_deployments()
    assert monthly.name == "monthly-delivery" and weekly.name == "weekly-episodes"
    assert monthly.schedules[0].schedule.cron == "0 1 5 * *"
    assert monthly.parameters["delivery"] == "/srv/zorgpad/incoming/current"
    assert weekly.parameters["scheduler"] == "tcp://scheduler:8786"


def test_compose_file_names_every_service():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"prefect-server", "dask-scheduler", "dask-worker", "zorgpad-deployments"}
