"""Vektis open data (Zvw costs per gemeente, 2011-2023) harmonised into one long table.

``harmonise_vektis()`` is the entry point; ``columns`` holds the column mapping and ``gemeenten``
the gemeente-name mapping. Pure polars: the Prefect flow lives in ``flows/vektis_flow.py``.
"""

from transforms.vektis.columns import (
    CATEGORIES,
    MEASURE_COLUMNS,
    UnknownVektisColumnError,
    VektisColumn,
)
from transforms.vektis.gemeenten import map_gemeente_names
from transforms.vektis.harmonise import (
    AGE_CLASSES,
    LONG_SCHEMA,
    VektisRelease,
    available_releases,
    calibration_cells,
    column_mapping,
    gemeente_population,
    harmonise_file,
    harmonise_vektis,
    national_totals,
    unmapped_gemeenten,
)


def __getattr__(name: str):
    """The docs generator is imported lazily, so ``python -m transforms.vektis.docs`` runs cleanly."""
    if name in ("vektis_mapping_markdown", "vektis_docs_markdown", "write_vektis_docs"):
        from transforms.vektis import docs

        return getattr(docs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AGE_CLASSES",
    "CATEGORIES",
    "LONG_SCHEMA",
    "MEASURE_COLUMNS",
    "UnknownVektisColumnError",
    "VektisColumn",
    "VektisRelease",
    "available_releases",
    "calibration_cells",
    "column_mapping",
    "gemeente_population",
    "harmonise_file",
    "harmonise_vektis",
    "map_gemeente_names",
    "national_totals",
    "unmapped_gemeenten",
    "vektis_docs_markdown",
    "vektis_mapping_markdown",
    "write_vektis_docs",
]
