"""Prefect deployments of zorgpad with their schedules, served by a long-running process.

    export PREFECT_API_URL=http://prefect-server:4200/api
    export ZORGPAD_DASK_SCHEDULER=tcp://dask-scheduler:8786
    export ZORGPAD_DATA=/data            # deliveries arrive in $ZORGPAD_DATA/incoming/<month>
    python deploy/deployments.py         # registers the deployments and serves them

Schedules (Europe/Amsterdam): the monthly ``zorgpad run`` on the 5th at 01:00 (deliveries land in
the first days of the month; unchanged stages are kept), a weekly Sunday rebuild of the episodes
(bundle definitions may change), and an unscheduled ``panel-build`` a researcher starts from the UI
with the path of a spec as its parameter. ``deploy/prefect.yaml`` declares the same deployments for
a work pool (``prefect deploy --all``).
Parameters can be overridden per run from the Prefect UI or ``prefect deployment run``.
"""

from __future__ import annotations

import os

from prefect import serve
from prefect.client.schemas.schedules import CronSchedule

from flows.episodes_flow import episodes_flow
from flows.panel_build_flow import panel_build_flow
from flows.run_flow import run_flow

TIMEZONE = "Europe/Amsterdam"


def build_deployments() -> list:
    data = os.environ.get("ZORGPAD_DATA", "/data")
    scheduler = os.environ.get("ZORGPAD_DASK_SCHEDULER")
    monthly = run_flow.to_deployment(
        name="monthly-delivery",
        schedules=[CronSchedule(cron="0 1 5 * *", timezone=TIMEZONE)],
        parameters={
            "delivery": f"{data}/incoming/current",
            "out": f"{data}/run",
            "specs": f"{data}/specs",
            "scheduler": scheduler,
        },
        tags=["zorgpad", "monthly"],
        description="zorgpad run on the month's delivery: ingest, episodes, panels, DiD specs, report.",
    )
    weekly = episodes_flow.to_deployment(
        name="weekly-episodes",
        schedules=[CronSchedule(cron="0 3 * * 0", timezone=TIMEZONE)],
        parameters={"store": f"{data}/store", "out": f"{data}/episodes", "scheduler": scheduler},
        tags=["zorgpad", "episodes"],
        description="Rebuild the episodes from the current store.",
    )
    panel = panel_build_flow.to_deployment(
        name="panel-build",
        parameters={
            "spec": f"{data}/specs/example.yaml",
            "store": f"{data}/run/store",
            "episodes": f"{data}/run/episodes",
            "out": f"{data}/requests/example",
            "estimate": True,
            "scheduler": scheduler,
        },
        tags=["zorgpad", "did"],
        description="Build one DiD panel (and its estimates) from a spec: give the spec's path and an output folder.",
    )
    return [monthly, weekly, panel]


if __name__ == "__main__":
    serve(*build_deployments())
