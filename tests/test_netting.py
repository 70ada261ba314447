"""Rule 5, netting of correction chains: hand-computed cases, and property tests of
:func:`net_corrections` against a deliberately simple reference on random correction forests."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.ingest.netting import in_correction_cycle, net_corrections, resolve_roots

SCHEMA = {
    "claim_id": pl.String,
    "corrects_claim_id": pl.String,
    "amount": pl.Int64,
    "declared_on": pl.Int32,
    "attr": pl.String,
    "patient_key": pl.Int64,
}


def frame(rows: list[tuple[str, str | None, int, int]]) -> pl.DataFrame:
    """Lines from ``(claim_id, corrects_claim_id, amount, declared_on)``; ``attr`` names the line, so
    the stored line shows whose attributes it kept."""
    return pl.DataFrame([(c, r, a, d, f"attr-{c}", 7) for c, r, a, d in rows], schema=SCHEMA, orient="row")


def by_claim(netted: pl.DataFrame) -> dict[str, dict]:
    return {r["claim_id"]: r for r in netted.to_dicts()}


# ------------------------------------------------------------------------------ hand-computed cases
def test_a_credited_redeclaration_nets_into_the_original():
    lines = frame(
        [
            ("A", None, 10_000, 1),
            ("A-C", "A", -10_000, 2),
            ("A-R", "A", 9_000, 3),
            ("R-C", "A-R", -9_000, 4),
            ("X", None, 500, 1),
        ]
    )
    assert resolve_roots(lines).to_list() == ["A", "A", "A", "A", "X"]
    netted, merged = net_corrections(lines)
    stored = by_claim(netted)
    assert set(stored) == {"A", "X"}
    a = stored["A"]
    assert (a["amount"], a["n_corrections"], a["fully_credited"]) == (0, 3, True)
    assert a["effective_claim_id"] == "A-R" and a["attr"] == "attr-A-R"  # all withdrawn: latest re-declaration
    assert a["declared_on"] == 4 and a["corrects_claim_id"] is None
    assert sorted(merged.select("claim_id", "root_claim_id", "kind").rows()) == [
        ("A", "A", "original"),
        ("A-C", "A", "credit"),
        ("R-C", "A", "credit"),
    ]
    assert (stored["X"]["amount"], stored["X"]["n_corrections"], stored["X"]["fully_credited"]) == (500, 0, False)


def test_a_redeclaration_of_a_withdrawn_redeclaration_is_effective():
    lines = frame(
        [
            ("A", None, 10_000, 1),
            ("A-C", "A", -10_000, 2),
            ("R1", "A", 9_000, 3),
            ("R1-C", "R1", -9_000, 4),
            ("R2", "R1", 8_500, 5),
        ]
    )
    netted, merged = net_corrections(lines)
    a = by_claim(netted)["A"]
    assert (a["amount"], a["n_corrections"], a["fully_credited"]) == (8_500, 4, False)
    assert a["effective_claim_id"] == "R2" and a["attr"] == "attr-R2"
    assert sorted(merged["claim_id"].to_list()) == ["A", "A-C", "R1", "R1-C"]
    assert set(merged["root_claim_id"].to_list()) == {"A"}


def test_a_partial_credit_leaves_the_original_effective():
    netted, merged = net_corrections(frame([("A", None, 10_000, 1), ("A-C", "A", -3_000, 2)]))
    a = by_claim(netted)["A"]
    assert (a["amount"], a["n_corrections"], a["fully_credited"], a["effective_claim_id"]) == (7_000, 1, False, "A")
    assert merged.select("claim_id", "kind").rows() == [("A-C", "credit")]


def test_a_withdrawn_redeclaration_gives_way_to_a_live_original():
    """A re-declaration credited away does not take the attributes from an original still standing."""
    netted, _ = net_corrections(frame([("A", None, 10_000, 1), ("A-R", "A", 9_000, 3), ("R-C", "A-R", -9_000, 4)]))
    a = by_claim(netted)["A"]
    assert (a["amount"], a["effective_claim_id"], a["fully_credited"]) == (10_000, "A", False)


def test_a_cycle_is_flagged_and_refused():
    lines = frame(
        [("A", "B", 100, 1), ("B", "A", -100, 2), ("C", "A", 50, 3), ("D", None, 10, 1), ("D-C", "D", -10, 2)]
    )
    assert in_correction_cycle(lines).to_list() == [True, True, True, False, False]
    assert resolve_roots(lines).to_list() == [None, None, None, "D", "D"]
    with pytest.raises(ValueError, match="cycle"):
        net_corrections(lines)
    netted, _ = net_corrections(lines.filter(~in_correction_cycle(lines)))
    assert by_claim(netted)["D"]["fully_credited"]


def test_a_self_reference_is_a_cycle():
    lines = frame([("A", "A", 100, 1), ("B", None, 10, 1)])
    assert in_correction_cycle(lines).to_list() == [True, False]
    assert resolve_roots(lines).to_list() == [None, "B"]
    with pytest.raises(ValueError, match="cycle"):
        net_corrections(lines)


def test_a_chain_to_a_missing_claim_has_no_root_but_is_no_cycle():
    """Ingest quarantines unknown references before netting; the functions stay total regardless."""
    lines = frame([("A-R", "GONE", 100, 1), ("R-C", "A-R", -100, 2)])
    assert resolve_roots(lines).to_list() == [None, None]
    assert in_correction_cycle(lines).to_list() == [False, False]
    netted, _ = net_corrections(lines)
    assert netted.select("claim_id", "amount", "fully_credited").rows() == [("GONE", 0, False)]


def test_a_deep_chain_resolves_without_recursion():
    depth = 5_000
    rows = [("L0", None, 1, 1)] + [(f"L{i}", f"L{i - 1}", 1, 1) for i in range(1, depth)]
    lines = frame(rows)
    assert resolve_roots(lines).to_list() == ["L0"] * depth
    assert by_claim(net_corrections(lines)[0])["L0"]["amount"] == depth


# ------------------------------------------------------------------------------ reference and forests
def kind_of(line: dict) -> str:
    if line["corrects_claim_id"] is None:
        return "original"
    return "credit" if line["amount"] < 0 else "redeclaration"


def reference(lines: list[dict]) -> dict[str, tuple[int, int, str, bool]]:
    """``root -> (net, n_corrections, effective_claim_id, fully_credited)``, straight from the rules."""
    by_id = {line["claim_id"]: line for line in lines}

    def root(claim_id: str) -> str:
        parent = by_id[claim_id]["corrects_claim_id"]
        return claim_id if parent is None else root(parent)

    def withdrawn(link: dict) -> bool:
        credits = [c["amount"] for c in lines if c["corrects_claim_id"] == link["claim_id"] and kind_of(c) == "credit"]
        return bool(credits) and link["amount"] + sum(credits) == 0

    groups: dict[str, list[dict]] = {}
    for line in lines:
        groups.setdefault(root(line["claim_id"]), []).append(line)
    result = {}
    for root_id, group in groups.items():
        original = by_id[root_id]
        redeclarations = sorted(
            (line for line in group if kind_of(line) == "redeclaration"),
            key=lambda line: (line["declared_on"], line["claim_id"]),
            reverse=True,
        )
        live = [line for line in redeclarations if not withdrawn(line)]
        if live:
            effective = live[0]
        elif not withdrawn(original) or not redeclarations:
            effective = original
        else:
            effective = redeclarations[0]
        fully = len(group) > 1 and all(withdrawn(link) for link in [original, *redeclarations])
        result[root_id] = (sum(line["amount"] for line in group), len(group) - 1, effective["claim_id"], fully)
    return result


@st.composite
def forests(draw) -> tuple[list[dict], dict[str, str]]:
    """Random originals with credits and re-declarations attached to random earlier lines of the same
    tree; credits often withdraw their target exactly, or in two halves. Returns the lines and each
    line's tree root."""
    lines: list[dict] = []
    tree_of: dict[str, str] = {}
    trees: list[list[dict]] = []
    for t in range(draw(st.integers(1, 5))):
        original = {
            "claim_id": f"T{t}",
            "corrects_claim_id": None,
            "amount": draw(st.integers(0, 10_000)),
            "declared_on": draw(st.integers(1, 6)),
        }
        lines.append(original)
        trees.append([original])
        tree_of[original["claim_id"]] = original["claim_id"]
    for i in range(draw(st.integers(0, 25))):
        tree = draw(st.sampled_from(trees))
        target = draw(st.sampled_from(tree))
        if draw(st.booleans()):
            options = [-target["amount"], -(target["amount"] // 2), -(target["amount"] - target["amount"] // 2)]
            amount = draw(st.sampled_from([a for a in options if a < 0] or [-1]) | st.integers(-10_000, -1))
        else:
            amount = draw(st.sampled_from([target["amount"], 0]) | st.integers(0, 10_000))
        # ids in no particular order relative to the tree, so the claim_id tie-break is exercised
        line = {
            "claim_id": f"{draw(st.sampled_from('PQRS'))}{i}",
            "corrects_claim_id": target["claim_id"],
            "amount": amount,
            "declared_on": draw(st.integers(1, 6)),
        }
        lines.append(line)
        tree.append(line)
        tree_of[line["claim_id"]] = tree_of[target["claim_id"]]
    return lines, tree_of


def to_frame(lines: list[dict]) -> pl.DataFrame:
    return frame([(x["claim_id"], x["corrects_claim_id"], x["amount"], x["declared_on"]) for x in lines])


@settings(max_examples=300, deadline=None)
@given(forests(), st.randoms(use_true_random=False))
def test_netting_of_random_correction_forests(forest, rng):
    lines, tree_of = forest
    df = to_frame(lines)
    netted, merged = net_corrections(df)

    # (a) money is conserved to the cent
    assert netted["amount"].sum() == df["amount"].sum()
    # (b) every line is the stored line of one group or merged, exactly once
    assert Counter(netted["effective_claim_id"].to_list()) + Counter(merged["claim_id"].to_list()) == Counter(
        df["claim_id"].to_list()
    )
    assert max(Counter(netted["effective_claim_id"].to_list() + merged["claim_id"].to_list()).values()) == 1
    # (c) stored lines carry the originals' ids: one per tree
    assert sorted(netted["claim_id"].to_list()) == sorted(
        x["claim_id"] for x in lines if x["corrects_claim_id"] is None
    )
    # (d) the reference, line roots, kinds, and the effective line's attributes
    got = {
        r["claim_id"]: (r["amount"], r["n_corrections"], r["effective_claim_id"], r["fully_credited"])
        for r in netted.to_dicts()
    }
    assert got == reference(lines)
    assert resolve_roots(df).to_list() == [tree_of[x["claim_id"]] for x in lines]
    assert not in_correction_cycle(df).any()
    assert (netted["attr"] == "attr-" + netted["effective_claim_id"]).all()
    kinds = {x["claim_id"]: kind_of(x) for x in lines}
    assert all(
        root == tree_of[c] and kind == kinds[c]
        for c, root, kind in merged.select("claim_id", "root_claim_id", "kind").iter_rows()
    )
    # (e) row order does not matter
    shuffled = lines[:]
    rng.shuffle(shuffled)
    netted2, merged2 = net_corrections(to_frame(shuffled))
    assert netted2.sort("claim_id").equals(netted.sort("claim_id"))
    assert merged2.sort("claim_id").equals(merged.sort("claim_id"))


@settings(max_examples=300, deadline=None)
@given(forests(), st.randoms(use_true_random=False))
def test_injected_cycles_are_exactly_the_flagged_lines(forest, rng):
    """Re-pointing a line at itself or one of its descendants closes a cycle; that line's whole
    subtree (the cycle and every chain leading into it) has no original any more."""
    lines, _ = forest
    children: dict[str, list[str]] = {}
    for x in lines:
        children.setdefault(x["corrects_claim_id"], []).append(x["claim_id"])

    def subtree(claim_id: str) -> set[str]:
        return {claim_id}.union(*(subtree(c) for c in children.get(claim_id, [])))

    chosen = rng.sample(lines, rng.randint(1, min(3, len(lines))))
    expected: set[str] = set()
    for line in chosen:
        below = subtree(line["claim_id"])
        line["corrects_claim_id"] = rng.choice(sorted(below))
        expected |= below
    rng.shuffle(lines)
    df = to_frame(lines)

    flagged = in_correction_cycle(df)
    assert set(df.filter(flagged)["claim_id"].to_list()) == expected
    assert (resolve_roots(df).is_null() == flagged).all()
    with pytest.raises(ValueError, match="cycle"):
        net_corrections(df)
    rest, _ = net_corrections(df.filter(~flagged))
    assert rest["amount"].sum() == df.filter(~flagged)["amount"].sum()
