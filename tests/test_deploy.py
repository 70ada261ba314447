"""The deployment files say what they should, checked as far as a machine without Docker or a
Kubernetes cluster allows: the deployments build with their schedules and parameters, every
``prefect.yaml`` entrypoint is a real flow, the compose file wires PostgreSQL, the Prefect server and
worker, the Dask scheduler and workers on loopback-only ports, and the Kubernetes manifests carry
TLS for Dask and an auth secret for the Prefect API."""

from __future__ import annotations

import importlib
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
    monthly, weekly, panel = module.build_deployments()
    assert (monthly.name, weekly.name, panel.name) == ("monthly-delivery", "weekly-episodes", "panel-build")
    assert monthly.schedules[0].schedule.cron == "0 1 5 * *"
    assert monthly.parameters["delivery"] == "/srv/zorgpad/incoming/current"
    assert monthly.parameters["out"] == "/srv/zorgpad/run"
    assert weekly.parameters["scheduler"] == "tcp://scheduler:8786"
    assert not panel.schedules and {"spec", "store", "episodes", "out"} <= panel.parameters.keys()


def test_prefect_yaml_entrypoints_are_flows_with_those_parameters():
    project = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    names = {d["name"] for d in project["deployments"]}
    assert names == {"monthly-delivery", "panel-build"}
    for deployment in project["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert set(deployment["parameters"]) <= set(flow.parameters.properties), deployment["name"]
        assert deployment["work_pool"]["name"] == "zorgpad"


def test_compose_wires_every_service_on_loopback_only():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {
        "postgres",
        "prefect-server",
        "dask-scheduler",
        "dask-worker",
        "deployments",
        "prefect-worker",
    }
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    server = services["prefect-server"]["environment"]
    assert server["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "PREFECT_SERVER_API_AUTH_STRING" in server
    assert services["prefect-worker"]["command"].startswith("prefect worker start --pool zorgpad")
    assert services["dask-worker"]["environment"]["POLARS_MAX_THREADS"] == "1"


def test_kubernetes_manifests_use_the_dask_operator_with_tls_and_an_authenticated_prefect_worker():
    documents = [
        d for f in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d
    ]
    kinds = {d["kind"]: d for d in documents}
    assert {"DaskCluster", "Deployment", "PersistentVolumeClaim"} <= set(kinds)
    cluster = kinds["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    for part in ("worker", "scheduler"):
        container = cluster["spec"][part]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "true" and env["POLARS_MAX_THREADS"] == "1"
    assert cluster["spec"]["scheduler"]["service"]["type"] == "ClusterIP"
    worker = kinds["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in worker["containers"][0]["env"]}
    assert env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]["name"] == "zorgpad-prefect-auth"
    assert env["ZORGPAD_DASK_SCHEDULER"]["value"].startswith("tls://")
    assert worker["securityContext"]["runAsNonRoot"] is True
