"""Rule 5 of the bundles: net credit lines against their originals and collapse re-declarations.

A claim and every line that corrects it (``corrects_claim_id`` = its ``claim_id``) form a *group*.
A correcting line with a negative amount is a **credit**; one with a zero or positive amount is a
**re-declaration**. The group becomes one stored line:

- its ``claim_id`` is the original's, so every later table can refer back to what was delivered;
- its attributes (dates, codes, provider, care activities) are the latest re-declaration's (by
  ``declared_on``, then ``claim_id``), or the original's when it was never re-declared;
- its ``amount`` is the **sum of the group's amounts**, exact to the cent;
- ``fully_credited`` is set when the sum is zero and nothing was re-declared: the line then
  contributes nothing downstream, but it is kept so the books show it.

Every other line of the group is *merged*: it goes to the corrections audit table, and the money it
carried is inside the stored line's sum, so euros in = euros stored + euros quarantined.

Most claims are never corrected (a group of one): they pass through unchanged, and only the lines of
real groups, a few percent, are sorted and aggregated by their (string) claim id.
"""

from __future__ import annotations

import polars as pl

ROOT = "_root_claim_id"


def net_corrections(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return ``(netted, merged)`` for valid claim lines with int cents in ``amount``.

    ``netted`` has one row per group (original ``claim_id``, effective attributes, summed amount,
    ``n_corrections``, ``fully_credited``, ``effective_claim_id``); ``merged`` lists the lines folded
    into another (``claim_id``, ``root_claim_id``, ``kind``, ``amount``, ``declared_on``).
    """
    corrected = lines["corrects_claim_id"].drop_nulls().unique()
    in_group = pl.col("corrects_claim_id").is_not_null() | pl.col("claim_id").is_in(corrected.implode())
    netted, merged = _net_groups(lines.filter(in_group))
    alone = lines.filter(~in_group).with_columns(
        pl.col("claim_id").alias("effective_claim_id"),
        pl.lit(0, pl.Int16).alias("n_corrections"),
        pl.lit(False).alias("fully_credited"),
    )
    return pl.concat([alone.select(netted.columns), netted]), merged


def _net_groups(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`net_corrections` on lines that all belong to groups of two or more (or are
    corrections whose original is not among them)."""
    df = lines.with_columns(pl.coalesce("corrects_claim_id", "claim_id").alias(ROOT))
    kind = (
        pl.when(pl.col("corrects_claim_id").is_null()).then(pl.lit("original"))
        .when(pl.col("amount") < 0).then(pl.lit("credit"))
        .otherwise(pl.lit("redeclaration"))
    )
    df = df.with_columns(kind.alias("_kind"))
    # the effective line: latest re-declaration, else the original
    rank = (
        pl.when(pl.col("_kind") == "redeclaration").then(2)
        .when(pl.col("_kind") == "original").then(1)
        .otherwise(0)
    )
    df = df.with_columns(rank.alias("_rank"))
    order = df.sort([ROOT, "_rank", "declared_on", "claim_id"], descending=[False, True, True, True])
    group = order.group_by(ROOT, maintain_order=True).agg(
        pl.col("amount").sum().alias("_net"),
        pl.len().alias("_size"),
        (pl.col("_kind") == "redeclaration").any().alias("_redeclared"),
        pl.col("declared_on").max().alias("_last_declared"),
        pl.col("claim_id").first().alias("effective_claim_id"),
    )
    effective = order.unique(ROOT, keep="first", maintain_order=True)
    netted = (
        effective.join(group, on=ROOT, how="left")
        .with_columns(
            pl.col(ROOT).alias("claim_id"),
            pl.col("_net").alias("amount"),
            pl.col("_last_declared").alias("declared_on"),
            pl.lit(None, pl.String).alias("corrects_claim_id"),
            (pl.col("_size") - 1).cast(pl.Int16).alias("n_corrections"),
            ((pl.col("_net") == 0) & ~pl.col("_redeclared") & (pl.col("_size") > 1)).alias("fully_credited"),
        )
        .drop(ROOT, "_kind", "_rank", "_net", "_size", "_redeclared", "_last_declared")
    )
    merged = (
        df.join(group.select(ROOT, "effective_claim_id"), on=ROOT)
        .filter(pl.col("claim_id") != pl.col("effective_claim_id"))
        .select("claim_id", pl.col(ROOT).alias("root_claim_id"), pl.col("_kind").alias("kind"), "amount", "declared_on",
                *(["patient_key"] if "patient_key" in df.columns else []))
    )
    return netted, merged


def rekey_activities(activities: pl.DataFrame, netted_dbc: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the care activities of each group's effective subtraject, under the original claim id;
    activities of the other lines of a group are merged (returned second)."""
    effective = netted_dbc.select(pl.col("effective_claim_id"), pl.col("claim_id").alias("_root"))
    kept = activities.join(effective, left_on="claim_id", right_on="effective_claim_id", how="inner")
    kept = kept.with_columns(pl.col("_root").alias("claim_id")).drop("_root")
    merged = activities.join(effective, left_on="claim_id", right_on="effective_claim_id", how="anti")
    return kept, merged
