"""The ingest's closing lines: the books and the validation said apart, in words."""

from transforms.ingest.summary import books_line, quarantine_reasons, validation_line


def test_balanced_books_and_failed_rows_are_two_separate_statements():
    manifest = {
        "balanced": True,
        "quarantine": {
            "dbc": {"duplicate_claim_id": 5, "bsn_like_id": 1},
            "gp": {"duplicate_claim_id": 2, "outside_enrolment": 9},
        },
    }
    assert quarantine_reasons(manifest) == {"duplicate_claim_id": 7, "outside_enrolment": 9, "bsn_like_id": 1} and list(
        quarantine_reasons(manifest)
    ) == ["outside_enrolment", "duplicate_claim_id", "bsn_like_id"]
    assert books_line(manifest).startswith("balanced")
    assert validation_line(manifest) == (
        "17 rows failed a check and are quarantined with their reason "
        "(outside_enrolment 9, duplicate_claim_id 7, bsn_like_id 1)"
    )
    assert validation_line(manifest, shown=1).endswith("(outside_enrolment 9 and 2 more reasons)")
    assert books_line({"balanced": False}).startswith("NOT balanced")
    assert validation_line({"balanced": True, "quarantine": {}}) == "every row passed every check"
