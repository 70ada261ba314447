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


def test_every_row_rule_kind_has_its_function_and_no_function_is_undeclared():
    from transforms.contract import rule_kinds_of_stage
    from transforms.ingest.checks import ROW_RULES

    assert set(ROW_RULES) == set(rule_kinds_of_stage("row"))


def test_every_link_rule_kind_has_its_function_and_no_function_is_undeclared():
    from transforms.contract import rule_kinds_of_stage
    from transforms.ingest.links import LINK_RULES

    assert set(LINK_RULES) == set(rule_kinds_of_stage("link"))


def test_every_row_check_of_the_contract_has_its_verdict_function():
    """Each row check of every table is decided by a registered function: a derivation of
    ``DERIVED_ROW_CHECKS``, a kind of ``COLUMN_VERDICTS``, or ``not_null``; none is unused."""
    from transforms.contract import load_contract
    from transforms.ingest.checks import COLUMN_VERDICTS, DERIVED_ROW_CHECKS, checks_for

    checks = [c for t in load_contract().tables.values() for c in checks_for(t) if c.stage == "row"]
    derivations = {c.derivation for c in checks if c.kind == "derived"}
    kinds = {c.kind for c in checks if c.kind != "derived"}
    assert derivations == set(DERIVED_ROW_CHECKS)
    assert kinds == set(COLUMN_VERDICTS) | {"not_null"}


@pytest.mark.parametrize(
    "rule,message",
    [
        ({"id": "x", "kind": "date_ranges", "reason": "r", "description": "d"}, "unknown kind 'date_ranges'"),
        ({"id": "x", "kind": "column_order", "left": "a", "reason": "r", "description": "d"}, "needs right"),
    ],
)
def test_a_rule_with_an_unknown_kind_or_missing_fields_is_refused(rule, message):
    from pydantic import ValidationError

    from transforms.contract import Rule

    with pytest.raises(ValidationError, match=message):
        Rule.model_validate(rule)


def _one_rule_table(rule, column):
    """A table ``t`` keyed by ``service_date``, with one more column and the one rule of a docs example."""
    from transforms.contract import Column, Table

    service = Column(name="service_date", type="date", description="service", key=True)
    columns = (column, service) if column.name == "patient_id" else (service, column)
    return Table(
        table="t",
        grain="one row per line",
        role="reference",
        primary_key=("service_date",),
        columns=columns,
        rules=(rule,),
    )


def test_a_new_row_rule_kind_is_one_yaml_entry_and_one_registered_function(tmp_path, monkeypatch):
    """The worked example of docs/extending.md: the kind is declared, its function registered, a
    table uses it, and ingest's row flags and the data dictionary pick it up with nothing else changed."""
    from datetime import date

    import polars as pl

    import transforms.contract as contract
    from transforms.contract import Column, Rule
    from transforms.contract.dictionary import rule_text
    from transforms.ingest import checks

    kinds = tmp_path / "rule_kinds.yml"
    kinds.write_text(
        contract.RULE_KINDS_FILE.read_text()
        + 'not_before:\n  stage: row\n  requires: [left, right]\n  text: "{left} not before {right}"\n'
    )
    monkeypatch.setattr(contract, "RULE_KINDS_FILE", kinds)
    monkeypatch.setitem(
        checks.ROW_RULES, "not_before", lambda rule, context: (pl.col(rule.left) >= pl.col(rule.right)).fill_null(True)
    )
    rule = Rule(
        id="t_declared_after_service",
        kind="not_before",
        left="declared_on",
        right="service_date",
        reason="date_out_of_range",
        description="declared on or after the service date",
    )
    table = _one_rule_table(rule, Column(name="declared_on", type="date", description="declared"))
    frame = pl.DataFrame(
        {
            "service_date": [date(2020, 1, 5), date(2020, 1, 5), date(2020, 1, 5)],
            "declared_on": [date(2020, 1, 5), date(2020, 1, 4), None],
            "_issue": [None, None, None],
        },
        schema_overrides={"_issue": pl.String},
    )
    flagged = checks.add_row_flags(frame, table, date(2021, 1, 1))
    assert flagged["_ok__t_declared_after_service"].to_list() == [True, False, True]
    assert [c.stage for c in checks.checks_for(table) if c.id == rule.id] == ["row"]
    assert rule_text(rule) == "`declared_on` not before `service_date`"


def test_a_new_link_rule_kind_is_one_yaml_entry_and_one_registered_function(tmp_path, monkeypatch):
    """The link-kind example of docs/extending.md: declared, registered, used by a table, and the
    bucket stage's flags pick it up with nothing else changed."""
    from datetime import date

    import polars as pl

    import transforms.contract as contract
    from transforms.contract import Column, Rule
    from transforms.ingest import checks, links

    kinds = tmp_path / "rule_kinds.yml"
    kinds.write_text(
        contract.RULE_KINDS_FILE.read_text()
        + 'not_before_enrolment:\n  stage: link\n  requires: [date_column]\n  text: "{date_column} not before the first spell"\n'
    )
    monkeypatch.setattr(contract, "RULE_KINDS_FILE", kinds)

    def not_before_enrolment(rule: Rule, context: links.LinkContext) -> pl.Series:
        first = context.valid_spells.group_by("patient_key", "patient_id").agg(pl.col("enrolled_from").min())
        joined = context.frame.join(first, on=["patient_key", "patient_id"], how="left", maintain_order="left")
        return joined.select((pl.col(rule.date_column) >= pl.col("enrolled_from")).fill_null(True)).to_series()

    monkeypatch.setitem(links.LINK_RULES, "not_before_enrolment", not_before_enrolment)
    rule = Rule(
        id="t_not_before_enrolment",
        kind="not_before_enrolment",
        date_column="service_date",
        reason="outside_enrolment",
        description="no service before the first spell",
    )
    table = _one_rule_table(rule, Column(name="patient_id", type="string", description="patient", key=True))
    frame = pl.DataFrame(
        {
            "_i": [0, 1, 2],
            "patient_key": [1, 1, 2],
            "patient_id": ["P1", "P1", "P2"],
            "service_date": [date(2020, 1, 5), date(2019, 12, 31), date(2020, 1, 1)],
        }
    )
    spells = pl.DataFrame({"patient_key": [1], "patient_id": ["P1"], "enrolled_from": [date(2020, 1, 1)]})
    flagged = links.add_link_flags(links.LinkContext(table, frame, spells))
    assert flagged["_ok__t_not_before_enrolment"].to_list() == [True, False, True]
    assert [c.stage for c in checks.checks_for(table) if c.id == rule.id] == ["link"]
