"""Build the panels of a store and its episodes, step by step (the Prefect flow runs the same steps as
tasks; :func:`build_panels` runs them in one process):

1. :func:`plan_panels` -- check the options, the store, the episodes (built from that store) and the
   contracts' terms, take the output folder's lock (``transforms.output_folder``);
2. :func:`fit_casemix` -- per bundle, the case-mix models (costs on both bases, every binary
   outcome) fitted on the Dask cluster (dask-ml for large models, exact IRLS in one task for the
   others: ``PanelOptions.casemix_cluster_from``), their coefficients and fit statistics, and the
   expected value of every episode (kept in the work folder until the end);
3. :func:`build_bundle` -- per bundle (one Dask task each): ``benchmark``, ``benchmark_outcomes``,
   ``bundle_costs`` with small-cell suppression, the funnel plots, and the reconciliation tables;
4. :func:`finish` -- the manifest, the initial-vs-final comparison, the swap into place.

Every step reads and writes parquet paths; what steps hand each other is small and picklable.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transforms.bundles import load_bundles
from transforms.contract import CONTRACT_VERSION
from transforms.errors import UserFacingError
from transforms.hashing import file_sha256
from transforms.manifests import EpisodesManifest, PanelsManifest, StoreManifest, parse_manifest
from transforms.output_folder import Publication, check_target, require_episodes_of, require_output, require_unlocked
from transforms.panels import benchmark, casemix
from transforms.panels.bundle_costs import DEFAULT_WINSORISE_PCT, bundle_costs
from transforms.panels.contract_terms import check_contracts
from transforms.panels.inputs import (
    ELIGIBLE_STATUSES,
    binary_outcomes,
    episode_files,
    providers_with_region,
    read_contracts,
    read_episodes,
    read_lines,
)
from transforms.panels.plots import funnel_plot
from transforms.panels.reconciliation import bundle_outcomes, compare, reconcile
from transforms.panels.suppression import DEFAULT_MIN_CELL, suppress
from transforms.panels.tables import PANEL_TABLES, table
from transforms.runtime import Mapper, code_version, local_map

EXPECTED_DIR = "_expected"
PLOTS_DIR = "funnel_plots"
STATUSES = ("complete", "censored_enrolment", "censored_data", "death")
#: Tables written per bundle by :func:`build_bundle`.
BUNDLE_TABLES = (
    "benchmark",
    "benchmark_outcomes",
    "bundle_costs",
    "reconciliation",
    "settlement",
    "placebo",
    "placebo_summary",
    "reconciliation_phases",
)


class PanelOptionsError(UserFacingError):
    """Options the panels cannot be built with."""


class PanelOptions(BaseModel):
    """What a user can choose (``zorgpad panels`` options); validated before any work starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bundles: tuple[str, ...] | None = None
    statuses: tuple[str, ...] = ELIGIBLE_STATUSES
    min_cell: int = Field(DEFAULT_MIN_CELL, ge=1)
    winsorise_pct: float = Field(DEFAULT_WINSORISE_PCT, gt=0, le=100)
    #: models with at least this many episodes are fitted with dask-ml across the cluster, smaller
    #: ones by exact IRLS in one Dask task each (``casemix.CLUSTER_FIT_FROM``); 0: all with dask-ml
    casemix_cluster_from: int = Field(casemix.CLUSTER_FIT_FROM, ge=0)

    @field_validator("statuses")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in STATUSES]
        if unknown or not value:
            raise ValueError(
                f"unknown status {unknown[0]!r}; statuses are {', '.join(STATUSES)}"
                if unknown
                else "at least one status is needed"
            )
        return value

    @classmethod
    def from_cli(
        cls,
        *,
        bundles: str | None,
        statuses: str,
        min_cell: int,
        winsorise_pct: float,
        casemix_cluster_from: int = casemix.CLUSTER_FIT_FROM,
    ) -> PanelOptions:
        try:
            return cls(
                bundles=tuple(b.strip() for b in bundles.split(",") if b.strip()) if bundles else None,
                statuses=tuple(s.strip() for s in statuses.split(",") if s.strip()),
                min_cell=min_cell,
                winsorise_pct=winsorise_pct,
                casemix_cluster_from=casemix_cluster_from,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "options"
            raise PanelOptionsError(f"{name}: {first['msg']}") from None


@dataclass
class PanelsRun:
    """What the steps of one build share (small, picklable)."""

    store: str
    episodes: str
    publication: Publication
    options: PanelOptions
    bundles: list[str]
    years: dict[str, list[int]]
    data_as_of: str
    earlier: str | None
    inputs: dict
    started: float
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return Path(self.publication.work)


def preflight(
    store: Path | str,
    episodes: Path | str,
    out: Path | str,
    options: PanelOptions,
    *,
    earlier: Path | str | None = None,
) -> dict:
    """What can be checked in seconds (the command line does this before it starts a Prefect API):
    the store and the episodes are complete zorgpad outputs and belong together, the output folder
    may be written and nobody writes it, the bundles exist, every contract's terms are valid.
    Returns what :func:`plan_panels` needs (raises a :class:`UserFacingError` otherwise)."""
    store_manifest, episodes_manifest = require_episodes_of(store, episodes)
    as_of = store_manifest.delivery.data_as_of.isoformat()
    inputs = {"store": Path(store), "episodes": Path(episodes)}
    if earlier is not None:
        earlier_manifest = parse_manifest(
            PanelsManifest,
            require_output(earlier, "panels", option="--earlier"),
            f"--earlier {Path(earlier).expanduser().resolve() / 'manifest.json'}",
            hint="run `zorgpad panels` again",
        )
        inputs["earlier panels"] = Path(earlier)
    else:
        earlier_manifest = None
    target = check_target(out, "panels", inputs=inputs, option="--out")
    require_unlocked(target)
    built = [b for b in episodes_manifest.bundles if episode_files(Path(episodes), b)]
    if options.bundles is not None:
        missing = [b for b in options.bundles if b not in episodes_manifest.bundles]
        if missing:
            raise PanelOptionsError(
                f"--bundles: {', '.join(missing)} not in the episodes (built: {', '.join(episodes_manifest.bundles)})"
            )
        built = [b for b in options.bundles if b in built]
    store_root = Path(store).expanduser().resolve()
    contracts = read_contracts(store_root).filter(pl.col("bundle_id").is_in(built))
    check_contracts(contracts, bundle_outcomes(), _providers_for_contracts(store_root))
    return {
        "store_manifest": store_manifest,
        "episodes_manifest": episodes_manifest,
        "bundles": built,
        "data_as_of": as_of,
        "earlier_manifest": earlier_manifest,
    }


def _providers_for_contracts(store: Path) -> pl.DataFrame:
    return providers_with_region(store).rename({"region_code": "region"})


def plan_panels(
    store: Path | str,
    episodes: Path | str,
    out: Path | str,
    options: PanelOptions | None = None,
    *,
    earlier: Path | str | None = None,
) -> PanelsRun:
    """Step 1: :func:`preflight` again, then the lock and the work folder."""
    started = time.perf_counter()
    options = options or PanelOptions()
    checked = preflight(store, episodes, out, options, earlier=earlier)
    inputs = {"store": str(Path(store).expanduser().resolve()), "episodes": str(Path(episodes).expanduser().resolve())}
    if earlier is not None:
        inputs["earlier"] = str(Path(earlier).expanduser().resolve())
    publication = Publication.begin(out, "panels", inputs={k: Path(v) for k, v in inputs.items()}, option="--out")
    store_manifest: StoreManifest = checked["store_manifest"]
    episodes_manifest: EpisodesManifest = checked["episodes_manifest"]
    provenance = {
        "store": {
            "path": inputs["store"],
            "run_id": store_manifest.run_id,
            "delivery_id": store_manifest.delivery_id,
            "manifest_sha256": file_sha256(Path(inputs["store"]) / "manifest.json"),
            "inputs": {t: [f.sha256 for f in files] for t, files in store_manifest.inputs.items()},
        },
        "episodes": {
            "path": inputs["episodes"],
            "run_id": episodes_manifest.run_id,
            "manifest_sha256": file_sha256(Path(inputs["episodes"]) / "manifest.json"),
            "runout_months": episodes_manifest.runout_months,
        },
    }
    if earlier is not None:
        provenance["earlier"] = {
            "path": inputs["earlier"],
            "run_id": checked["earlier_manifest"].run_id,
            "data_as_of": checked["earlier_manifest"].data_as_of.isoformat(),
        }
    years = {}
    for bundle in checked["bundles"]:
        years[bundle] = sorted({int(f.parent.name.split("=")[1]) for f in episode_files(Path(episodes), bundle)})
    run = PanelsRun(
        inputs["store"],
        inputs["episodes"],
        publication,
        options,
        checked["bundles"],
        years,
        checked["data_as_of"],
        inputs.get("earlier"),
        provenance,
        started,
    )
    run.timing["plan"] = time.perf_counter() - started
    return run


# ------------------------------------------------------------------------------ step 2: case mix
def _usable_episodes(files: list[str], target: str, kind: str, statuses: tuple[str, ...]) -> int:
    """The number of episodes the model of ``target`` is fitted on, or 0 when it cannot be fitted for
    want of episodes or events: decided on the target column alone, here, so that a model which is the
    overall mean anyway costs no cluster round trips and a small one goes to a single task."""
    y = (
        pl.scan_parquet(files, hive_partitioning=True)
        .filter(pl.col("status").is_in(list(statuses)))
        .select(pl.col(target).cast(pl.Float64))
        .drop_nulls()
        .collect()[target]
    )
    total = float(y.clip(lower_bound=0).sum()) if kind == "poisson" else float(y.sum())
    too_small = casemix.degenerate_reason(kind, y.len(), 1, total, casemix.MIN_EPISODES, casemix.MIN_EVENTS)
    return 0 if too_small is not None else y.len()


def _model_name(target: str) -> str:
    for basis, (y, _) in benchmark.COST_BASES.items():
        if target == y:
            return f"cost_{basis}"
    return f"outcome:{target}"


def fit_casemix(run: PanelsRun, address: str | None = None) -> dict:
    """Step 2: every bundle's case-mix models (on the cluster at ``address``; in this process when
    None). Writes ``casemix_coefficients``, ``casemix_fit`` and each bundle's expected values.

    On a cluster, a model with at least ``casemix_cluster_from`` episodes is fitted with dask-ml
    over all workers, any other by exact IRLS in one task (``casemix.CLUSTER_FIT_FROM`` says why);
    the two agree to 1e-12 relative or better (the tests ask 1e-9), and each model's ``solver`` in the manifest says which ran."""
    t = time.perf_counter()
    coefficients, fits, report = [], [], {}
    jobs = [(bundle, target, kind) for bundle in run.bundles for target, kind in casemix.model_targets(bundle).items()]

    files = {bundle: [str(f) for f in episode_files(Path(run.episodes), bundle)] for bundle in run.bundles}
    statuses = run.options.statuses

    def arguments(job: tuple[str, str, str]) -> tuple:
        bundle, target, kind = job
        return files[bundle], target, kind, run.years[bundle]

    def large(job: tuple[str, str, str]) -> bool:
        bundle, target, kind = job
        episodes = _usable_episodes(files[bundle], target, kind, statuses)
        return episodes > 0 and episodes >= run.options.casemix_cluster_from

    on_dask_ml = [job for job in jobs if large(job)] if address is not None else []
    in_one_task = [job for job in jobs if job not in on_dask_ml]
    with contextlib.ExitStack() as stack:
        if address is None:
            results = {job: casemix.fit_files(*arguments(job), statuses=statuses) for job in in_one_task}
        else:
            from distributed import Client

            client = stack.enter_context(Client(address, set_as_default=False))
            # the small models run as tasks while this process drives the dask-ml fits one after
            # another (fitting those in threads at once is slower: a Newton step's time is spent
            # building and optimising its small graphs, under the GIL)
            tasks = {
                job: client.submit(casemix.fit_files, *arguments(job), statuses=statuses, pure=False)
                for job in in_one_task
            }
            results = {
                job: casemix.fit_on_dask(address, *arguments(job), statuses=statuses, client=client)
                for job in on_dask_ml
            }
            results.update(zip(tasks, client.gather(list(tasks.values()))))
    for bundle in run.bundles:
        episodes = read_episodes(Path(run.episodes), bundle)
        expected = episodes.select("episode_id")
        for target, kind in casemix.model_targets(bundle).items():
            result = results[(bundle, target, kind)]
            model = _model_name(target)
            for order, (term, value) in enumerate(result.coefficients.items()):
                coefficients.append(
                    {"bundle_id": bundle, "model": model, "term": term, "term_order": order, "coefficient": value}
                )
            fits.append(
                {
                    "bundle_id": bundle,
                    "model": model,
                    "decile": 0,
                    "n_episodes": result.n,
                    "fitted": result.fitted,
                    "reason": result.reason,
                    "deviance": result.deviance,
                    "null_deviance": result.null_deviance,
                    "pseudo_r2": result.pseudo_r2,
                    "mean_observed": result.mean_observed,
                    "mean_expected": result.mean_observed,
                }
            )
            for row in result.calibration.iter_rows(named=True):
                fits.append(
                    {
                        "bundle_id": bundle,
                        "model": model,
                        "decile": row["decile"],
                        "n_episodes": row["n"],
                        "fitted": result.fitted,
                        "reason": None,
                        "deviance": None,
                        "null_deviance": None,
                        "pseudo_r2": None,
                        "mean_observed": row["mean_observed"],
                        "mean_expected": row["mean_expected"],
                    }
                )
            expected = expected.with_columns(pl.Series(benchmark.expected_column(target), result.expected(episodes)))
            report[f"{bundle}:{model}"] = {
                "fitted": result.fitted,
                "solver": result.solver,
                "n": result.n,
                "reason": result.reason,
            }
        path = run.work / EXPECTED_DIR / f"{bundle}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        expected.write_parquet(path)
    table("casemix_coefficients").write(
        pl.DataFrame(coefficients, schema=table("casemix_coefficients").polars_schema()), run.work
    )
    table("casemix_fit").write(pl.DataFrame(fits, schema=table("casemix_fit").polars_schema()), run.work)
    run.timing["casemix"] = time.perf_counter() - t
    return report


# ------------------------------------------------------------------------------ step 3: per bundle
def _with_region(episodes: pl.DataFrame, providers: pl.DataFrame) -> pl.DataFrame:
    return (
        episodes.with_columns(pl.col("anchor_provider_agb").alias("provider_agb"))
        .join(providers.select("provider_agb", "region_code", "region_name"), on="provider_agb", how="left")
        .with_columns(pl.col("region_code").fill_null("unknown"), pl.col("region_name").fill_null("unknown"))
    )


def _publish(name: str, rows: pl.DataFrame, group: list[str], work: Path, min_cell: int) -> int:
    """Suppress, conform to the declared table and write; returns the rows written."""
    spec = table(name)
    if rows.height == 0:
        return 0
    values = [
        c
        for c in spec.column_names
        if c
        not in (
            "bundle_id",
            "year",
            "cost_basis",
            "level",
            "unit",
            "provider_agb",
            "region_code",
            "region_name",
            "outcome",
            "component",
            "phase",
            "suppressed",
            "suppression_reason",
            "n_episodes",
        )
    ]
    shown = suppress(rows.sort([*group, "level", "unit"]), group, values, min_cell=min_cell)
    spec.write(shown.select(spec.column_names), work)
    return shown.height


def build_bundle(run: PanelsRun, bundle: str) -> dict:
    """Step 3 for one bundle (a Dask task): every per-bundle table and its funnel plots."""
    t = time.perf_counter()
    definition = load_bundles()[bundle]
    episodes_path, work, options = Path(run.episodes), run.work, run.options
    providers = providers_with_region(Path(run.store))
    episodes = read_episodes(episodes_path, bundle)
    expected = pl.read_parquet(work / EXPECTED_DIR / f"{bundle}.parquet")
    episodes = _with_region(episodes.join(expected, on="episode_id", how="left"), providers)
    statuses = dict(episodes.group_by("status").len().iter_rows())
    chosen = episodes.filter(pl.col("status").is_in(list(options.statuses)))
    rows: dict[str, int] = {}

    rows["benchmark"] = (
        _publish("benchmark", benchmark.cost_rows(chosen, bundle), ["year", "cost_basis"], work, options.min_cell)
        if chosen.height
        else 0
    )
    outcomes = binary_outcomes(definition)
    skipped: dict[str, str] = {}
    outcome_rows = benchmark.outcome_rows(chosen, bundle, outcomes, skipped) if chosen.height else pl.DataFrame()
    rows["benchmark_outcomes"] = (
        _publish("benchmark_outcomes", outcome_rows, ["year", "outcome"], work, options.min_cell)
        if outcome_rows.height
        else 0
    )

    costs = []
    for year in run.years[bundle]:
        in_year = chosen.filter(pl.col("anchor_year") == year)
        if in_year.height:
            costs.append(
                bundle_costs(in_year, read_lines(episodes_path, bundle, year), bundle, year, options.winsorise_pct)
            )
    rows["bundle_costs"] = (
        _publish("bundle_costs", pl.concat(costs), ["year", "cost_basis", "component", "phase"], work, options.min_cell)
        if costs
        else 0
    )

    plots = 0
    published = table("benchmark").read(work, partition={"bundle_id": bundle})
    for (year, basis), group in published.group_by("year", "cost_basis", maintain_order=True):
        path = work / PLOTS_DIR / f"bundle_id={bundle}" / f"year={year}" / f"{basis}.png"
        if funnel_plot(group, f"{bundle} {year}: in-bundle cost per episode, {basis} (O/E, case-mix adjusted)", path):
            plots += 1

    contracts = read_contracts(Path(run.store)).filter(pl.col("bundle_id") == bundle)
    if contracts.height:
        lines = read_lines(episodes_path, bundle) if bundle == "birth_care" else None
        settled = reconcile(
            bundle,
            episodes.with_columns(
                pl.col(benchmark.COST_BASES["declared"][1]).alias("expected_cents"),
                pl.col(benchmark.COST_BASES["standardised"][1]).alias("expected_standardised_cents"),
            ),
            providers.rename({"region_code": "region"}),
            contracts,
            run.data_as_of,
            episode_lines=lines,
        )
        for name, frame in (
            ("reconciliation", settled.reconciliation),
            ("settlement", settled.settlement),
            ("placebo", settled.placebo),
            ("placebo_summary", settled.placebo_summary),
            ("reconciliation_phases", settled.phases),
        ):
            if frame.height:
                table(name).write(frame, work)
            rows[name] = frame.height
    return {
        "bundle": bundle,
        "rows": rows,
        "plots": plots,
        "statuses": statuses,
        "outcomes_not_compared": skipped,
        "excluded": {s: n for s, n in statuses.items() if s not in options.statuses},
        "seconds": round(time.perf_counter() - t, 3),
    }


def build_bundles(run: PanelsRun, mapper: Mapper = local_map) -> list[dict]:
    t = time.perf_counter()
    reports = mapper(build_bundle, [(run, b) for b in run.bundles])
    run.timing["bundles"] = time.perf_counter() - t
    return reports


# ------------------------------------------------------------------------------ step 4: finish
def finish(run: PanelsRun, casemix_report: dict, reports: list[dict]) -> dict:
    """Step 4: the initial-vs-final comparison, the manifest, the swap into place."""
    work = run.work
    shutil.rmtree(work / EXPECTED_DIR, ignore_errors=True)
    rows: Counter[str] = Counter()
    for report in reports:
        rows.update(report["rows"])
    for name in ("casemix_coefficients", "casemix_fit"):
        rows[name] = table(name).read(work).height
    if run.earlier is not None:
        earlier = table("reconciliation").read(Path(run.earlier))
        later = table("reconciliation").read(work)
        changes = compare(earlier, later) if earlier.height or later.height else pl.DataFrame()
        if changes.height:
            table("reconciliation_changes").write(changes, work)
        rows["reconciliation_changes"] = changes.height
    manifest = PanelsManifest(
        out=run.publication.target,
        data_as_of=run.data_as_of,
        inputs=run.inputs,
        options=run.options.model_dump(mode="json"),
        bundles=run.bundles,
        years=run.years,
        tables={
            name: {"grain": spec.grain, "key": list(spec.key), "partition_by": list(spec.partition_by)}
            for name, spec in PANEL_TABLES.items()
        },
        rows=dict(sorted(rows.items())),
        plots=sum(r["plots"] for r in reports),
        episodes_by_status={r["bundle"]: r["statuses"] for r in reports},
        episodes_left_out={r["bundle"]: r["excluded"] for r in reports},
        casemix=casemix_report,
        outcomes_not_compared={r["bundle"]: r["outcomes_not_compared"] for r in reports if r["outcomes_not_compared"]},
        code_version=code_version(),
        contract_version=CONTRACT_VERSION,
        timing_seconds={k: round(v, 3) for k, v in run.timing.items()},
    )
    manifest.timing_seconds["total"] = round(time.perf_counter() - run.started, 3)
    run.publication.commit(manifest.dump())
    return manifest.dump()


def abandon(run: PanelsRun) -> None:
    run.publication.abandon()


def build_panels(
    store: Path | str,
    episodes: Path | str,
    out: Path | str,
    options: PanelOptions | None = None,
    *,
    earlier: Path | str | None = None,
    mapper: Mapper = local_map,
    address: str | None = None,
) -> dict:
    """All steps in order, without Prefect (tests, small runs). ``address``: a Dask scheduler for
    the case-mix fits (None: fitted in this process)."""
    run = plan_panels(store, episodes, out, options, earlier=earlier)
    try:
        report = fit_casemix(run, address)
        reports = build_bundles(run, mapper)
        return finish(run, report, reports)
    except BaseException:
        abandon(run)
        raise
