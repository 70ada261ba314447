"""The declared columns of a DiD panel: the fixed ones (``tables/panel.yml``) and those of the spec
(insurer, outcomes, adjusted outcomes, covariates), with the meaning of each, from which the panel's
schema, its writing (``transforms.output_tables``) and the ``dictionary.md`` beside it are derived."""

from __future__ import annotations

from pathlib import Path

from transforms.bundles import load_bundles
from transforms.did_panel.spec import PanelSpec
from transforms.episodes.docs import column_text
from transforms.output_tables import OutputColumn, OutputTable, load_tables

TABLES_DIR = Path(__file__).resolve().parent / "tables"
_TABLES = load_tables(str(TABLES_DIR))
BASE: OutputTable = _TABLES["panel"]
ATTRITION: OutputTable = _TABLES["attrition"]
#: The fixed columns before which the spec's columns go.
SPEC_COLUMNS_BEFORE = "weight"

VOLUME_TEXT = {
    "volume": "episodes anchored at the provider in the period (0 when none)",
    "log_volume": "natural log of volume (null when 0): its ATT is the relative change in volume",
}
INSURER_COLUMNS = (
    OutputColumn(name="insurer_uzovi", type="string", description="the patient's insurer on the anchor date (UZOVI)"),
    OutputColumn(
        name="contracting_insurer",
        type="bool",
        description="that insurer signed the provider's contract (or the contract names all insurers); "
        "false: another insurer's patient of a treated provider (free-riding); null: provider "
        "without a contract in the panel",
    ),
)


def describe(column: str, spec: PanelSpec) -> str:
    """The meaning of an outcome or covariate column in this panel."""
    if spec.unit == "gemeente_year":
        from transforms.did_panel import gemeente

        return gemeente.describe(column)
    if column in VOLUME_TEXT:
        return VOLUME_TEXT[column]
    text = None
    for bundle in spec.bundles:
        for outcome in load_bundles()[bundle].outcomes:
            if outcome.name == column:
                text = outcome.description
    text = text or column_text(column)
    if column == "sex":
        text = "sex: 1 = V (female), 0 = M"
    if spec.unit == "episode_quarter" and column in spec.outcomes:
        return f"{text}, of the lines with service start in the quarter"
    if spec.unit == "provider_period":
        if column in spec.covariates:
            return f"{text}: mean over the provider's episodes before treatment (fixed)"
        return f"{text}: mean over the period's episodes (null when none)"
    if column in spec.covariates:
        return f"{text} (measured before the anchor)"
    return text


def panel_table(spec: PanelSpec, several_insurers: bool, schemas: dict | None = None) -> OutputTable:
    """The declared panel table of ``spec``."""
    fixed = list(BASE.columns)
    cut = [c.name for c in fixed].index(SPEC_COLUMNS_BEFORE)
    added: list[OutputColumn] = []
    if several_insurers and spec.unit in ("episode", "episode_quarter"):
        added += INSURER_COLUMNS
    added += [OutputColumn(name=o, type="float64", description=describe(o, spec)) for o in spec.outcomes]
    if spec.adjust:
        added += [
            OutputColumn(
                name=f"{o}_adjusted",
                type="float64",
                description=f"{o} / completion_{'cents' if o.endswith('_cents') else 'lines'} of the "
                "period (what it will be once declarations are complete)",
            )
            for o in spec.outcomes
        ]
    added += [OutputColumn(name=c, type="float64", description=describe(c, spec)) for c in spec.covariates]
    return BASE.model_copy(update={"columns": tuple(fixed[:cut] + added + fixed[cut:])})


def dictionary(spec: PanelSpec, table: OutputTable, several_insurers: bool) -> str:
    """``dictionary.md``: what the folder holds and what every column means."""
    lines = [
        f"# Panel `{spec.name}`",
        "",
        f"Unit `{spec.unit}`, period `{spec.period}`, years {spec.years[0]}-{spec.years[1]}, bundles "
        f"{', '.join(spec.bundles)}; control group for estimation: {spec.control.replace('_', ' ')}; "
        f"cluster standard errors by `{spec.cluster}`. Written by `zorgpad panel build` (reference: "
        "docs/did-panels.md).",
        "",
        "| file | what |",
        "|---|---|",
        "| `panel/period_label=<p>/part-0.parquet` | the panel, Hive-partitioned by period (never treated: cohort 0) |",
        "| `adapters/did.parquet` | the same rows in one file, for R `did`, csdid and pyfixest (cohort 0 = never treated; `unit_num` as the numeric id) |",
        "| `adapters/differences.parquet` | the same rows for `differences` (never treated: cohort NaN) |",
        "| `attrition/part-0.parquet` | what was left out and why |",
        "| `spec.yaml` | the spec with every default filled in (its hash is `spec_hash` in the manifest) |",
        "| `manifest.json` | inputs, spec hash, rows, cohorts, content hash, timing |",
        "",
    ]
    lines += table.markdown()
    lines += ATTRITION.markdown()
    return "\n".join(lines)


__all__ = ["ATTRITION", "BASE", "describe", "dictionary", "panel_table"]
