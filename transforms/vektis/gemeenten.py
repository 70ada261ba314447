"""Map the gemeente names in the Vektis files to CBS gemeente codes (GMxxxx, 2020 division).

Vektis names its cells by an upper-case municipality name without accents or punctuation
(``S GRAVENHAGE``, ``SUDWEST-FRYSLAN``, ``NUENEN CA``). The bundled CBS table
``cbs/vektis_gemeente_names.parquet`` maps the 355 names of the 2020 division to their GM code.

Names outside that division do not map, and that is a finding, not an error:
- older names of municipalities merged before 2020 (the first 2015 release still uses the 2015
  division: ``AALBURG``, ``LEEK``, ``HAREN`` ...);
- newer names of municipalities merged after 2020 (``EEMSDELTA`` 2021, ``DIJK EN WAARD``,
  ``LAND VAN CUIJK``, ``MAASHORST`` 2022, ``VOORNE AAN ZEE`` 2023), which the later files apply
  retroactively.
Their rows keep ``gemeente_code`` null and are listed by ``unmapped_gemeenten``; they are never
dropped. The CBS residence table (woonplaats -> gemeente) is deliberately *not* used to guess a
successor: a former municipality is not the same as the residence with its name (``HAREN`` is a
residence in Oss as well as a former municipality near Groningen, ``WINSUM`` is a residence in two
municipalities), and a guessed code would put people in the wrong place without anyone noticing.

Variant spellings that *are* 2020 municipalities (``NOORD BEVELAND`` for ``NOORD-BEVELAND``) are
matched on a normalised key: upper case, accents removed, every run of non-letters a single space.
"""

from __future__ import annotations

import unicodedata

import polars as pl

import reference

MATCH_EXACT = "vektis_name"  # the name is in the CBS Vektis-name table as written
MATCH_NORMALISED = "normalised_name"  # a spelling variant of a name in that table or of a CBS name
MATCH_NONE = "unmapped"


def normalise_gemeente_name(name: str) -> str:
    """Spelling-insensitive key: ``'s-Gravenhage`` and ``S GRAVENHAGE`` both give ``S GRAVENHAGE``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = "".join(ch if ch.isalnum() else " " for ch in ascii_name.upper())
    return " ".join(cleaned.split())


def _normalised_lookup() -> dict[str, str]:
    """Normalised name -> GM code from the Vektis-name table and the CBS 2020 gemeente names."""
    vektis_names = reference.table("cbs/vektis_gemeente_names.parquet")
    cbs = reference.table("cbs/gemeenten_2020.parquet")
    lookup: dict[str, str] = {}
    for name, code in [
        *zip(cbs["gemeente_name"], cbs["gemeente_code"], strict=True),
        *zip(vektis_names["vektis_name"], vektis_names["gemeente_code"], strict=True),
    ]:
        key = normalise_gemeente_name(name)
        if lookup.get(key, code) != code:
            raise ValueError(f"gemeente name key {key!r} maps to both {lookup[key]} and {code}")
        lookup[key] = code
    return lookup


def map_gemeente_names(names: pl.Series | list[str]) -> pl.DataFrame:
    """GM code for every distinct Vektis gemeente name: (gemeente_vektis, gemeente_code, match).

    ``match`` says how the code was found (``vektis_name``, ``normalised_name``) or ``unmapped``
    (then ``gemeente_code`` is null).
    """
    vektis_names = reference.table("cbs/vektis_gemeente_names.parquet")
    cbs_codes = set(reference.table("cbs/gemeenten_2020.parquet")["gemeente_code"])
    # Only codes that exist in the CBS 2020 division count; the name table is checked, not trusted.
    exact = {
        name: code
        for name, code in zip(vektis_names["vektis_name"], vektis_names["gemeente_code"], strict=True)
        if code in cbs_codes
    }
    normalised = _normalised_lookup()
    rows: list[tuple[str, str | None, str]] = []
    for name in sorted({n for n in names if n is not None}):
        if name in exact:
            rows.append((name, exact[name], MATCH_EXACT))
        elif (code := normalised.get(normalise_gemeente_name(name))) is not None:
            rows.append((name, code, MATCH_NORMALISED))
        else:
            rows.append((name, None, MATCH_NONE))
    return pl.DataFrame(
        rows,
        schema={"gemeente_vektis": pl.String, "gemeente_code": pl.String, "match": pl.String},
        orient="row",
    )
