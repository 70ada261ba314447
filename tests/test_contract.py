"""The contract in code: it loads, it rejects wrong definitions, and the generated documents and
code lists are up to date."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest
import yaml
from pydantic import ValidationError

from transforms.contract import CONTRACT_DIR, MONEY, TABLE_ORDER, Table, dictionary, load_contract
from transforms.contract.derive_gp_codes import OUT as GP_CODES
from transforms.contract.derive_gp_codes import derive


def test_all_nine_tables_load_with_arrow_schemas():
    contract = load_contract()
    assert list(contract.tables) == list(TABLE_ORDER)
    dbc = contract.table("dbc").arrow_schema()
    assert dbc.field("amount").type == MONEY == pa.decimal128(12, 2)
    assert dbc.field("start_date").type == pa.date32()
    assert not dbc.field("claim_id").nullable and dbc.field("corrects_claim_id").nullable


def test_code_lists_answer_validity_on_a_date():
    lists = load_contract().code_lists
    assert lists["nza_diagnosis"].is_valid("1701", date(2018, 5, 1), scope="0305")
    assert not lists["nza_diagnosis"].is_valid("1701", date(2018, 5, 1), scope="0301")
    assert lists["gp_service"].is_valid("12000", date(2021, 12, 31))
    assert not lists["gp_service"].is_valid("12000", date(2022, 1, 1))
    assert lists["gp_service"].is_valid("12010", date(2022, 1, 1))
    assert not lists["nza_activity"].is_valid("190204", date(2016, 1, 1))  # ended 2013
    assert lists["nza_activity"].is_valid("193309", date(2020, 1, 1))  # documented extension
    assert lists["atc"].is_valid("L04AB04") and not lists["atc"].is_valid("L04AB4")


def test_a_wrong_table_definition_fails_with_a_message_naming_the_problem():
    raw = yaml.safe_load((CONTRACT_DIR / "tables" / "providers.yml").read_text())
    raw["primary_key"] = ["provider_code"]
    with pytest.raises(ValidationError, match="provider_code"):
        Table.model_validate(raw)
    raw = yaml.safe_load((CONTRACT_DIR / "tables" / "providers.yml").read_text())
    raw["columns"][0]["type"] = "decimal"
    with pytest.raises(ValidationError, match="type"):
        Table.model_validate(raw)


def test_data_dictionary_is_up_to_date():
    assert dictionary.DOCS_PATH.read_text() == dictionary.render(), (
        "docs/contract.md is stale: run python -m transforms.contract.dictionary"
    )


def test_gp_code_list_is_the_derivation_of_the_bundled_tariffs():
    import polars as pl

    committed = pl.read_csv(GP_CODES, infer_schema=False)
    assert committed.equals(derive().cast(pl.String)), "run python -m transforms.contract.derive_gp_codes"


def test_store_docs_are_up_to_date():
    from transforms.ingest import docs

    assert docs.DOCS_PATH.read_text() == docs.render(), "docs/store.md is stale: run python -m transforms.ingest.docs"
