"""The pipeline still produces the content it produced before the refactor of issue 16.

``tests/data/content_digests.json`` holds the digest (``tests/content_digest.py``) of every table of
store/, episodes/ and panels/ and the store's books, from ``zorgpad run`` at the commit named there
(before the money module, the registries and the typed manifests) on a small synthetic delivery.
This test generates the same delivery with the same command, runs the same pipeline with the code
under test and compares table by table. A difference names the table and what changed (rows or
hash); it means the content changed, which a refactor must not do: if a change is meant, say why in
the commit and record new digests (the commands are in the JSON file).

The delivery is digested too, first: if the generator changed, that is what the test says, not
that every table of the pipeline did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.content_digest import delivery_digest, differences, digest
from tests.test_cli_safety import zorgpad

# integration: zorgpad run on a generated delivery against recorded digests
pytestmark = pytest.mark.integration

RECORDED = Path(__file__).parent / "data" / "content_digests.json"


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(RECORDED.read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory, recorded) -> dict:
    tmp = tmp_path_factory.mktemp("digest")
    delivery, out = tmp / "delivery", tmp / "run"
    synth = recorded["arguments"]["synth"] + ["--out", str(delivery)]
    done = zorgpad(tmp, *synth)
    assert done.returncode == 0, done.stderr[-3000:]
    done = zorgpad(tmp, *recorded["arguments"]["run"], "--delivery", str(delivery), "--out", str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return {"delivery": delivery_digest(delivery), "run": digest(out)}


def test_the_delivery_is_the_recorded_one(recorded, run):
    assert run["delivery"] == recorded["delivery"], differences(
        {"tables": recorded["delivery"]}, {"tables": run["delivery"]}
    )


def test_every_table_and_the_books_have_the_recorded_content(recorded, run):
    assert set(run["run"]["tables"]) == set(recorded["run"]["tables"]), differences(recorded["run"], run["run"])
    assert differences(recorded["run"], run["run"]) == []


def test_the_digest_sees_content_and_not_how_it_was_written(tmp_path):
    """Rows split over other files, in another order, with wider types and in another column order
    give the same digest; one changed value (a cent, a float's last bit) or a changed partition
    value does not."""
    from datetime import date
    from decimal import Decimal

    import polars as pl

    rows = pl.DataFrame(
        {
            "claim_id": ["a", "b", "c"],
            "amount": [Decimal("1.10"), Decimal("2.00"), None],
            "ratio": [0.1, 1 / 3, None],
            "day": [date(2020, 1, 1), None, date(2021, 5, 6)],
            "checks": [["x"], [], None],
            "flag": [True, False, None],
            "n": pl.Series([1, 2, None], dtype=pl.Int32),
        },
        schema_overrides={"amount": pl.Decimal(12, 2)},
    )

    def write(name: str, parts: list[tuple[str, pl.DataFrame]]) -> Path:
        out = tmp_path / name
        for i, (bucket, part) in enumerate(parts):
            folder = out / "store" / "dbc" / f"bucket={bucket}"
            folder.mkdir(parents=True, exist_ok=True)
            part.write_parquet(folder / f"part-{i}.parquet")
        (out / "store" / "manifest.json").write_text(json.dumps({"books": {"dbc": {"rows_in": 3}}}))
        return out

    one = digest(write("one", [("0000", rows[:2]), ("0001", rows[2:])]))
    wider = rows.with_columns(pl.col("n").cast(pl.Int64)).select(reversed(rows.columns))
    other = digest(write("other", [("0001", wider[2:]), ("0000", wider[1:2]), ("0000", wider[:1])]))
    assert one == other
    cent = rows.with_columns(
        pl.when(pl.col("claim_id") == "a").then(Decimal("1.11")).otherwise("amount").alias("amount")
    )
    bit = rows.with_columns(pl.when(pl.col("claim_id") == "b").then(1 / 3 + 2**-54).otherwise("ratio").alias("ratio"))
    for name, changed in [("cent", cent), ("bit", bit)]:
        assert digest(write(name, [("0000", changed[:2]), ("0001", changed[2:])])) != one, name
    assert digest(write("moved", [("0000", rows[:1]), ("0001", rows[1:])])) != one
