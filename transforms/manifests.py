"""Typed manifests and books: what zorgpad writes into ``delivery.json`` and ``manifest.json`` files,
and what it reads back from them.

One pydantic model per file a stage writes:

- :class:`DeliveryJson` -- a delivery's own ``delivery.json`` (the input contract, ``docs/store.md``);
  written by ``zorgpad synth``, read by ingest;
- :class:`TableBooks` -- the rows and cents of one table that ingest sums over its buckets;
- :class:`StoreManifest` -- the store's ``manifest.json`` written by ``zorgpad ingest``, with the
  books of every table (:class:`BooksEntry`) and the validation summary;
- :class:`EpisodesManifest` -- the episodes folder's ``manifest.json``;
- :class:`PanelsManifest` and :class:`DidPanelManifest` -- the panels and DiD panel manifests.

Writers build the model and write ``model.dump()`` (``model_dump(mode="json", exclude_unset=True)``:
the JSON of today's files key for key, no default filled in); readers parse with :func:`read_manifest` (or ``Model.model_validate``)
and use attributes. A file that does not parse -- hand-edited, truncated, written by another tool --
raises :class:`ManifestError`, a :class:`~transforms.errors.UserFacingError`: the command line
prints it as one ``error:`` line that names the file and the first fields that are wrong.

Extra keys: the top-level manifests allow keys they do not know (a newer zorgpad, or a tool that
annotates a manifest, must not make a folder unreadable) and keep them when written back; the books
entries and the ``files`` entries of ``delivery.json``, whose every key has a meaning for the
accounting, forbid them. Euros in the books are exact decimals, written as text (``"19.99"``) and
never parsed from a float.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    ValidationError,
    model_validator,
)

from transforms.errors import UserFacingError


def _exact(value: object) -> object:
    """Exact euros come as text (``"19.99"``), a whole number or a Decimal, never as a float (a
    float has no exact cents)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("exact euros must be given as text such as '19.99', not as a number with a fraction")
    return value


#: Euros as an exact decimal; JSON text such as ``"19.99"`` (``str`` of the Decimal).
ExactEuros = Annotated[Decimal, BeforeValidator(_exact), PlainSerializer(str, return_type=str, when_used="json")]
#: A count: a whole number, not a float or a boolean.
Count = Annotated[StrictInt, Field(ge=0)]


class _Open(BaseModel):
    """A model of a file zorgpad reads: unknown keys are kept (and written back)."""

    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    """A model whose every key has a meaning: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")


class Marker(_Open):
    """The ``zorgpad`` entry :class:`transforms.output_folder.Publication` puts first in every
    manifest it writes."""

    kind: str = Field(description="what the folder is: store, episodes, panels, ...")
    format: int = Field(description="version of the folder layout")
    run_id: str | None = Field(default=None, description="the run that wrote the folder")


class Manifest(_Open):
    """Base of the ``manifest.json`` models: the optional marker, and :meth:`dump`."""

    zorgpad: Marker | None = Field(
        default=None, description="the marker added on publication (absent in the manifest a run returns)"
    )

    @property
    def run_id(self) -> str | None:
        """The run that wrote the folder (from the marker), when known."""
        return self.zorgpad.run_id if self.zorgpad else None

    def dump(self) -> dict:
        """The JSON of the file (a dict): the keys that were given (a writer gives every key; a
        manifest read back is written as it was read, without defaults filled in)."""
        return self.model_dump(mode="json", exclude_unset=True)


# ------------------------------------------------------------------------------ delivery.json
class DeliveryMeta(_Open):
    """What a delivery says about itself: the required keys of ``delivery.json``, and the
    ``delivery`` entry of the store manifest."""

    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)

    delivery_id: str = Field(description="the producer's name of this delivery, repeated in every output")
    data_as_of: date = Field(description="the date the data were extracted (YYYY-MM-DD): no claim is later")
    first_year: int = Field(description="the first calendar year of claims the delivery covers")
    last_year: int = Field(description="the last calendar year of claims the delivery covers")
    producer: str = Field(description="who produced the delivery ('zorgpad synth' for a synthetic one)")

    def as_dict(self) -> dict:
        """The ``delivery`` entry of the store manifest (the five keys only)."""
        return self.model_dump(mode="json", include=set(DeliveryMeta.model_fields))


class ListedFile(_Closed):
    """An entry of the ``files`` list of ``delivery.json``: a file to read, with its size and hash
    when given (a bare string is the path alone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="relative to the delivery, starting with a table folder: dbc/part-0.parquet")
    bytes: Count | None = Field(default=None, description="the file's size; checked when given")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = Field(
        default=None, description="the file's SHA-256 (64 hexadecimal characters); checked when given"
    )


def _bare_paths(entries: object) -> object:
    if isinstance(entries, list):
        return [{"path": e} if isinstance(e, str) else e for e in entries]
    return entries


class DeliveryJson(DeliveryMeta):
    """The whole ``delivery.json``: :class:`DeliveryMeta` and, optionally, the files to read."""

    files: Annotated[list[ListedFile], BeforeValidator(_bare_paths)] | None = Field(
        default=None,
        description="the files of the delivery; when given, exactly these are read and any other file is ignored",
    )

    def dump(self) -> dict:
        """The JSON of the file: the keys that were given (no ``files`` when there is no list)."""
        return self.model_dump(mode="json", exclude_unset=True)


# ------------------------------------------------------------------------------ the books
class TableBooks(_Closed):
    """Rows and cents of one table (in one bucket, or summed over the store): in = stored +
    quarantined + merged. Mutable: a bucket fills it in as it goes, ingest sums them with :meth:`add`."""

    rows_in: Count = Field(default=0, description="rows read from the delivery")
    rows_stored: Count = Field(default=0, description="rows written to the store")
    rows_quarantined: Count = Field(default=0, description="rows written to the quarantine")
    rows_merged: Count = Field(default=0, description="rows merged into another by netting corrections")
    cents_in: StrictInt = Field(default=0, description="amount of the rows read, in cents")
    cents_stored: StrictInt = Field(default=0, description="amount of the stored rows, in cents")
    cents_quarantined: StrictInt = Field(default=0, description="amount of the quarantined rows, in cents")
    cents_merged_lines: StrictInt = Field(
        default=0, description="money carried by merged lines, in cents (inside cents_stored)"
    )
    fully_credited: Count = Field(default=0, description="stored claims whose corrections cancel them to zero")
    unrepresentable_in: ExactEuros = Field(
        default=Decimal(0), description="delivered amounts that are not whole cents, in exact euros"
    )
    unrepresentable_quarantined: ExactEuros = Field(
        default=Decimal(0), description="the same amounts in the quarantine (all of them are quarantined)"
    )
    amounts_not_a_number: Count = Field(default=0, description="amounts that are NaN or infinite: counted, no euros")

    def add(self, other: TableBooks) -> None:
        """Add ``other``'s counts and amounts to these."""
        for name in TableBooks.model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class BooksEntry(TableBooks):
    """One table's books in the store manifest: :class:`TableBooks`, the euros and whether they
    balance (rows in = stored + quarantined + merged, euros in = stored + quarantined, and both equal
    to what the delivery holds)."""

    @model_validator(mode="before")
    @classmethod
    def _every_count_given(cls, data: object) -> object:
        """The books of a manifest give every count: a missing one is an error, not a zero."""
        if isinstance(data, dict):
            missing = [name for name in TableBooks.model_fields if name not in data]
            if missing:
                raise ValueError(f"field required: {', '.join(missing)}")
        return data

    euros_in: float = Field(description="euros read (a float, for display: euros_in_exact is exact)")
    euros_stored: float = Field(description="euros stored (a float, for display)")
    euros_quarantined: float = Field(description="euros quarantined (a float, for display)")
    euros_in_exact: ExactEuros = Field(description="euros read, exactly (unrepresentable amounts included)")
    euros_stored_exact: ExactEuros = Field(description="euros stored, exactly")
    euros_quarantined_exact: ExactEuros = Field(description="euros quarantined, exactly")
    balanced: bool = Field(description="rows and euros are all accounted for")
    rows_in_delivery: Count | None = Field(default=None, description="rows the delivery's files hold")
    euros_delivered_exact: ExactEuros | None = Field(
        default=None, description="euros of the amount column as the first step read them from the delivery"
    )


# ------------------------------------------------------------------------------ the store
class InputFileEntry(_Open):
    """A file ingest read."""

    table: str = Field(description="the table the file belongs to")
    path: str = Field(description="relative to the delivery")
    size: Count = Field(description="bytes")
    sha256: str = Field(description="SHA-256 of the file")
    rows: Count = Field(description="rows in the file")
    row_groups: Count = Field(description="parquet row groups in the file")


class ValidationRef(_Open):
    """Where the validation results are and whether every check passed."""

    summary: str = Field(description="the validation summary, relative to the store")
    data_docs: str | None = Field(description="the Great Expectations Data Docs index, relative to the store")
    success: bool = Field(description="no row failed a check that is not a warning (failed rows are quarantined)")


class StoreManifest(Manifest):
    """The store's ``manifest.json``, written by ``zorgpad ingest``."""

    delivery_id: str = Field(description="the delivery's delivery_id")
    delivery: DeliveryMeta = Field(description="what delivery.json said")
    delivery_path: str = Field(description="the delivery folder read")
    store: str = Field(description="the store folder")
    code_version: str = Field(description="zorgpad's version and commit")
    contract_version: str = Field(description="the input contract's version")
    buckets: Count = Field(description="patient buckets of the store")
    id_parts: Count = Field(description="id-parts of the delivery-wide checks")
    critical_share: float = Field(description="share of failed rows above which a check stops the run")
    inputs: dict[str, list[InputFileEntry]] = Field(description="per table, the files read")
    file_list_checked: bool = Field(default=False, description="delivery.json listed its files and they were checked")
    ignored_files: dict[str, str] = Field(default_factory=dict, description="files not read -> why")
    identical_files: list[list[str]] = Field(default_factory=list, description="groups of files delivered twice")
    extra_columns: dict[str, list[str]] = Field(default_factory=dict, description="per table, columns not read")
    normalised: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per table and column, codes whose leading zeros were restored"
    )
    blank_to_null: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per table and column, blank text read as null"
    )
    books: dict[str, BooksEntry] = Field(description="per table, the rows and euros accounted for")
    balanced: bool = Field(description="every table's books balance")
    quarantine: dict[str, dict[str, int]] = Field(description="per table, quarantined rows per reason")
    validation: ValidationRef = Field(description="the validation results")
    timing_seconds: dict[str, float] = Field(default_factory=dict, description="seconds per step, and total")
    machine: dict[str, str] = Field(default_factory=dict, description="python version and platform")


# ------------------------------------------------------------------------------ episodes
class EpisodesByYear(_Open):
    bundle_id: str = Field(description="the bundle")
    anchor_year: int = Field(description="the year the episodes start in")
    status: str = Field(description="the episodes' status")
    episodes: Count = Field(description="episodes")


class EpisodesManifest(Manifest):
    """The episodes folder's ``manifest.json``, written by ``zorgpad episodes``."""

    store: str = Field(description="the store the episodes were built from")
    out: str = Field(description="the episodes folder")
    bundles: list[str] = Field(description="the bundles built")
    buckets: Count = Field(description="store buckets read")
    tasks: Count = Field(description="tasks the buckets were built in")
    buckets_per_task: Count = Field(description="buckets per task")
    data_as_of: date = Field(description="the delivery's data_as_of")
    runout_months: Count = Field(description="months after an episode's end its outcomes are followed")
    code_version: str = Field(description="zorgpad's version and commit")
    contract_version: str = Field(description="the input contract's version")
    episodes: dict[str, Count] = Field(description="per bundle, episodes")
    episode_lines: dict[str, Count] = Field(description="per bundle, claim lines in episodes")
    allocated_euros: dict[str, float] = Field(description="per bundle, euros allocated to episodes (from cents)")
    by_year_status: list[EpisodesByYear] = Field(description="episodes per bundle, anchor year and status")
    timing_seconds: dict[str, float] = Field(default_factory=dict, description="seconds per step, and total")


# ------------------------------------------------------------------------------ panels
class TableLayout(_Open):
    """How an output table is laid out."""

    grain: str = Field(description="what one row is")
    key: list[str] = Field(description="the columns that identify a row")
    partition_by: list[str] = Field(default_factory=list, description="the hive partition columns")


class PanelsManifest(Manifest):
    """The panels folder's ``manifest.json``, written by ``zorgpad panels``."""

    out: str = Field(description="the panels folder")
    data_as_of: date = Field(description="the delivery's data_as_of")
    inputs: dict[str, dict[str, Any]] = Field(
        description="store, episodes (and earlier panels) read: path, run_id, manifest hashes"
    )
    options: dict[str, Any] = Field(description="the panel options")
    bundles: list[str] = Field(description="the bundles in the panels")
    years: dict[str, list[int]] = Field(description="per bundle, the anchor years")
    tables: dict[str, TableLayout] = Field(description="the panel tables")
    rows: dict[str, int] = Field(description="rows per table")
    plots: Count = Field(description="plots written")
    episodes_by_status: dict[str, dict[str, int]] = Field(description="per bundle, episodes per status")
    episodes_left_out: dict[str, Any] = Field(description="per bundle, episodes left out and why")
    casemix: dict[str, Any] = Field(description="the case-mix models")
    outcomes_not_compared: dict[str, Any] = Field(description="per bundle, outcomes not compared and why")
    code_version: str = Field(description="zorgpad's version and commit")
    contract_version: str = Field(description="the input contract's version")
    timing_seconds: dict[str, float] = Field(default_factory=dict, description="seconds per step, and total")


class DidPanelManifest(Manifest):
    """The DiD panel folder's ``manifest.json``, written by ``zorgpad panel build``. The inputs'
    provenance (``store``, ``episodes``, ``vektis``) is kept as extra keys, as the spec decides them."""

    name: str = Field(description="the spec's name")
    unit: str = Field(description="the panel's unit")
    period: str = Field(description="the panel's period")
    years: list[int] = Field(description="the years of the panel")
    data_as_of: date = Field(description="the delivery's data_as_of")
    spec: dict[str, Any] = Field(description="the normalised spec")
    spec_hash: str = Field(description="hash of the normalised spec")
    spec_file: dict[str, Any] = Field(description="the spec file read and its SHA-256")
    contract_version: str = Field(description="the input contract's version")
    code_version: str = Field(description="zorgpad's version and commit")
    maturity: dict[str, Any] = Field(description="the claim table maturity is judged on and immature periods")
    several_insurers: bool = Field(description="the claims come from more than one insurer")
    cohorts: dict[str, Any] = Field(description="providers per cohort status and how edge cohorts are coded")
    rows: dict[str, int | None] = Field(
        description="rows, units, treated rows and providers (none for a panel of gemeenten)"
    )
    units_per_cohort: Any = Field(description="units per cohort")
    attrition: Any = Field(description="the attrition summary")
    tables: dict[str, TableLayout] = Field(description="the panel tables")
    adapters: dict[str, Any] = Field(description="files for the DiD packages")
    content_sha256: str = Field(description="hash of every file of the panel")
    files: dict[str, str] = Field(description="relative path -> SHA-256")
    estimates: Any = Field(default=None, description="the estimates, when asked for")
    timing_seconds: dict[str, float] = Field(default_factory=dict, description="seconds per step, and total")


# ------------------------------------------------------------------------------ reading
class ManifestError(UserFacingError):
    """A manifest (or ``delivery.json``) zorgpad cannot read: not JSON, or not of the expected form."""


def describe(error: ValidationError, shown: int = 3) -> str:
    """The first ``shown`` problems of ``error`` on one line: ``books.gp.rows_in: Input should be a
    valid integer (got 'x')``."""
    parts = []
    for e in error.errors()[:shown]:
        where = ".".join(str(p) for p in e["loc"]) or "the file"
        got = "" if e["type"] == "missing" else f" (got {json.dumps(e.get('input'), default=str)[:40]})"
        parts.append(f"{where}: {e['msg'].lower() if e['type'] == 'missing' else e['msg']}{got}")
    more = f"; and {error.error_count() - shown} more" if error.error_count() > shown else ""
    return "; ".join(parts) + more


M = TypeVar("M", bound=BaseModel)


def parse_manifest(model: type[M], data: object, where: str, *, hint: str = "") -> M:
    """``data`` as ``model`` (raises :class:`ManifestError` naming ``where`` and what is wrong)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(
            f"{where} is not a valid {model.__name__} ({describe(exc)}): was it edited or written by another "
            f"tool?{' ' + hint if hint else ''}"
        ) from None


def read_manifest(model: type[M], path: Path | str, *, hint: str = "") -> M:
    """Read and parse the JSON file ``path`` as ``model`` (raises :class:`ManifestError`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing{': ' + hint if hint else ''}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc}){': ' + hint if hint else ''}") from None
    return parse_manifest(model, data, str(path), hint=hint)


__all__ = [
    "BooksEntry",
    "DeliveryJson",
    "DeliveryMeta",
    "DidPanelManifest",
    "EpisodesManifest",
    "ExactEuros",
    "InputFileEntry",
    "ListedFile",
    "Manifest",
    "ManifestError",
    "Marker",
    "PanelsManifest",
    "StoreManifest",
    "TableBooks",
    "ValidationRef",
    "describe",
    "parse_manifest",
    "read_manifest",
]
