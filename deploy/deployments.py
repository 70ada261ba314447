"""Prefect deployments of zorgpad with their schedules, served by a long-running process.

    export PREFECT_API_URL=http://prefect-server:4200/api
    export ZORGPAD_DASK_SCHEDULER=tcp://dask-scheduler:8786
    export ZORGPAD_DATA=/data            # deliveries arrive in $ZORGPAD_DATA/incoming/<month>
    python deploy/deployments.py         # registers the deployments and serves them

Schedules (Europe/Amsterdam): the monthly run on the 5th at 01:00 (deliveries land in the first
days of the month) and a weekly Sunday rebuild of the episodes (bundle definitions may change).
Parameters can be overridden per run from the Prefect UI or ``prefect deployment run``.
"""

from __future__ import annotations

import os

from prefect import serve
from prefect.client.schemas.schedules import CronSchedule

from flows.episodes_flow import episodes_flow
from flows.monthly_flow import monthly_flow

TIMEZONE = "Europe/Amsterdam"


def build_deployments() -> list:
    data = os.environ.get("ZORGPAD_DATA", "/data")
    scheduler = os.environ.get("ZORGPAD_DASK_SCHEDULER")
    monthly = monthly_flow.to_deployment(
        name="monthly-delivery",
        schedules=[CronSchedule(cron="0 1 5 * *", timezone=TIMEZONE)],
        parameters={"delivery": f"{data}/incoming/current", "store": f"{data}/store",
                    "episodes": f"{data}/episodes", "scheduler": scheduler},
        tags=["zorgpad", "monthly"],
        description="Ingest the month's delivery and rebuild all episodes.",
    )
    weekly = episodes_flow.to_deployment(
        name="weekly-episodes",
        schedules=[CronSchedule(cron="0 3 * * 0", timezone=TIMEZONE)],
        parameters={"store": f"{data}/store", "out": f"{data}/episodes", "scheduler": scheduler},
        tags=["zorgpad", "episodes"],
        description="Rebuild the episodes from the current store.",
    )
    return [monthly, weekly]


if __name__ == "__main__":
    serve(*build_deployments())
