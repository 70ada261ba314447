"""The options of ``zorgpad did estimate`` and the panel it estimates on: read, checked, renamed.

Why the checks live here and not in the estimator: ``csdid`` (like R ``did``) quietly adapts what it
does not expect -- rows with an empty cohort are dropped (so a panel that codes never treated as
NaN, the ``differences`` convention, loses its whole control group), a cohort after the last period
becomes never treated, a panel without never-treated units gets its last cohort recoded as the
control group, a text outcome fails deep inside patsy. Each of these is a mistake in the panel or
the options far more often than an intention, so it is refused here with one message that names the
option and the column, before any estimate is made.

What passes is a :class:`PreparedPanel`: a pandas frame with internal column names (``zp_...``, so a
column called ``w``, ``C``, ``post`` or ``first.treat`` never collides with csdid's own names or
patsy's formula syntax), unit and cluster identifiers replaced by integer codes (csdid needs
numeric ids; the codes follow the sorted identifiers, so a rerun gives the same codes), and the
counts the report's attrition lines need. No message here ever shows a unit identifier: a unit may
be a patient, and a BSN must not end up in a terminal or a log.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transforms.errors import UserFacingError
from transforms.hashing import file_sha256

#: Internal names of the panel's columns, as csdid sees them.
OUTCOME, PERIOD, UNIT, COHORT, WEIGHT, CLUSTER = (
    "zp_outcome",
    "zp_period",
    "zp_unit",
    "zp_cohort",
    "zp_weight",
    "zp_cluster",
)
CONTROL_GROUPS = {"never_treated": "nevertreated", "not_yet_treated": "notyettreated"}
#: What the ``--fix-weights`` choices are called in csdid / R ``did`` (``none``: csdid's default).
FIX_WEIGHTS = {"none": None, "base_period": "base_period", "first_period": "first_period", "varying": "varying"}
CSV_SUFFIXES = (".csv", ".txt", ".tsv")


class DidInputError(UserFacingError):
    """A panel or an option the estimate cannot be made with: nothing was written."""


class DidOptions(BaseModel):
    """What a user chooses for one estimate (the options of ``zorgpad did estimate``, named as R
    ``did``'s arguments are, in the project's spelling). Checked before anything is read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    y: str = Field(min_length=1)
    t: str = Field(min_length=1)
    id: str | None = None
    g: str = Field(min_length=1)
    x: tuple[str, ...] = ()
    control: Literal["never_treated", "not_yet_treated"] = "never_treated"
    method: Literal["dr", "ipw", "reg"] = "dr"
    cluster: str | None = None
    weights: str | None = None
    repeated_cross_sections: bool = False
    anticipation: int = Field(0, ge=0)
    base_period: Literal["varying", "universal"] = "varying"
    fix_weights: Literal["none", "base_period", "first_period", "varying"] = "none"
    bootstrap: bool = False
    bootstrap_draws: int = Field(999, ge=2)
    seed: int = Field(7, ge=0, lt=2**32)
    never_treated_coding: Literal["zero", "nan"] = "zero"
    skip_missing_cells: bool = False  # R did's aggte(na.rm = TRUE): aggregate over the ATT(g,t) that exist

    @classmethod
    def from_cli(cls, **values: object) -> DidOptions:
        """The options from the command line (``x`` comma-separated), with a one-line error naming
        the option and its allowed values when one is wrong."""
        x = values.pop("x", None)
        if isinstance(x, str):
            parts = [p.strip() for p in x.split(",")]
            if any(not p for p in parts):
                raise DidInputError(f"--x {x!r}: covariates are column names separated by commas, without empty names")
            values["x"] = tuple(parts)
        try:
            options = cls(**{k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "options"
            given = first.get("input")
            if first["type"] == "literal_error":
                allowed = first.get("ctx", {}).get("expected", "").replace("'", "")
                raise DidInputError(f"{name} {given}: unknown choice; it is one of {allowed}") from None
            raise DidInputError(f"{name} {given}: {first['msg'].lower()}") from None
        options.check_combination()
        return options

    def check_combination(self) -> None:
        """Choices that are valid alone but not together (csdid would refuse them mid-way)."""
        named = {
            "--y": self.y,
            "--t": self.t,
            "--g": self.g,
            **({"--id": self.id} if self.id else {}),
            **({"--weights": self.weights} if self.weights else {}),
        }
        seen: dict[str, str] = {}
        for option, column in named.items():
            if column in seen:
                raise DidInputError(f"{seen[column]} and {option} name the same column {column!r}: each needs its own")
            seen[column] = option
        for column in self.x:
            if column in seen and seen[column] != "--weights":
                raise DidInputError(f"--x {column!r} is also {seen[column]}: a covariate must be another column")
        if len(set(self.x)) != len(self.x):
            raise DidInputError(f"--x {','.join(self.x)} names a covariate twice")
        if self.id is None and not self.repeated_cross_sections:
            raise DidInputError(
                "--id is needed for panel data (the column identifying a unit across periods); "
                "for repeated cross-sections give --repeated-cross-sections"
            )
        if self.repeated_cross_sections and self.fix_weights in ("base_period", "first_period"):
            raise DidInputError(
                f"--fix-weights {self.fix_weights} needs panel data; repeated cross-sections "
                "have no unit to fix the weight of (use none or varying)"
            )
        if self.fix_weights != "none" and not self.weights:
            raise DidInputError(f"--fix-weights {self.fix_weights} needs --weights")

    @property
    def csdid_control_group(self) -> str:
        return CONTROL_GROUPS[self.control]

    @property
    def csdid_fix_weights(self) -> str | None:
        return FIX_WEIGHTS[self.fix_weights]


# ------------------------------------------------------------------------------ reading


def parquet_files(folder: Path) -> list[Path]:
    """The parquet files of a folder (Hive partitions included), in a stable order; hidden files and
    folders (``.``, ``_``: Spark's ``_SUCCESS``, zorgpad's work markers) are not part of it."""
    files = []
    for path in sorted(folder.rglob("*.parquet")):
        relative = path.relative_to(folder).parts
        if not any(part.startswith((".", "_")) for part in relative):
            files.append(path)
    return files


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def panel_fingerprint(panel: Path | str) -> dict:
    """What the manifest records of the input: its absolute path, kind, size and SHA-256 (for a
    folder, the hash of the sorted relative paths with each file's own hash), so a report can be
    tied to exactly the panel it was made from a year later."""
    path = Path(panel).expanduser().resolve()
    if path.is_dir():
        files = parquet_files(path)
        digest = hashlib.sha256()
        for file in files:
            digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
        return {
            "path": str(path),
            "kind": "parquet folder",
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "sha256": digest.hexdigest(),
        }
    kind = "parquet file" if _is_parquet(path) else "CSV file"
    return {"path": str(path), "kind": kind, "files": 1, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def check_panel_path(panel: Path | str) -> Path:
    """The panel's absolute path, or a one-line error when it is not something zorgpad can read
    (checked before the output folder and before any data are read)."""
    path = Path(panel).expanduser().resolve()
    if not path.exists():
        raise DidInputError(
            f"PANEL {path} does not exist: give a parquet file, a folder of parquet files or a CSV file"
        )
    if path.is_dir():
        if not parquet_files(path):
            raise DidInputError(
                f"PANEL {path} is a folder without parquet files: give a parquet file, a folder of "
                "parquet files (Hive partitions allowed) or a CSV file"
            )
        return path
    try:
        parquet = _is_parquet(path)
    except OSError as exc:
        raise DidInputError(f"PANEL {path} cannot be read: {exc.strerror or exc}") from None
    if not parquet and path.suffix.lower() not in CSV_SUFFIXES and not path.name.lower().endswith(".csv.gz"):
        raise DidInputError(
            f"PANEL {path} is neither a parquet file nor a CSV file (.csv): give a parquet file, "
            "a folder of parquet files or a CSV file"
        )
    return path


def read_panel(panel: Path | str) -> pl.DataFrame:
    """The panel as one polars frame: a parquet file, a folder of parquet files (Hive partition
    columns become columns, as ``hive_partitioning`` reads them), or a CSV file read as it is (``NA``
    and empty cells are empty values, so R's ``mpdta.csv`` reads unchanged)."""
    path = check_panel_path(panel)
    try:
        if path.is_dir():
            return pl.read_parquet(parquet_files(path), hive_partitioning=True)
        if _is_parquet(path):
            return pl.read_parquet(path)
        separator = "\t" if path.suffix.lower() == ".tsv" else ","
        return pl.read_csv(path, separator=separator, null_values=["NA", ""], infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DidInputError(f"PANEL {path} cannot be read as a panel ({mask_identifiers(first[:200])})") from None


def mask_identifiers(text: str) -> str:
    """``text`` with every run of nine or more digits replaced: a reader's or csdid's message may
    quote a cell, and a cell may be a BSN."""
    return re.sub(r"\d{9,}", "<hidden>", text)


# ------------------------------------------------------------------------------ checking
def _shown(values: list) -> str:
    """A few values for an error message, or none when they could be identifiers: a value of nine
    or more digits may be a BSN, and is never printed."""
    if any(len(str(v).lstrip("-").split(".")[0]) >= 9 for v in values):
        return "(not shown: they look like identifiers)"
    shown = ", ".join(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def _is_number(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean


def _describe(dtype: pl.DataType) -> str:
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "text"
    if dtype.is_temporal():
        return f"dates/times ({dtype})"
    return str(dtype)


@dataclass
class PreparedPanel:
    """The panel as csdid gets it, and what happened on the way (for the report's attrition lines)."""

    frame: pd.DataFrame
    covariates: dict[str, str]  # internal name -> the panel's column
    periods: list[int]
    groups: list[int]
    rows_read: int
    rows_used: int
    units: int  # units (panel) or observations (repeated cross-sections) used
    never_treated_units: int
    notes: list[str] = field(default_factory=list)
    never_treated_recoded: int = 0  # units (rows for repeated cross-sections) whose empty G became 0

    @property
    def formula(self) -> str | None:
        """The covariate formula csdid takes (``None``: no covariates, an unconditional estimate)."""
        return f"{OUTCOME} ~ " + " + ".join(self.covariates) if self.covariates else None


def _require_columns(frame: pl.DataFrame, options: DidOptions) -> None:
    wanted = [("--y", options.y), ("--t", options.t), ("--g", options.g)]
    if options.id:
        wanted.append(("--id", options.id))
    wanted += [("--x", x) for x in options.x]
    if options.cluster:
        wanted.append(("--cluster", options.cluster))
    if options.weights:
        wanted.append(("--weights", options.weights))
    missing = [(option, column) for option, column in wanted if column not in frame.columns]
    if missing:
        option, column = missing[0]
        others = "" if len(missing) == 1 else f" (nor {', '.join(repr(c) for _, c in missing[1:])})"
        columns = ", ".join(frame.columns[:12]) + (
            f" and {len(frame.columns) - 12} more" if len(frame.columns) > 12 else ""
        )
        raise DidInputError(f"{option} {column}: the panel has no column {column!r}{others}; its columns are {columns}")


def _require_numbers(frame: pl.DataFrame, option: str, column: str, what: str) -> None:
    dtype = frame.schema[column]
    if not _is_number(dtype):
        raise DidInputError(f"{option} {column} must be numeric ({what}), but the column holds {_describe(dtype)}")


def _whole_periods(values: pl.Series, option: str, column: str) -> pl.Series:
    if values.dtype.is_float():
        finite = values.drop_nulls()
        if (finite.is_nan() | finite.is_infinite()).any() or (finite != finite.round(0)).any():
            raise DidInputError(
                f"{option} {column} must hold whole period numbers (a year, or a running quarter or "
                "month number), but some values have decimals or are not finite"
            )
    return values.cast(pl.Int64)


def prepare_panel(frame: pl.DataFrame, options: DidOptions) -> PreparedPanel:
    """Check the panel against the options and give it to csdid's conventions (see the module
    docstring): raises :class:`DidInputError` with one line naming the option and column."""
    _require_columns(frame, options)
    rows_read = frame.height
    if rows_read == 0:
        raise DidInputError("the panel has no rows")
    _require_numbers(frame, "--y", options.y, "the outcome")
    _require_numbers(frame, "--t", options.t, "the period")
    _require_numbers(frame, "--g", options.g, "the period a unit is first treated, 0 for never treated")
    for x in options.x:
        _require_numbers(frame, "--x", x, "a covariate")
    if options.weights:
        _require_numbers(frame, "--weights", options.weights, "a sampling weight")
    if frame.schema[options.t] == pl.Boolean or frame.schema[options.g] == pl.Boolean:
        raise DidInputError("--t and --g must be period numbers, not true/false values")

    notes: list[str] = []
    period = _whole_periods(frame[options.t], "--t", options.t)
    if period.null_count():
        raise DidInputError(f"--t {options.t} is empty on {period.null_count():,} rows: every row needs its period")
    periods = sorted(period.unique().to_list())
    if len(periods) < 2:
        raise DidInputError(
            f"--t {options.t} has one period only ({_shown(periods)}): a difference-in-differences "
            "needs periods before and after the start"
        )

    cohort = frame[options.g]
    if cohort.dtype.is_float():
        cohort = cohort.fill_nan(None)
    empty = cohort.null_count()
    recoded_rows = 0
    if options.never_treated_coding == "zero":
        if empty:
            raise DidInputError(
                f"--g {options.g} is empty on {empty:,} rows: with --never-treated-coding zero "
                "(R did, csdid, pyfixest) never-treated units have G = 0; if empty means never "
                "treated (the differences convention), give --never-treated-coding nan"
            )
    else:
        zeros = int((cohort == 0).sum())
        if zeros:
            raise DidInputError(
                f"--g {options.g} is 0 on {zeros:,} rows, but with --never-treated-coding nan "
                "never-treated units have an empty G: use --never-treated-coding zero if 0 means "
                "never treated, or recode the column"
            )
        recoded_rows = empty
        cohort = cohort.fill_null(0)
    cohort = _whole_periods(cohort, "--g", options.g)
    starts = sorted(v for v in cohort.unique().to_list() if v != 0)
    period_set = set(periods)
    strangers = [v for v in starts if v not in period_set]
    if strangers:
        after = [v for v in strangers if v > periods[-1]]
        hint = (
            (
                " (a start after the last period is outside the panel: R did counts such units as never treated; "
                "code them 0 if that is what you mean)"
            )
            if after and len(after) == len(strangers)
            else ("; G is the period a unit is first treated, on the scale of --t, 0 for never treated")
        )
        raise DidInputError(
            f"--g {options.g} has values that are not periods of --t {options.t}: {_shown(strangers)} "
            f"(periods {_shown([periods[0]])} to {_shown([periods[-1]])}){hint}"
        )
    if (cohort < 0).any():
        raise DidInputError(f"--g {options.g} has negative values: G is a period of --t, or 0 for never treated")

    columns: dict[str, pl.Series] = {
        OUTCOME: frame[options.y].cast(pl.Float64),
        PERIOD: period,
        COHORT: cohort,
    }
    if options.id:
        # integer codes in the order of the sorted identifiers: csdid needs numbers, the report never ids
        columns[UNIT] = frame[options.id].rank("dense").cast(pl.Int64)
        if frame[options.id].null_count():
            raise DidInputError(
                f"--id {options.id} is empty on {frame[options.id].null_count():,} rows: every row needs its unit"
            )
    covariates = {f"zp_x{i + 1}": x for i, x in enumerate(options.x)}
    for internal, x in covariates.items():
        columns[internal] = frame[x].cast(pl.Float64)
    if options.weights:
        columns[WEIGHT] = frame[options.weights].cast(pl.Float64)
    if options.cluster:
        columns[CLUSTER] = frame[options.cluster].rank("dense").cast(pl.Int64)
    panel = pl.DataFrame(columns)

    if options.weights:
        weights = panel[WEIGHT].drop_nulls()
        if (weights < 0).any() or weights.is_nan().any():
            raise DidInputError(f"--weights {options.weights} has negative or undefined values: weights are 0 or more")
        if weights.sum() <= 0:
            raise DidInputError(f"--weights {options.weights} are all 0: at least one row needs a positive weight")

    if not options.repeated_cross_sections:
        duplicates = panel.select(pl.struct(UNIT, PERIOD).is_duplicated().sum()).item()
        if duplicates:
            raise DidInputError(
                f"the panel has {duplicates:,} rows that repeat a unit (--id {options.id}) in a "
                f"period (--t {options.t}): a panel has one row per unit and period; for repeated "
                "cross-sections give --repeated-cross-sections"
            )
        moving = panel.group_by(UNIT).agg(pl.col(COHORT).n_unique()).filter(pl.col(COHORT) > 1).height
        if moving:
            raise DidInputError(
                f"--g {options.g} changes over time for {moving:,} units: a unit's group is the "
                "period it is first treated, the same on every row of the unit (treatment does "
                "not switch off)"
            )
        if options.cluster:
            moving = panel.group_by(UNIT).agg(pl.col(CLUSTER).n_unique()).filter(pl.col(CLUSTER) > 1).height
            if moving:
                raise DidInputError(
                    f"--cluster {options.cluster} changes over time for {moving:,} units: a unit "
                    "belongs to one cluster (e.g. its provider) on every row"
                )
    if options.cluster and panel[CLUSTER].null_count():
        raise DidInputError(
            f"--cluster {options.cluster} is empty on {panel[CLUSTER].null_count():,} rows: every row needs its cluster"
        )

    if options.never_treated_coding == "nan" and recoded_rows:
        recoded = (
            panel.filter(pl.col(COHORT) == 0)[UNIT].n_unique() if not options.repeated_cross_sections else recoded_rows
        )
        notes.append(
            f"{recoded:,} {'units' if not options.repeated_cross_sections else 'rows'} with an empty "
            f"{options.g} were taken as never treated (G = 0), as --never-treated-coding nan says"
        )
    else:
        recoded = 0

    measured = [OUTCOME, *covariates, *([WEIGHT] if options.weights else [])]
    incomplete = panel.select(
        pl.any_horizontal([pl.col(c).is_null() | pl.col(c).is_nan() for c in measured]).sum()
    ).item()
    if incomplete:
        if incomplete == panel.height:
            raise DidInputError(
                f"every row lacks the outcome --y {options.y}"
                + (" or a covariate or weight" if len(measured) > 1 else "")
            )
        panel = panel.filter(~pl.any_horizontal([pl.col(c).is_null() | pl.col(c).is_nan() for c in measured]))
        notes.append(
            f"{incomplete:,} rows without {options.y}"
            + (" or a covariate or weight" if len(measured) > 1 else "")
            + " were left out"
            + ("" if options.repeated_cross_sections else " (csdid then keeps only the units observed in every period)")
        )

    unit_col = UNIT if not options.repeated_cross_sections else None
    never = panel.filter(pl.col(COHORT) == 0)
    never_units = never[unit_col].n_unique() if unit_col else never.height
    if options.control == "never_treated" and never_units == 0:
        raise DidInputError(
            f"--control never_treated needs never-treated units (--g {options.g} = 0), but every "
            "unit of the panel is treated at some period: use --control not_yet_treated"
            + (
                ""
                if options.never_treated_coding == "nan"
                else ", or --never-treated-coding nan if your never-treated units have an empty G"
            )
        )
    first_period = periods[0]
    valid_starts = [g for g in starts if g > first_period + options.anticipation]
    if not valid_starts:
        raise DidInputError(
            f"no unit of the panel starts treatment after its first period {first_period}"
            + (f" plus --anticipation {options.anticipation}" if options.anticipation else "")
            + ": there is no before to compare with"
        )
    if options.anticipation and options.anticipation >= len(periods):
        raise DidInputError(
            f"--anticipation {options.anticipation} is at least the number of periods "
            f"({len(periods)}): nothing is left before the anticipated start"
        )

    units = panel[unit_col].n_unique() if unit_col else panel.height
    sort_by = [UNIT, PERIOD] if unit_col else [PERIOD, COHORT]
    panel = panel.sort(sort_by, maintain_order=True)
    return PreparedPanel(
        frame=panel.to_pandas(),
        covariates=covariates,
        periods=periods,
        groups=starts,
        rows_read=rows_read,
        rows_used=panel.height,
        units=units,
        never_treated_units=never_units,
        notes=notes,
        never_treated_recoded=recoded,
    )
