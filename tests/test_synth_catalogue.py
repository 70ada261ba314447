"""The synthetic generator's catalogue of DBC care products uses only real, valid NZa codes.

``transforms/synth/catalogue.yml`` names the DBC products the generator declares. Every code in it
must be valid, according to the bundled NZa grouper tables, on every day from 2013-01-01 (or from
1 January of the entry's ``valid_from_year``) through 2030-12-31 (or 31 December of its
``valid_to_year``): a code may have several rows with consecutive periods, and their union must
cover the span without a gap. Open-ended rows (``valid_to`` null) cover the years after the 2017
table.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml

import reference
from transforms.contract import load_contract

CATALOGUE = Path(__file__).resolve().parents[1] / "transforms" / "synth" / "catalogue.yml"

SPAN_START_YEAR = 2013
SPAN_END = dt.date(2030, 12, 31)
LATEST_ALLOWED_START_YEAR = 2015  # minimum acceptable span: 2015-01-01 .. 2030-12-31
MAX_DURATION_FROM = dt.date(2015, 1, 1)  # care-type maximum durations checked from 2015 on
CARE_DAY_ACTIVITIES = {"190218", "194804"}  # Verpleegdag; Verpleegdag geriatrische revalidatie
ADDON_CLASS = "20"  # care_profile_class_cd of separately priced add-on drugs

REQUIRED_PRODUCT_KEYS = {
    # hip
    "hip_oa_outpatient",
    "hip_oa_prosthesis",
    "hip_oa_followup",
    "hip_complication",
    # knee
    "knee_oa_outpatient",
    "knee_oa_prosthesis",
    "knee_oa_followup",
    "knee_complication",
    # cataract
    "cataract_outpatient",
    "cataract_surgery",
    "cataract_surgery_alt",
    "nastaar_laser",
    # breast cancer
    "breast_diagnostics",
    "breast_lumpectomy",
    "breast_mastectomy",
    "breast_reoperation",
    "breast_radiotherapy",
    "breast_chemotherapy",
    "breast_followup",
    # rheumatoid arthritis
    "ra_outpatient",
    "ra_outpatient_infliximab",
    "ra_outpatient_rituximab",
    "ra_outpatient_abatacept",
    "ra_outpatient_tocilizumab",
    # heart failure
    "hf_outpatient",
    "hf_admission",
    # stroke
    "stroke_admission",
    "stroke_followup",
    "rehab_clinical",
    "rehab_outpatient",
    "geriatric_rehab",
    # birth
    "pregnancy_gyn",
    "partus_gyn",
    "caesarean_gyn",
    "neonatal",
    # hand and wrist
    "cts_intake_plastic",
    "cts_intake_ortho",
    "cts_surgery",
    "cmc1_intake",
    "cmc1_surgery",
}

# The codes the bundle definitions (docs/bundles.md) trigger on or flag: the catalogue must
# produce them, or the bundles cannot be exercised by synthetic data.
REQUIRED_CODES = {
    "hip_oa_prosthesis": ("0305", "1701", "190305"),
    "hip_complication": ("0305", "1703", "038570"),
    "knee_oa_prosthesis": ("0305", "1801", "190306"),
    "knee_complication": ("0305", "1803", None),
    "cataract_surgery": ("0301", "554", None),
    "cataract_surgery_alt": ("0301", "554", None),
    "nastaar_laser": ("0301", "557", None),
    "breast_lumpectomy": ("0303", "318", "033911"),
    "breast_mastectomy": ("0303", "318", "033930"),
    "breast_radiotherapy": ("0361", None, None),
    "breast_chemotherapy": ("0313", "811", None),
    "ra_outpatient_infliximab": ("0324", "101", "193309"),
    "ra_outpatient_rituximab": ("0324", "101", "193330"),
    "ra_outpatient_abatacept": ("0324", "101", "193335"),
    "ra_outpatient_tocilizumab": ("0324", "101", "193346"),
    "hf_outpatient": ("0320", "302", None),
    "hf_admission": ("0320", "301", None),
    "stroke_admission": ("0330", "1111", None),
    "stroke_followup": ("0330", "1111", None),
    "rehab_clinical": ("0327", None, None),
    "rehab_outpatient": ("0327", None, None),
    "caesarean_gyn": ("0307", None, "037851"),
    "neonatal": ("0316", None, None),
    "cts_intake_plastic": ("0303", "132", None),
    "cts_intake_ortho": ("0305", "1630", None),
    "cts_surgery": ("0303", "132", None),
}
CATARACT_EXTRACTIONS = {"031242", "031268"}
CTS_RELEASES = {"038340", "038341"}
CMC1_SURGERY = {"038299", "038350"}
KNEE_REVISIONS = {"038664", "038665", "038666"}

ENTRY_FIELDS = {"specialism", "diagnosis", "product", "care_type", "clinical", "price_eur", "activities", "days"}
OPTIONAL_FIELDS = {"valid_from_year", "valid_to_year"}
BACKGROUND_FIELDS = {"age_min", "age_max", "sex", "weight"}
BACKGROUND_SPECIALISMS = {
    "0310",
    "0302",
    "0313",
    "0320",
    "0322",
    "0318",
    "0306",
    "0307",
    "0316",
    "0330",
    "0305",
    "0303",
    "0301",
    "0304",
    "0324",
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys (plain PyYAML keeps the last one)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _load_catalogue() -> dict:
    with CATALOGUE.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_UniqueKeyLoader)


CATALOGUE_DATA = _load_catalogue()
ENTRIES = [("products", key, entry) for key, entry in CATALOGUE_DATA["products"].items()] + [
    ("background", key, entry) for key, entry in CATALOGUE_DATA["background"].items()
]


# --------------------------------------------------------------------------- validity helpers
def _nza(name: str) -> pl.DataFrame:
    return reference.table(f"nza/{name}.parquet")


def _covers(rows: pl.DataFrame, start: dt.date, end: dt.date) -> bool:
    """True when the union of the rows' [valid_from, valid_to] periods covers [start, end] daily."""
    cursor = start
    periods = sorted(zip(rows["valid_from"].to_list(), rows["valid_to"].to_list()), key=lambda p: p[0])
    for valid_from, valid_to in periods:
        if valid_from > cursor:
            return False  # a gap before this period (periods are sorted by start)
        if valid_to is None:
            return True
        if valid_to >= cursor:
            cursor = valid_to + dt.timedelta(days=1)
            if cursor > end:
                return True
    return cursor > end


def _span(entry: dict) -> tuple[dt.date, dt.date]:
    start = dt.date(entry.get("valid_from_year", SPAN_START_YEAR), 1, 1)
    end = dt.date(entry["valid_to_year"], 12, 31) if "valid_to_year" in entry else SPAN_END
    return start, end


def _specialism_rows(code: str) -> pl.DataFrame:
    return _nza("specialisms").filter(pl.col("specialism_cd") == code)


def _diagnosis_rows(specialism: str, code: str) -> pl.DataFrame:
    return _nza("diagnoses").filter((pl.col("specialism_cd") == specialism) & (pl.col("diagnosis_cd") == code))


def _care_type_rows(specialism: str, code: str) -> pl.DataFrame:
    return _nza("care_types").filter((pl.col("specialism_cd") == specialism) & (pl.col("care_type_cd") == code))


def _product_rows(code: str) -> pl.DataFrame:
    return _nza("products").filter(pl.col("product_cd") == code)


def _activity_rows(code: str) -> pl.DataFrame:
    """Validity rows of an activity as the contract sees it: the NZa table plus zorgpad's documented
    extensions (the RA add-on codes after 2016)."""
    return load_contract().code_lists["nza_activity"].frame().filter(pl.col("activity_cd") == code)


def _is_addon(code: str) -> bool:
    rows = _nza("activities").filter(pl.col("activity_cd") == code)
    return (rows["care_profile_class_cd"] == ADDON_CLASS).any()


def _entry_codes(entry: dict) -> list[tuple[str, str, pl.DataFrame]]:
    """(kind, code, reference rows) for every code of an entry."""
    spec = entry["specialism"]
    codes = [
        ("specialism", spec, _specialism_rows(spec)),
        ("diagnosis", f"{spec}/{entry['diagnosis']}", _diagnosis_rows(spec, entry["diagnosis"])),
        ("care type", f"{spec}/{entry['care_type']}", _care_type_rows(spec, entry["care_type"])),
        ("product", entry["product"], _product_rows(entry["product"])),
    ]
    codes += [("activity", act[0], _activity_rows(act[0])) for act in entry["activities"]]
    return codes


def _id(param) -> str:
    section, key, _ = param
    return f"{section}.{key}"


# ------------------------------------------------------------------------------- the tests
def test_catalogue_has_products_and_background():
    assert set(CATALOGUE_DATA) == {"products", "background"}
    assert isinstance(CATALOGUE_DATA["products"], dict) and CATALOGUE_DATA["products"]
    assert isinstance(CATALOGUE_DATA["background"], dict) and CATALOGUE_DATA["background"]


def test_required_product_keys_present():
    missing = REQUIRED_PRODUCT_KEYS - set(CATALOGUE_DATA["products"])
    assert not missing, f"catalogue lacks required products: {sorted(missing)}"


def test_keys_unique_across_sections():
    overlap = set(CATALOGUE_DATA["products"]) & set(CATALOGUE_DATA["background"])
    assert not overlap, f"keys used in both products and background: {sorted(overlap)}"


@pytest.mark.parametrize("param", ENTRIES, ids=_id)
def test_entry_structure(param):
    section, key, entry = param
    fields = set(entry)
    expected = ENTRY_FIELDS | (BACKGROUND_FIELDS if section == "background" else set())
    assert expected <= fields, f"{key}: missing fields {sorted(expected - fields)}"
    unknown = fields - expected - OPTIONAL_FIELDS
    assert not unknown, f"{key}: unknown fields {sorted(unknown)}"
    for name in ("specialism", "diagnosis", "product", "care_type"):
        assert isinstance(entry[name], str), f"{key}: {name} must be a quoted string"
    assert len(entry["specialism"]) == 4 and entry["specialism"].isdigit(), key
    assert len(entry["product"]) == 9 and entry["product"].isdigit(), f"{key}: product is 9 digits"
    assert isinstance(entry["clinical"], bool), key
    assert isinstance(entry["price_eur"], (int, float)) and entry["price_eur"] > 0, f"{key}: price"
    assert isinstance(entry["days"], int) and entry["days"] > 0, f"{key}: days"
    assert entry["activities"], f"{key}: no activities"
    for act in entry["activities"]:
        assert isinstance(act, list) and len(act) in (2, 3), f"{key}: activity {act!r}"
        code, quantity = act[0], act[1]
        assert isinstance(code, str) and len(code) == 6 and code.isdigit(), f"{key}: {act!r}"
        assert isinstance(quantity, int) and quantity >= 0, f"{key}: {act!r}"
        if quantity == 0:
            assert code in CARE_DAY_ACTIVITIES, f"{key}: quantity 0 is only for care days, {act!r}"
        if len(act) == 3:
            assert isinstance(act[2], (int, float)) and act[2] > 0, f"{key}: addon price {act!r}"
    codes = [act[0] for act in entry["activities"]]
    assert len(codes) == len(set(codes)), f"{key}: an activity is listed twice"
    start_year = entry.get("valid_from_year", SPAN_START_YEAR)
    assert SPAN_START_YEAR <= start_year <= LATEST_ALLOWED_START_YEAR, f"{key}: valid_from_year"
    if section == "background":
        assert 0 <= entry["age_min"] <= entry["age_max"] <= 110, f"{key}: ages"
        assert entry["sex"] in {"any", "M", "V"}, f"{key}: sex"
        assert isinstance(entry["weight"], (int, float)) and entry["weight"] > 0, f"{key}: weight"


@pytest.mark.parametrize("param", ENTRIES, ids=_id)
def test_entry_codes_valid_on_every_day(param):
    """Specialism, diagnosis and care type within it, product and activities cover the span."""
    _, key, entry = param
    start, end = _span(entry)
    invalid = [
        f"{kind} {code}" for kind, code, rows in _entry_codes(entry) if rows.is_empty() or not _covers(rows, start, end)
    ]
    assert not invalid, f"{key}: not valid on every day {start}..{end}: {invalid}"


@pytest.mark.parametrize("param", ENTRIES, ids=_id)
def test_valid_from_year_is_needed(param):
    """An entry claims a later start only when one of its codes really starts later than 2013."""
    _, key, entry = param
    if "valid_from_year" not in entry:
        return
    _, end = _span(entry)
    earlier = dt.date(entry["valid_from_year"] - 1, 1, 1)
    assert any(not _covers(rows, earlier, end) for _, _, rows in _entry_codes(entry)), (
        f"{key}: every code is valid from {earlier.year}; lower or drop valid_from_year"
    )


@pytest.mark.parametrize("param", ENTRIES, ids=_id)
def test_addon_activities_carry_a_price_and_valid_to_year_only_for_addons(param):
    _, key, entry = param
    for act in entry["activities"]:
        assert (len(act) == 3) == _is_addon(act[0]), (
            f"{key}: {act!r} - add-on drugs (care profile class {ADDON_CLASS}) and only they carry addon_price_eur"
        )
    if "valid_to_year" in entry:
        addons = [act[0] for act in entry["activities"] if _is_addon(act[0])]
        assert addons, f"{key}: valid_to_year is reserved for entries with add-on drugs"
        # The truncation must be necessary: some add-on code ends before the next year starts.
        following = dt.date(entry["valid_to_year"] + 1, 1, 1)
        assert any(not _covers(_activity_rows(code), following, following) for code in addons), (
            f"{key}: its add-on codes are valid in {following.year}; raise or drop valid_to_year"
        )


def test_no_addon_code_valid_after_2016_in_reference():
    """The reason for the contract's add-on extension list. When a reference update brings add-on
    codes valid after 2016, this fails: drop code_lists/nza_activity_extensions.csv."""
    addons = _nza("activities").filter(pl.col("care_profile_class_cd") == ADDON_CLASS)
    later = addons.filter(pl.col("valid_to").is_null() | (pl.col("valid_to") > dt.date(2016, 12, 31)))
    assert later.is_empty(), later.select("activity_cd", "valid_from", "valid_to").head(10)


@pytest.mark.parametrize("param", ENTRIES, ids=_id)
def test_days_within_care_type_maximum(param):
    """Subtraject length never exceeds the care type's maximum duration on any date from 2015 on."""
    _, key, entry = param
    start, end = _span(entry)
    start = max(start, MAX_DURATION_FROM)
    rows = _care_type_rows(entry["specialism"], entry["care_type"]).filter(
        (pl.col("valid_from") <= end) & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= start))
    )
    assert not rows.is_empty(), key
    maximum = rows["max_duration_days"].min()
    assert entry["days"] <= maximum, f"{key}: days {entry['days']} > care type maximum {maximum}"


@pytest.mark.parametrize("param", ENTRIES, ids=_id)
def test_clinical_entries_register_care_days(param):
    _, key, entry = param
    care_days = [act for act in entry["activities"] if act[0] in CARE_DAY_ACTIVITIES]
    if entry["clinical"]:
        assert care_days and all(act[1] == 0 for act in care_days), (
            f"{key}: a clinical entry lists its care-day activity with quantity 0"
        )
    else:
        assert not care_days, f"{key}: an outpatient entry has care days"


def test_required_codes_used_by_the_bundles():
    products = CATALOGUE_DATA["products"]
    for key, (specialism, diagnosis, activity) in REQUIRED_CODES.items():
        entry = products[key]
        assert entry["specialism"] == specialism, key
        if diagnosis is not None:
            assert entry["diagnosis"] == diagnosis, key
        if activity is not None:
            assert activity in {act[0] for act in entry["activities"]}, f"{key}: lacks {activity}"
    for key in (
        "hip_oa_prosthesis",
        "hip_complication",
        "knee_oa_prosthesis",
        "knee_complication",
        "stroke_admission",
        "hf_admission",
        "rehab_clinical",
        "geriatric_rehab",
        "breast_mastectomy",
        "partus_gyn",
        "caesarean_gyn",
        "neonatal",
    ):
        assert products[key]["clinical"], f"{key} must be clinical"
    for key in (
        "hip_oa_outpatient",
        "knee_oa_outpatient",
        "cataract_outpatient",
        "breast_diagnostics",
        "ra_outpatient",
        "hf_outpatient",
        "stroke_followup",
        "rehab_outpatient",
        "pregnancy_gyn",
        "cts_intake_plastic",
        "cts_intake_ortho",
        "cmc1_intake",
    ):
        assert not products[key]["clinical"], f"{key} must be outpatient"
    for key in ("hip_oa_followup", "knee_oa_followup", "breast_followup"):
        assert products[key]["care_type"] == "21", f"{key} is a follow-up (vervolg) subtraject"
    activities = {key: {act[0] for act in entry["activities"]} for key, entry in products.items()}
    assert activities["knee_complication"] & KNEE_REVISIONS
    assert activities["cataract_surgery"] & CATARACT_EXTRACTIONS
    assert activities["cataract_surgery_alt"] & CATARACT_EXTRACTIONS
    assert activities["cataract_surgery"] != activities["cataract_surgery_alt"]
    assert activities["cts_surgery"] & CTS_RELEASES
    assert activities["cmc1_surgery"] & CMC1_SURGERY
    assert products["cmc1_surgery"]["specialism"] == "0304"
    assert products["cmc1_surgery"]["diagnosis"] in {"361", "364"}
    assert products["cmc1_intake"]["diagnosis"] in {"361", "364"}
    # product group 998418 "Geriatrische revalidatiezorg"
    assert products["geriatric_rehab"]["product"].startswith("998418")


def test_background_mix():
    background = CATALOGUE_DATA["background"]
    assert 25 <= len(background) <= 35
    specialisms = {entry["specialism"] for entry in background.values()}
    assert len(specialisms) >= 15
    assert BACKGROUND_SPECIALISMS <= specialisms, sorted(BACKGROUND_SPECIALISMS - specialisms)
    costly = [e for e in background.values() if e["clinical"] and e["price_eur"] >= 5000]
    assert costly, "no expensive clinical tail"
    cheap = [e for e in background.values() if not e["clinical"] and e["price_eur"] <= 500]
    assert len(cheap) >= 10, "too few cheap outpatient products"
    # The frequent products are the cheap outpatient ones.
    weight = sum(e["weight"] for e in background.values())
    assert sum(e["weight"] for e in cheap) / weight > 0.5


def test_validity_check_detects_gaps_and_late_starts():
    """The coverage helper itself: gaps, late starts, early ends and open ends."""

    def rows(*periods):
        return pl.DataFrame(
            {"valid_from": [p[0] for p in periods], "valid_to": [p[1] for p in periods]},
            schema={"valid_from": pl.Date, "valid_to": pl.Date},
        )

    d = dt.date
    span = (d(2013, 1, 1), SPAN_END)
    assert _covers(rows((d(2012, 1, 1), None)), *span)
    assert _covers(rows((d(2013, 1, 1), d(2014, 5, 31)), (d(2014, 6, 1), None)), *span)
    assert not _covers(rows((d(2014, 1, 1), None)), *span)  # starts late
    assert not _covers(rows((d(2012, 1, 1), d(2016, 12, 31))), *span)  # ends early
    assert not _covers(rows((d(2012, 1, 1), d(2013, 12, 31)), (d(2014, 2, 1), None)), *span)  # gap
    assert _covers(rows((d(2016, 1, 1), None), (d(2012, 1, 1), d(2015, 12, 31))), *span)  # unsorted
    # A real code that starts in 2014: first outpatient visit 190060.
    assert not _covers(_activity_rows("190060"), *span)
    assert _covers(_activity_rows("190060"), d(2014, 1, 1), SPAN_END)
