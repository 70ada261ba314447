"""Bundle definitions: all nine load, a wrong definition fails with a message naming the problem,
a researcher's new file is picked up, and the generated docs are current."""

from __future__ import annotations

import shutil

import pytest
import yaml

from transforms.bundles import BUNDLE_DIR, BundleDefinitionError, load_bundles, parse_bundle, select_bundles
from transforms.episodes import docs


def test_all_nine_bundles_of_the_spec_load():
    assert set(load_bundles()) == {
        "hip_oa",
        "knee_oa",
        "cataract",
        "breast_cancer_surgery",
        "ra_drugs",
        "heart_failure",
        "acute_stroke",
        "birth_care",
        "hand_wrist",
    }


def _broken(tmp_path, change) -> object:
    raw = yaml.safe_load((BUNDLE_DIR / "hip_oa.yml").read_text())
    change(raw)
    path = tmp_path / "hip_oa.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda r: r["trigger"]["any_of"][0].update(activity=["999999"]), "unknown care activity 999999"),
        (lambda r: r["in_bundle"][0].update(diagnosis=["9999"]), "unknown diagnosis 9999"),
        (lambda r: r["window"].update(pre_days=-5), "window.pre_days"),
        (lambda r: r["outcomes"][0].update(component="surgery"), "component"),
        (lambda r: r["in_bundle"][0].update(table="hospital"), "table"),
        (lambda r: r["in_bundle"][0].update(atc=["A10"]), "atc applies to pharmacy lines only"),
        (lambda r: r.update(id="hip"), "differs from the file name"),
    ],
)
def test_a_wrong_definition_fails_with_a_clear_message(tmp_path, change, message):
    with pytest.raises(BundleDefinitionError, match=message) as error:
        parse_bundle(_broken(tmp_path, change))
    assert "hip_oa.yml" in str(error.value)


def test_a_researcher_adds_a_bundle_by_adding_a_file(tmp_path):
    folder = tmp_path / "bundles"
    shutil.copytree(BUNDLE_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    raw = yaml.safe_load((BUNDLE_DIR / "hip_oa.yml").read_text())
    raw.update(id="hip_revision", title="Hip revisions")
    raw["trigger"]["any_of"] = [{"table": "dbc", "specialism": ["0305"], "diagnosis": ["1703"], "activity": ["038570"]}]
    (folder / "hip_revision.yml").write_text(yaml.safe_dump(raw))
    bundles = select_bundles(["hip_revision"], folder)
    assert bundles[0].trigger.any_of[0].activity == ("038570",)


def test_unknown_bundle_names_are_rejected():
    with pytest.raises(BundleDefinitionError, match="unknown bundle"):
        select_bundles(["hip"])


def test_episode_docs_are_up_to_date():
    assert docs.DOCS_PATH.read_text() == docs.render(), "run python -m transforms.episodes.docs"


@pytest.mark.parametrize(
    "outcome,message",
    [
        ({"kind": "any_lines"}, "unknown kind 'any_lines'"),
        ({"rules": []}, "needs rules"),
        ({"value": 2}, "does not use value"),
    ],
)
def test_an_outcome_with_the_wrong_fields_for_its_kind_is_refused(tmp_path, outcome, message):
    with pytest.raises(BundleDefinitionError, match=message):
        parse_bundle(_broken(tmp_path, lambda r: r["outcomes"][0].update(outcome)))


def test_every_declared_outcome_kind_has_its_function_and_no_function_is_undeclared():
    from transforms.bundles import outcome_kinds
    from transforms.episodes.outcomes import OUTCOME_FUNCTIONS

    assert set(OUTCOME_FUNCTIONS) == set(outcome_kinds())


def test_a_new_outcome_kind_is_one_yaml_entry_and_one_registered_function(tmp_path, monkeypatch):
    """The worked example of docs/extending.md: nothing but the entry and the function."""
    from types import SimpleNamespace

    import polars as pl

    import transforms.bundles as bundles
    from transforms.bundles import Outcome
    from transforms.episodes import outcomes

    kinds = tmp_path / "outcome_kinds.yml"
    kinds.write_text(
        bundles.OUTCOME_KINDS_FILE.read_text()
        + "count_claims:\n  type: count\n  description: number of distinct claims among the episode's lines\n"
        "  requires: []\n  allows: [component]\n"
    )
    monkeypatch.setattr(bundles, "OUTCOME_KINDS_FILE", kinds)
    monkeypatch.setitem(
        outcomes.OUTCOME_FUNCTIONS,
        "count_claims",
        lambda outcome, inputs: (
            inputs.lines(outcome).group_by("episode_id").agg(pl.col("claim_id").n_unique().alias(outcome.name))
        ),
    )
    outcome = Outcome(name="in_bundle_claims", kind="count_claims", description="claims", component="in_bundle")
    episodes = pl.DataFrame({"episode_id": ["e1", "e2", "e3"]})
    allocated = pl.DataFrame(
        {
            "episode_id": ["e1", "e1", "e1", "e2"],
            "claim_id": ["a", "a", "b", "c"],
            "component": ["in_bundle", "in_bundle", "in_bundle", "gp"],
        }
    )
    out = outcomes.compute_outcomes(SimpleNamespace(outcomes=(outcome,)), episodes, allocated, pl.DataFrame())
    assert out["in_bundle_claims"].to_list() == [2, 0, 0]
    assert out["in_bundle_claims"].dtype == pl.Int32
