"""The ordered care path of an episode across domains: first GP contact, referral, first specialist
visit, trigger, discharge, first physiotherapy, last contact, and the days between them.

All dates come from the episode's allocated lines, so a path can be traced back to the claims:
- first GP contact: the first ``gp`` consult/visit line in the window before the anchor;
- referral: the last ``gp`` line with a ``referral_specialism_cd`` in the window before the anchor;
- first specialist visit: the start of the first in-bundle DBC line;
- discharge: the anchor plus the care days of the anchor's subtraject (the anchor when there are none);
- first physiotherapy: the first paramedical line on or after the anchor;
- last contact: the latest reference date of any allocated line.
"""

from __future__ import annotations

import polars as pl

from transforms.bundles import care_path_codes

#: Care activities counting care days, GP services that are a contact (``bundles/schema/care_path.yml``).
CARE_DAY_ACTIVITIES = care_path_codes().care_day_activities
GP_CONTACT_CODES = care_path_codes().gp_contact_services


def care_path(episodes: pl.DataFrame, allocated: pl.DataFrame, activities: pl.DataFrame) -> pl.DataFrame:
    before = allocated.filter(pl.col("start") < pl.col("anchor_date"))
    gp = before.filter(pl.col("source_table") == "gp")
    first_gp = (
        gp.filter(pl.col("service_cd").is_in(GP_CONTACT_CODES))
        .group_by("episode_id")
        .agg(pl.col("start").min().alias("first_gp_contact"))
    )
    referral = (
        gp.filter(pl.col("referral_specialism_cd").is_not_null())
        .group_by("episode_id")
        .agg(pl.col("start").max().alias("referral"))
    )
    specialist = (
        allocated.filter((pl.col("component") == "in_bundle") & (pl.col("source_table") == "dbc"))
        .group_by("episode_id")
        .agg(pl.col("start").min().alias("first_specialist_visit"))
    )
    care_days = (
        episodes.select("episode_id", "anchor_claim_id")
        .join(
            activities.filter(pl.col("activity_cd").is_in(CARE_DAY_ACTIVITIES)),
            left_on="anchor_claim_id",
            right_on="claim_id",
        )
        .group_by("episode_id")
        .agg(pl.col("quantity").sum().alias("_care_days"))
    )
    physio = (
        allocated.filter((pl.col("source_table") == "paramedical") & (pl.col("start") >= pl.col("anchor_date")))
        .group_by("episode_id")
        .agg(pl.col("start").min().alias("first_physiotherapy"))
    )
    last = allocated.group_by("episode_id").agg(pl.col("start").max().alias("last_contact"))
    out = episodes
    for frame in (first_gp, referral, specialist, care_days, physio, last):
        out = out.join(frame, on="episode_id", how="left", maintain_order="left")
    out = out.with_columns(
        (pl.col("anchor_date") + pl.duration(days=pl.col("_care_days").fill_null(0))).alias("discharge"),
    ).drop("_care_days")

    def days(a: str, b: str) -> pl.Expr:
        return (pl.col(b) - pl.col(a)).dt.total_days().cast(pl.Int32)

    return out.with_columns(
        days("first_gp_contact", "referral").alias("days_gp_to_referral"),
        days("referral", "first_specialist_visit").alias("days_referral_to_specialist"),
        days("first_specialist_visit", "anchor_date").alias("days_specialist_to_trigger"),
        days("anchor_date", "discharge").alias("days_trigger_to_discharge"),
        days("discharge", "first_physiotherapy").alias("days_discharge_to_physiotherapy"),
        days("anchor_date", "last_contact").alias("days_trigger_to_last_contact"),
    )
