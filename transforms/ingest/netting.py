"""Rule 5 of the bundles: net credit lines against their originals and collapse re-declarations.

A line with ``corrects_claim_id`` null is an **original**; a correcting line with a negative amount
is a **credit**, one with a zero or positive amount a **re-declaration**. Corrections can correct
corrections (a credit of a re-declaration, a re-declaration of a re-declaration), so a line's *root*
is found by following ``corrects_claim_id`` links to the end of the chain (:func:`resolve_roots`).
All lines with the same root form a *group*, which becomes one stored line:

- its ``claim_id`` is the root's, so every later table can refer back to what was delivered;
- its ``amount`` is the **sum of the group's amounts**, exact to the cent, and ``n_corrections``
  is the group's size minus one;
- a *link* (the original or a re-declaration) is **withdrawn** when at least one credit corrects it
  directly and its amount plus the amounts of those credits is zero;
- its attributes (dates, codes, provider, care activities; ``effective_claim_id``) are those of
  the latest (by ``declared_on``, then ``claim_id``) re-declaration that is not withdrawn, else of
  the original if it is not withdrawn, else (all withdrawn) of the latest re-declaration, else of
  the original;
- ``fully_credited`` is set when every link is withdrawn (which needs at least one credit, so a
  group of two or more): the line then contributes nothing downstream, but it is kept so the books
  show it.

Every other line of the group is *merged*: it goes to the corrections audit table, and the money it
carried is inside the stored line's sum, so euros in = euros stored + euros quarantined.

Lines whose chain never reaches an original because it runs into a cycle (A corrects B, B corrects
A) cannot be netted: :func:`in_correction_cycle` finds them so the bucket stage can quarantine them
first, and :func:`net_corrections` refuses them. A chain that ends at a claim id with no line (ingest
quarantines those as ``unknown_reference`` before netting) is netted under that missing id, and its
group is never fully credited, since its original's amount is unknown.

Most claims are never corrected (a group of one): they pass through unchanged, and only the lines of
real groups, a few percent, have their chains walked and are sorted and aggregated by claim id.
"""

from __future__ import annotations

import polars as pl

ROOT = "_root_claim_id"


def resolve_roots(lines: pl.DataFrame) -> pl.Series:
    """The claim id of the original each line's chain of ``corrects_claim_id`` links reaches (an
    original's own id for an original), or null when the chain runs into a cycle or ends at a claim
    id that has no line in ``lines``."""
    ends = _chain_ends(lines)
    is_correction = lines["corrects_claim_id"].is_not_null()
    # a walk stops at an id that is no correcting line: an original if it has a line at all. Only
    # the few ids the corrections reach are looked up, not every original of the bucket.
    reached = ends.filter(is_correction).unique()
    present = lines["claim_id"].filter(lines["claim_id"].is_in(reached.implode()))
    return pl.select(pl.when(~is_correction | ends.is_in(present.implode())).then(ends)).to_series().alias(ROOT)


def in_correction_cycle(lines: pl.DataFrame) -> pl.Series:
    """True for the lines in a cycle of ``corrects_claim_id`` links and for the lines whose chain
    leads into one: they have no original to be netted against (quarantine reason
    ``correction_cycle``)."""
    return _chain_ends(lines).is_null().alias("in_correction_cycle")


def net_corrections(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return ``(netted, merged)`` for valid claim lines with int cents in ``amount``.

    ``netted`` has one row per group (root ``claim_id``, effective attributes, summed amount,
    ``n_corrections``, ``fully_credited``, ``effective_claim_id``); ``merged`` lists the lines folded
    into another (``claim_id``, ``root_claim_id``, ``kind``, ``amount``, ``declared_on``).
    Raises ``ValueError`` when a line is in (or leads into) a correction cycle.
    """
    corrected = lines["corrects_claim_id"].drop_nulls().unique()
    in_group = pl.col("corrects_claim_id").is_not_null() | pl.col("claim_id").is_in(corrected.implode())
    netted, merged = net_groups(lines.filter(in_group))
    alone = lines.filter(~in_group).with_columns(
        pl.col("claim_id").alias("effective_claim_id"),
        pl.lit(0, pl.Int16).alias("n_corrections"),
        pl.lit(False).alias("fully_credited"),
    )
    return pl.concat([alone.select(netted.columns), netted]), merged


def net_groups(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`net_corrections` without its fast path: an uncorrected original, run through the group
    logic, is a group of one that is stored as it came, which is what the fast path does. Public as
    the reference the fast path is tested against."""
    roots = _chain_ends(lines)
    if roots.null_count():
        cyclic = lines.filter(roots.is_null())["claim_id"]
        raise ValueError(
            f"{cyclic.len()} claim lines are in or lead into a cycle of corrects_claim_id links "
            f"(e.g. {cyclic.head(5).to_list()}); quarantine them (in_correction_cycle) before netting"
        )
    kind = (
        pl.when(pl.col("corrects_claim_id").is_null())
        .then(pl.lit("original"))
        .when(pl.col("amount") < 0)
        .then(pl.lit("credit"))
        .otherwise(pl.lit("redeclaration"))
    )
    df = lines.with_columns(roots, kind.alias("_kind"))
    # what the credits pointing directly at each line add up to (null: no credit points at it)
    credited = (
        df.filter(pl.col("_kind") == "credit")
        .group_by("corrects_claim_id")
        .agg(pl.col("amount").sum().alias("_credited"))
    )
    df = df.join(credited, left_on="claim_id", right_on="corrects_claim_id", how="left", maintain_order="left")
    is_link = pl.col("_kind") != "credit"
    withdrawn = is_link & pl.col("_credited").is_not_null() & (pl.col("amount") + pl.col("_credited") == 0)
    df = df.with_columns(withdrawn.alias("_withdrawn"))
    # the effective line is the first by rank, then latest declared_on, then highest claim_id
    rank = (
        pl.when((pl.col("_kind") == "redeclaration") & ~pl.col("_withdrawn"))
        .then(4)
        .when((pl.col("_kind") == "original") & ~pl.col("_withdrawn"))
        .then(3)
        .when(pl.col("_kind") == "redeclaration")
        .then(2)
        .when(pl.col("_kind") == "original")
        .then(1)
        .otherwise(0)
    )
    df = df.with_columns(rank.alias("_rank"))
    order = df.sort([ROOT, "_rank", "declared_on", "claim_id"], descending=[False, True, True, True])
    group = order.group_by(ROOT, maintain_order=True).agg(
        pl.col("amount").sum().alias("_net"),
        pl.len().alias("_size"),
        # a withdrawn original has a credit, so the group has two or more lines; without its
        # original (a dangling chain) a group is never fully credited
        ((pl.col("_kind") == "original").any() & pl.col("_withdrawn").filter(is_link).all()).alias("_all_withdrawn"),
        pl.col("declared_on").max().alias("_last_declared"),
        pl.col("claim_id").first().alias("effective_claim_id"),
    )
    effective = order.unique(ROOT, keep="first", maintain_order=True)
    netted = (
        effective.join(group, on=ROOT, how="left", maintain_order="left")
        .with_columns(
            pl.col(ROOT).alias("claim_id"),
            pl.col("_net").alias("amount"),
            pl.col("_last_declared").alias("declared_on"),
            pl.lit(None, pl.String).alias("corrects_claim_id"),
            (pl.col("_size") - 1).cast(pl.Int16).alias("n_corrections"),
            pl.col("_all_withdrawn").alias("fully_credited"),
        )
        .drop(ROOT, "_kind", "_credited", "_withdrawn", "_rank", "_net", "_size", "_all_withdrawn", "_last_declared")
    )
    merged = (
        df.join(group.select(ROOT, "effective_claim_id"), on=ROOT, maintain_order="left")
        .filter(pl.col("claim_id") != pl.col("effective_claim_id"))
        .select(
            "claim_id",
            pl.col(ROOT).alias("root_claim_id"),
            pl.col("_kind").alias("kind"),
            "amount",
            "declared_on",
            *(["patient_key"] if "patient_key" in df.columns else []),
        )
    )
    return netted, merged


def _chain_ends(lines: pl.DataFrame) -> pl.Series:
    """Where each line's chain of ``corrects_claim_id`` links stops: its own id for an original,
    else the first id reached that is not a correcting line (an original, or an id with no line),
    or null when the chain runs into a cycle.

    Only the correcting lines (a few percent of a bucket) are walked, in Python, each once: a chain
    is followed until it reaches a line whose end is already known, and the end is then recorded
    for every line on the way. Chains are short and rare, so this beats repeated joins of the frame.
    """
    is_correction = lines["corrects_claim_id"].is_not_null()
    corrections = lines.filter(is_correction)
    corrects = dict(zip(corrections["claim_id"].to_list(), corrections["corrects_claim_id"].to_list()))
    end: dict[str, str | None] = {}
    for start in corrects:
        path: list[str] = []
        on_path: set[str] = set()
        node = start
        while node in corrects and node not in end and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = corrects[node]
        if node in on_path:
            found = None  # the chain came back to itself
        elif node in end:
            found = end[node]
        else:
            found = node
        end.update(dict.fromkeys(path, found))
    ends = pl.Series([end[c] for c in corrections["claim_id"].to_list()], dtype=pl.String)
    return lines["claim_id"].clone().scatter(is_correction.arg_true(), ends).alias(ROOT)


def rekey_activities(activities: pl.DataFrame, netted_dbc: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the care activities of each group's effective subtraject, under the original claim id;
    activities of the other lines of a group are merged (returned second)."""
    effective = netted_dbc.select(pl.col("effective_claim_id"), pl.col("claim_id").alias("_root"))
    kept = activities.join(effective, left_on="claim_id", right_on="effective_claim_id", how="inner")
    kept = kept.with_columns(pl.col("_root").alias("claim_id")).drop("_root")
    merged = activities.join(effective, left_on="claim_id", right_on="effective_claim_id", how="anti")
    return kept, merged
