"""Bundled reference data: the conversion is tested on a small real-format sample, and the bundled
files match the manifest written when they were converted."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import polars as pl

import reference
from reference.convert import NZA_TABLES, convert_nza_table


def test_nza_conversion_keeps_leading_zeros_and_types_validity(tmp_path):
    sample = tmp_path / "Diagnosen.csv"
    sample.write_text(
        "SpecialismeCode,DiagnoseCode,DiagnoseOmschrijving,DiagnoseAttribuutCode,ICD10DiagnoseCode,"
        "DiagnoseCluster1,DiagnoseCluster2,DiagnoseCluster3,DiagnoseCluster4,DiagnoseCluster5,DiagnoseCluster6,"
        "BeginDatum,EindDatum,VersieDatum\n"
        "0305,1630,Carpaal tunnel syndroom,0305.1630,G56.0,,,,,,,2014-01-01,2014-12-31,2016-10-04\n"
        "0305,1630,Carpaal tunnel syndroom,0305.1630,G56.0,,,,,,,2015-01-01,,2016-10-04\n"
    )
    out = convert_nza_table(sample, NZA_TABLES["diagnoses"][1])
    assert out["specialism_cd"].to_list() == ["0305", "0305"]
    assert out["valid_from"].to_list() == [date(2014, 1, 1), date(2015, 1, 1)]
    assert out["valid_to"].to_list() == [date(2014, 12, 31), None]


def test_bundled_files_match_their_manifest():
    manifest = json.loads((reference.ROOT / "manifest.json").read_text())
    assert len(manifest) >= 25
    for name, info in manifest.items():
        path = reference.path(name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], name
        assert pl.read_parquet(path).height == info["rows"], name


def test_nothing_reads_the_shared_folder_at_run_time():
    from pathlib import Path

    root = Path(reference.ROOT).parent
    offenders = []
    for py in (
        list(root.glob("transforms/**/*.py"))
        + list(root.glob("flows/**/*.py"))
        + list(root.glob("expectations/**/*.py"))
    ):
        if "../shared" in py.read_text() or "/shared/reference" in py.read_text():
            offenders.append(str(py))
    assert offenders == []
