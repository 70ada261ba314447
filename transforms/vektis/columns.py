"""Every column the Vektis open-data files have ever had, and what it means in the harmonised table.

Vektis publishes the "Open Databestand Zorgverzekeringswet per gemeente" once a year, and every
year the header drifts: UPPER CASE until 2018, lower case from 2019, some names cut to 32
characters in 2023, and cost categories that are split, renamed or added as Dutch health-care
financing changes (second-line GGZ becomes specialist + basic GGZ in 2014, district nursing enters
the Zvw in 2015, the GGZ "zorgprestatiemodel" replaces the GGZ columns in 2022, ...).

This module is the single place where that drift is resolved. Each original column maps to one
canonical ``measure`` (one per original category, so no information is merged away) and one coarse
``category`` that is stable over all years, so that a 2011 number and a 2023 number can be compared.

An unknown column is an error, never a silent drop: a new year's file with a new cost category
must make the harmonisation fail with the column's name, so a person decides where it belongs.
"""

from __future__ import annotations

from dataclasses import dataclass

# The key columns that identify a cell (sex x age class x gemeente); they are not measures.
SEX_COLUMN = "GESLACHT"
AGE_CLASS_COLUMN = "LEEFTIJDSKLASSE"
GEMEENTE_COLUMN = "GEMEENTENAAM"
KEY_COLUMNS: tuple[str, ...] = (SEX_COLUMN, AGE_CLASS_COLUMN, GEMEENTE_COLUMN)

# Coarse categories, stable across 2011-2023, in reporting order.
POPULATION = "population"
CATEGORIES: tuple[str, ...] = (
    POPULATION,
    "msz",
    "pharmacy",
    "gp",
    "ggz",
    "paramedical",
    "maternity",
    "aids",
    "dental",
    "transport",
    "abroad",
    "first_line_support",
    "rehabilitation_nursing",
    "other",
)

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    POPULATION: "insured persons and insured-years (denominators, not money)",
    "msz": "medical-specialist care (hospital / ZBC care, DBC-zorgproducten)",
    "pharmacy": "pharmacy (farmacie)",
    "gp": "GP care (huisartsenzorg): registration fees, consults, multidisciplinary care, other",
    "ggz": "mental health care (GGZ) in all its successive forms, incl. first-line psychology",
    "paramedical": "physiotherapy and other paramedical care",
    "maternity": "maternity care (kraamzorg), midwife care, integrated birth care",
    "aids": "medical aids and devices (hulpmiddelen)",
    "dental": "dental care (mondzorg)",
    "transport": "patient transport, seated and ambulance (ziekenvervoer)",
    "abroad": "care received abroad (grensoverschrijdende zorg)",
    "first_line_support": "first-line support (eerstelijns ondersteuning)",
    "rehabilitation_nursing": (
        "geriatric rehabilitation, district nursing, first-line stay and GZSP: care that moved "
        "into the Zvw from the AWBZ/Wlz (2013, 2015, 2017, 2020), so this category grows by scope"
    ),
    "other": "other Zvw costs (kosten overig)",
}


@dataclass(frozen=True)
class VektisColumn:
    """What one original Vektis column means in the harmonised long table."""

    source_name: str  # canonical upper-case spelling, as in the files up to 2018
    measure: str  # canonical snake_case measure name, one per original category
    category: str  # coarse category, stable across all years
    description: str  # English description of the original Dutch category


def _col(source_name: str, measure: str, category: str, description: str) -> VektisColumn:
    if category not in CATEGORIES:
        raise ValueError(f"category {category!r} of {source_name} is not one of {CATEGORIES}")
    return VektisColumn(source_name, measure, category, description)


# Every measure column that occurs in any Vektis file 2011-2023, keyed by its upper-case name.
MEASURE_COLUMNS: tuple[VektisColumn, ...] = (
    _col("AANTAL_BSN", "insured", POPULATION, "number of insured persons (distinct BSN)"),
    _col("AANTAL_VERZEKERDEJAREN", "insured_years", POPULATION, "insured-years (person-years)"),
    _col("KOSTEN_MEDISCH_SPECIALISTISCHE_ZORG", "cost_msz", "msz", "medical-specialist care"),
    _col("KOSTEN_FARMACIE", "cost_pharmacy", "pharmacy", "pharmacy"),
    _col("KOSTEN_HUISARTS_INSCHRIJFTARIEF", "cost_gp_registration", "gp", "GP registration fee"),
    _col("KOSTEN_HUISARTS_CONSULT", "cost_gp_consult", "gp", "GP consults"),
    _col("KOSTEN_HUISARTS_MDZ", "cost_gp_mdz", "gp", "GP multidisciplinary (chain) care, from 2015"),
    _col("KOSTEN_HUISARTS_OVERIG", "cost_gp_other", "gp", "other GP care"),
    _col("KOSTEN_TWEEDELIJNS_GGZ", "cost_ggz_second_line", "ggz", "second-line GGZ, 2011-2013"),
    _col(
        "KOSTEN_EERSTELIJNS_PSYCHOLOGISCHE_ZORG",
        "cost_ggz_first_line_psychology",
        "ggz",
        "first-line psychological care, 2011-2013 (succeeded by basic GGZ)",
    ),
    _col("KOSTEN_SPECIALISTISCHE_GGZ", "cost_ggz_specialist", "ggz", "specialist GGZ, 2014-2021"),
    _col(
        "KOSTEN_GENERALISTISCHE_BASIS_GGZ",
        "cost_ggz_basic",
        "ggz",
        "generalist basic GGZ, 2014-2021",
    ),
    _col("KOSTEN_LANGDURIGE_GGZ", "cost_ggz_long_term", "ggz", "long-term GGZ, 2015-2021"),
    _col("KOSTEN_INNOVATIEGELDEN_GGZ", "cost_ggz_innovation", "ggz", "GGZ innovation funds, 2021+"),
    _col(
        "KOSTEN_CONSULTEN_GGZ",
        "cost_ggz_consults",
        "ggz",
        "GGZ consults (zorgprestatiemodel), 2022+",
    ),
    _col(
        "KOSTEN_INTRAMURAAL_VERBLIJF_GGZ",
        "cost_ggz_inpatient_stay",
        "ggz",
        "GGZ inpatient stay (zorgprestatiemodel), 2022+",
    ),
    _col(
        "KOSTEN_OVERIGE_PRESTATIES_GGZ",
        "cost_ggz_other_services",
        "ggz",
        "other GGZ services (zorgprestatiemodel), 2022+",
    ),
    _col(
        "KOSTEN_PARAMEDISCHE_ZORG_FYSIOTHERAPIE",
        "cost_physiotherapy",
        "paramedical",
        "physiotherapy",
    ),
    _col(
        "KOSTEN_PARAMEDISCHE_ZORG_OVERIG",
        "cost_paramedical_other",
        "paramedical",
        "other paramedical care",
    ),
    _col("KOSTEN_KRAAMZORG", "cost_maternity_care", "maternity", "maternity home care (kraamzorg)"),
    _col(
        "KOSTEN_VERLOSKUNDIGE_ZORG",
        "cost_midwife",
        "maternity",
        "midwife care (verloskundige zorg)",
    ),
    _col(
        "KOSTEN_INTEGRALE_GEBOORTEZORG",
        "cost_integrated_birth_care",
        "maternity",
        "integrated birth care (integrale geboortezorg), 2021+",
    ),
    _col("KOSTEN_HULPMIDDELEN", "cost_aids", "aids", "medical aids and devices"),
    _col("KOSTEN_MONDZORG", "cost_dental", "dental", "dental care"),
    _col(
        "KOSTEN_ZIEKENVERVOER_ZITTEND",
        "cost_transport_seated",
        "transport",
        "seated patient transport",
    ),
    _col(
        "KOSTEN_ZIEKENVERVOER_LIGGEND",
        "cost_transport_ambulance",
        "transport",
        "lying patient transport (ambulance)",
    ),
    _col("KOSTEN_GRENSOVERSCHRIJDENDE_ZORG", "cost_abroad", "abroad", "care abroad"),
    _col(
        "KOSTEN_EERSTELIJNS_ONDERSTEUNING",
        "cost_first_line_support",
        "first_line_support",
        "first-line support",
    ),
    _col(
        "KOSTEN_GERIATRISCHE_REVALIDATIEZORG",
        "cost_geriatric_rehabilitation",
        "rehabilitation_nursing",
        "geriatric rehabilitation care, 2013+",
    ),
    _col(
        "KOSTEN_VERPLEGING_EN_VERZORGING",
        "cost_nursing_care",
        "rehabilitation_nursing",
        "district nursing and care (wijkverpleging), 2015+",
    ),
    _col(
        "KOSTEN_EERSTELIJNSVERBLIJF",
        "cost_first_line_stay",
        "rehabilitation_nursing",
        "first-line stay (eerstelijnsverblijf), 2018+",
    ),
    _col(
        "KOSTEN_GZSP",
        "cost_gzsp",
        "rehabilitation_nursing",
        "specialised care for specific patient groups (GZSP: elderly-care and ID physicians), 2020+",
    ),
    _col("KOSTEN_OVERIG", "cost_other", "other", "other Zvw costs"),
)

# Column names Vektis cut to 32 characters (2023 files), mapped explicitly to their full name.
# Listed one by one rather than matched by prefix, so a new truncated name is an error, not a guess.
TRUNCATED_NAMES: dict[str, str] = {
    "KOSTEN_MEDISCH_SPECIALISTISCHE_Z": "KOSTEN_MEDISCH_SPECIALISTISCHE_ZORG",
    "KOSTEN_PARAMEDISCHE_ZORG_FYSIOTH": "KOSTEN_PARAMEDISCHE_ZORG_FYSIOTHERAPIE",
    "KOSTEN_GERIATRISCHE_REVALIDATIEZ": "KOSTEN_GERIATRISCHE_REVALIDATIEZORG",
}

MEASURES_BY_SOURCE: dict[str, VektisColumn] = {c.source_name: c for c in MEASURE_COLUMNS}
MEASURE_NAMES: tuple[str, ...] = tuple(c.measure for c in MEASURE_COLUMNS)
CATEGORY_BY_MEASURE: dict[str, str] = {c.measure: c.category for c in MEASURE_COLUMNS}


def _check_mapping() -> None:
    """The mapping itself must be unambiguous; checked at import so a bad edit cannot ship."""
    if len(set(MEASURE_NAMES)) != len(MEASURE_NAMES):
        raise ValueError("two Vektis columns map to the same measure")
    for short, full in TRUNCATED_NAMES.items():
        if full not in MEASURES_BY_SOURCE or not full.startswith(short) or len(short) != 32:
            raise ValueError(f"truncated Vektis name {short} is not a 32-character prefix of {full}")


_check_mapping()


class UnknownVektisColumnError(ValueError):
    """A Vektis file has a column this mapping does not know: decide its measure and category."""


def canonical_source_name(column: str) -> str:
    """Upper-case, un-truncated name of an original column (``kosten_gzsp`` -> ``KOSTEN_GZSP``)."""
    upper = column.strip().upper()
    return TRUNCATED_NAMES.get(upper, upper)


def is_key_column(column: str) -> bool:
    """True for the sex / age class / gemeente columns that identify a cell."""
    return canonical_source_name(column) in KEY_COLUMNS


def measure_for_column(column: str, *, file_label: str = "a Vektis file") -> VektisColumn:
    """The measure of one original column; raises :class:`UnknownVektisColumnError` if unmapped."""
    spec = MEASURES_BY_SOURCE.get(canonical_source_name(column))
    if spec is None:
        raise UnknownVektisColumnError(
            f"unknown column {column!r} in {file_label}: add it to "
            "transforms/vektis/columns.py MEASURE_COLUMNS with a measure and category "
            "(columns are never dropped silently)"
        )
    return spec


def check_header(columns: list[str], *, file_label: str) -> list[tuple[str, VektisColumn]]:
    """Map a whole file header; every column must be a key column or a known measure.

    Reports *all* unknown columns at once, the key columns must all be present, and no two
    columns may map to the same measure (that would double count money).
    """
    unknown = [c for c in columns if not is_key_column(c) and canonical_source_name(c) not in MEASURES_BY_SOURCE]
    if unknown:
        raise UnknownVektisColumnError(
            f"unknown column(s) {unknown} in {file_label}: add them to "
            "transforms/vektis/columns.py MEASURE_COLUMNS with a measure and category "
            "(columns are never dropped silently)"
        )
    missing_keys = [k for k in KEY_COLUMNS if k not in {canonical_source_name(c) for c in columns}]
    if missing_keys:
        raise ValueError(f"{file_label} lacks the key column(s) {missing_keys}")
    mapped = [(c, measure_for_column(c, file_label=file_label)) for c in columns if not is_key_column(c)]
    measures = [spec.measure for _, spec in mapped]
    duplicated = sorted({m for m in measures if measures.count(m) > 1})
    if duplicated:
        raise ValueError(f"{file_label} has several columns for measure(s) {duplicated}")
    return mapped
