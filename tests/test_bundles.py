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
