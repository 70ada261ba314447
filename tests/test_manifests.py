"""The typed manifests (``transforms.manifests``): every model parses the file a tiny real run wrote
and writes it back key for key; a manifest that is not of its form is refused with one clear
error (one ``error:`` line on the command line, no traceback); any books model survives JSON."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.did_panel.run import build_panel
from transforms.episodes.run import build_episodes, data_as_of_of
from transforms.ingest.delivery import DeliveryError, read_delivery_meta
from transforms.ingest.run import ingest
from transforms.manifests import (
    BooksEntry,
    DeliveryJson,
    DidPanelManifest,
    EpisodesManifest,
    ManifestError,
    PanelsManifest,
    StoreManifest,
    TableBooks,
    read_manifest,
)
from transforms.output_folder import require_episodes_of
from transforms.panels.run import build_panels
from transforms.synth import SynthConfig, generate_delivery


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("manifests")
    generate_delivery(
        SynthConfig(patients=3_000, first_year=2016, last_year=2021, seed=5, block_size=3_000), root / "delivery"
    )
    ingest(root / "delivery", root / "store", n_buckets=2, data_docs=False)
    build_episodes(root / "store", root / "episodes", bundles=["hip_oa", "knee_oa", "cataract"])
    build_panels(root / "store", root / "episodes", root / "panels")
    spec = root / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "hip_knee",
                "bundles": ["hip_oa", "knee_oa"],
                "unit": "episode",
                "period": "year",
                "years": [2017, 2021],
                "outcomes": ["in_bundle_cents"],
                "covariates": ["age_at_anchor", "sex"],
            },
            sort_keys=False,
        )
    )
    build_panel(spec, root / "store", root / "episodes", root / "did_panel")
    return {
        "root": root,
        "delivery": root / "delivery" / "delivery.json",
        "store": root / "store" / "manifest.json",
        "episodes": root / "episodes" / "manifest.json",
        "panels": root / "panels" / "manifest.json",
        "did_panel": root / "did_panel" / "manifest.json",
    }


MODELS = {
    "delivery": DeliveryJson,
    "store": StoreManifest,
    "episodes": EpisodesManifest,
    "panels": PanelsManifest,
    "did_panel": DidPanelManifest,
}


@pytest.mark.parametrize("name", MODELS)
def test_each_model_parses_what_a_run_wrote_and_writes_it_back_key_for_key(run, name):
    written = json.loads(run[name].read_text())
    model = read_manifest(MODELS[name], run[name])
    assert model.dump() == written
    # and what it writes parses back to the same model
    assert MODELS[name].model_validate(json.loads(json.dumps(model.dump()))) == model


def test_the_store_manifest_has_exact_euros_and_balanced_books(run):
    store = read_manifest(StoreManifest, run["store"])
    assert store.balanced and store.zorgpad.kind == "store" and store.run_id
    for table, books in store.books.items():
        assert isinstance(books.euros_in_exact, Decimal), table
        assert books.euros_in_exact == books.euros_delivered_exact
        assert books.rows_in == books.rows_stored + books.rows_quarantined + books.rows_merged
    raw = json.loads(run["store"].read_text())
    assert all(isinstance(e["euros_in_exact"], str) for e in raw["books"].values())
    assert store.delivery == read_delivery_meta(run["root"] / "delivery")


def _broken(run, tmp_path, name: str, change) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    data = json.loads(run[name].read_text())
    change(data)
    path = folder / run[name].name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "name, change, fragment",
    [
        ("store", lambda m: m["books"]["dbc"].update(rows_in="many"), "books.dbc.rows_in"),
        ("store", lambda m: m["books"]["gp"].pop("rows_stored"), "books.gp: Value error, field required: rows_stored"),
        ("store", lambda m: m["books"]["gp"].update(euros_in_exact=12.5), "books.gp.euros_in_exact"),
        ("store", lambda m: m["books"]["gp"].update(surplus=1), "books.gp.surplus"),
        ("store", lambda m: m["delivery"].update(data_as_of="last tuesday"), "delivery.data_as_of"),
        ("episodes", lambda m: m.pop("bundles"), "bundles: field required"),
        ("episodes", lambda m: m["episodes"].update(hip_oa="12"), "episodes.hip_oa"),
        ("panels", lambda m: m.update(rows=[]), "rows"),
        ("did_panel", lambda m: m.update(years="2017-2021"), "years"),
    ],
)
def test_a_manifest_not_of_its_form_is_refused_with_one_line(run, tmp_path, name, change, fragment):
    path = _broken(run, tmp_path, name, change)
    with pytest.raises(ManifestError) as caught:
        read_manifest(MODELS[name], path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and fragment in message, message


def test_a_truncated_manifest_is_refused_with_one_line(run, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(run["store"].read_text()[:200])
    with pytest.raises(ManifestError, match=r"is not readable JSON") as caught:
        read_manifest(StoreManifest, path)
    assert "\n" not in str(caught.value)


def test_readers_refuse_a_broken_store_manifest_not_with_a_traceback(run, tmp_path):
    """The stages that read a store (episodes, panels) raise the user-facing error."""
    store = tmp_path / "store"
    store.mkdir()
    data = json.loads(run["store"].read_text())
    data["delivery"]["data_as_of"] = 20230331
    (store / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"delivery.data_as_of"):
        data_as_of_of(store)
    with pytest.raises(ManifestError, match=r"--store .*manifest.json is not a valid StoreManifest"):
        require_episodes_of(store, run["root"] / "episodes")


def test_a_malformed_delivery_json_gives_one_delivery_error(tmp_path):
    (tmp_path / "delivery.json").write_text(
        json.dumps(
            {"delivery_id": "x", "data_as_of": "2023-13-01", "first_year": 2016, "last_year": 2021, "producer": "p"}
        )
    )
    with pytest.raises(DeliveryError, match=r"delivery.json has a malformed value: data_as_of: .*YYYY-MM-DD") as caught:
        read_delivery_meta(tmp_path)
    assert "\n" not in str(caught.value)


def test_the_command_line_gives_one_error_line_for_a_broken_store_manifest(run, tmp_path):
    from test_cli_safety import assert_one_error_line, zorgpad

    store = tmp_path / "store"
    store.mkdir()
    data = json.loads(run["store"].read_text())
    data["books"]["dbc"]["rows_in"] = "many"
    (store / "manifest.json").write_text(json.dumps(data))
    done = zorgpad(
        tmp_path,
        "panels",
        "--store",
        str(store),
        "--episodes",
        str(run["root"] / "episodes"),
        "--out",
        str(tmp_path / "panels"),
    )
    assert_one_error_line(done, "is not a valid StoreManifest", "books.dbc.rows_in")


# ------------------------------------------------------------------------------ books, any books
cents = st.integers(min_value=-(10**12) + 1, max_value=10**12 - 1)
counts = st.integers(min_value=0, max_value=10**9)
euros = st.decimals(min_value=-(10**10), max_value=10**10, places=3, allow_nan=False, allow_infinity=False)

books = st.builds(
    TableBooks,
    rows_in=counts,
    rows_stored=counts,
    rows_quarantined=counts,
    rows_merged=counts,
    cents_in=cents,
    cents_stored=cents,
    cents_quarantined=cents,
    cents_merged_lines=cents,
    fully_credited=counts,
    unrepresentable_in=euros,
    unrepresentable_quarantined=euros,
    amounts_not_a_number=counts,
)


@settings(max_examples=200, deadline=None)
@given(books)
def test_any_books_serialise_and_parse_back_equal(b):
    text = json.dumps(b.model_dump(mode="json"))
    back = TableBooks.model_validate(json.loads(text))
    assert back == b
    assert back.unrepresentable_in == b.unrepresentable_in and str(back.unrepresentable_in) == str(b.unrepresentable_in)


@settings(max_examples=100, deadline=None)
@given(books, st.decimals(min_value=-(10**10), max_value=10**10, places=2, allow_nan=False, allow_infinity=False))
def test_any_books_entry_keeps_its_exact_euros(b, delivered):
    entry = BooksEntry(
        **b.model_dump(),
        euros_in=float(delivered),
        euros_stored=0.0,
        euros_quarantined=0.0,
        euros_in_exact=delivered,
        euros_stored_exact=Decimal(0),
        euros_quarantined_exact=delivered,
        balanced=False,
        rows_in_delivery=b.rows_in,
        euros_delivered_exact=delivered,
    )
    data = json.loads(json.dumps(entry.model_dump(mode="json")))
    assert data["euros_in_exact"] == str(delivered)
    assert BooksEntry.model_validate(data) == entry


def test_adding_books_sums_every_field():
    a = TableBooks(rows_in=3, rows_stored=2, rows_quarantined=1, cents_in=150, unrepresentable_in=Decimal("0.005"))
    a.add(TableBooks(rows_in=1, rows_stored=1, cents_in=-50, unrepresentable_in=Decimal("0.001")))
    assert (a.rows_in, a.rows_stored, a.cents_in, a.unrepresentable_in) == (4, 3, 100, Decimal("0.006"))
