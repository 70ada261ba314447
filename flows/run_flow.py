"""Prefect flow ``run``: the whole pipeline on one delivery into one folder, resumable and cached.

    OUT/manifest.json   the run: every stage's key, outcome, time and summary
    OUT/store/          zorgpad ingest           OUT/episodes/   zorgpad episodes
    OUT/panels/         zorgpad panels           OUT/did/<spec>/ zorgpad panel build, one per spec
    OUT/report/         index.html, the run report

Each stage is the flow of its own command, run as a sub-flow on one Dask cluster (started here, or
the ``scheduler`` given). A stage whose key (``transforms.run_cache``: content of its inputs, options,
code and contract) is recorded with its folder complete is not run again: an unchanged delivery does
no work; a changed spec rebuilds only its panel. Retries only where a failure can be transient (the
report reading files a reader may hold open); validation and building are deterministic and are not
retried. The run manifest is written after every stage, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.dask_cluster import dask_cluster, scheduler_address
from flows.episodes_flow import episodes_flow
from flows.ingest_flow import ingest_flow
from flows.panel_build_flow import panel_build_flow
from flows.panels_flow import panels_flow
from transforms.hashing import file_sha256
from transforms.ingest.summary import quarantine_reasons
from transforms.manifests import EpisodesManifest, StoreManifest, parse_manifest
from transforms.output_folder import acquire_lock, check_target, release_lock
from transforms.run_cache import is_fresh, read_run_manifest, record_stage, stage_key, tree_digest, write_run_manifest

#: Stage outcomes in the run manifest: built in this run, or found complete for the same key.
BUILT, CACHED = "built", "cached"


@task(name="fingerprint inputs", cache_policy=NO_CACHE)
def fingerprint_task(delivery: str, specs: list[str], vektis: str | None) -> dict:
    """Content digests of the delivery, every spec and the Vektis folder (seconds per gigabyte)."""
    return {
        "delivery": tree_digest(delivery),
        "specs": {s: file_sha256(Path(s)) for s in specs},
        "vektis": tree_digest(vektis) if vektis else None,
    }


@task(name="run report", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def report_task(out: str) -> str:
    from transforms.report import build_report

    return str(build_report(out))


def spec_files(specs: str | None) -> list[str]:
    """The ``*.yaml``/``*.yml`` files of a spec folder, in name order; none when there is no such
    folder (a scheduled deployment's spec folder may be empty or not yet made; the command refuses
    a ``--specs`` that does not exist before the flow starts)."""
    if not specs or not Path(specs).is_dir():
        return []
    return [str(p) for p in sorted(Path(specs).iterdir()) if p.is_file() and p.suffix in (".yaml", ".yml")]


@flow(name="run", log_prints=True)
def run_flow(
    delivery: str,
    out: str,
    scheduler: str | None = None,
    workers: int | None = None,
    bundles: list[str] | None = None,
    specs: str | None = None,
    vektis: str | None = None,
    estimate: bool = True,
) -> dict:
    """Ingest ``delivery``, build episodes, panels and every DiD spec in ``specs`` into ``out``,
    skipping every stage whose output is already there for the same inputs; returns the run manifest."""
    logger = get_run_logger()
    if scheduler:  # refused before the run folder is made, so a wrong address leaves nothing behind
        scheduler = scheduler_address(scheduler)
    target = check_target(
        out,
        "run",
        inputs={
            "delivery": delivery,
            **({"spec folder": specs} if specs else {}),
            **({"Vektis folder": vektis} if vektis else {}),
        },
    )
    acquire_lock(target, command=f"zorgpad run --delivery {delivery} --out {out}")
    try:
        target.mkdir(parents=True, exist_ok=True)
        manifest = read_run_manifest(target)
        manifest.update({"delivery": str(Path(delivery).resolve()), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        write_run_manifest(target, manifest)  # the folder is a run folder from now on, also if killed
        specs_list = spec_files(specs)
        digests = fingerprint_task(delivery, specs_list, vektis)
        manifest["inputs"] = digests
        for entry in manifest["stages"].values():
            entry["outcome"] = "not in this run"  # e.g. a spec taken out of the folder: its panel stays
        stages: dict[str, str] = {}

        def stage(name: str, key: str, folder: str, kind: str, build) -> None:
            path = target / folder
            if is_fresh(manifest, name, key, path, kind):
                manifest["stages"][name]["outcome"] = CACHED
                logger.info("%s: unchanged since the run of %s, kept", name, manifest["stages"][name]["finished"])
            else:
                started = time.perf_counter()
                summary = build(str(path))
                record_stage(manifest, name, key, folder, seconds=time.perf_counter() - started, summary=summary)
                manifest["stages"][name]["outcome"] = BUILT
            stages[name] = manifest["stages"][name]["outcome"]
            write_run_manifest(target, manifest)

        with dask_cluster(scheduler, workers) as address:
            ingest_key = stage_key("ingest", {"delivery": digests["delivery"]})
            stage(
                "ingest",
                ingest_key,
                "store",
                "store",
                lambda path: _ingest_summary(ingest_flow(delivery, path, scheduler=address)),
            )
            store = str(target / "store")
            episodes_key = stage_key("episodes", {"store": ingest_key, "bundles": sorted(bundles or [])})
            stage(
                "episodes",
                episodes_key,
                "episodes",
                "episodes",
                lambda path: _episodes_summary(episodes_flow(store, path, bundles=bundles, scheduler=address)),
            )
            episodes = str(target / "episodes")
            panels_key = stage_key("panels", {"episodes": episodes_key})
            stage(
                "panels",
                panels_key,
                "panels",
                "panels",
                lambda path: {"rows": panels_flow(store, episodes, path, scheduler=address)["rows"]},
            )
            for spec in specs_list:
                name = Path(spec).stem
                key = stage_key(
                    "did",
                    {
                        "episodes": episodes_key,
                        "spec": digests["specs"][spec],
                        "vektis": digests["vektis"],
                        "estimate": estimate,
                    },
                )
                stage(
                    f"did:{name}",
                    key,
                    f"did/{name}",
                    "did_panel",
                    lambda path, spec=spec: {
                        "rows": panel_build_flow(
                            spec, store, episodes, path, estimate=estimate, scheduler=address, vektis=vektis
                        ).get("rows")
                    },
                )
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest["summary"] = run_summary(manifest)
        write_run_manifest(target, manifest)
        started = time.perf_counter()
        page = report_task(str(target))  # always rewritten: it shows this run's outcomes
        record_stage(
            manifest,
            "report",
            "",
            "report",
            seconds=time.perf_counter() - started,
            summary={"page": str(Path(page).relative_to(target))},
        )
        manifest["stages"]["report"]["outcome"] = BUILT
        write_run_manifest(target, manifest)
    finally:
        release_lock(target)
    return manifest


def run_summary(manifest: dict) -> dict:
    """What the run's last lines say: the books, validation failures by reason, episodes."""
    ingest = manifest["stages"]["ingest"]["summary"]
    return {
        "balanced": ingest["balanced"],
        "rows_delivered": ingest["rows_delivered"],
        "rows_quarantined": ingest["rows_quarantined"],
        "quarantine_reasons": ingest["quarantine_reasons"],
        "episodes": sum(manifest["stages"]["episodes"]["summary"]["episodes"].values()),
        "outcomes": {name: entry.get("outcome") for name, entry in manifest["stages"].items()},
    }


def _ingest_summary(manifest: dict) -> dict:
    store = parse_manifest(StoreManifest, manifest, "the store manifest")
    return {
        "delivery_id": store.delivery_id,
        "balanced": store.balanced,
        "rows_delivered": sum(e.rows_in for e in store.books.values()),
        "rows_quarantined": sum(e.rows_quarantined for e in store.books.values()),
        "quarantine_reasons": quarantine_reasons(manifest),
        "validation_success": store.validation.success,
        "data_docs": store.validation.data_docs,
    }


def _episodes_summary(manifest: dict) -> dict:
    episodes = parse_manifest(EpisodesManifest, manifest, "the episodes manifest")
    return {"episodes": episodes.episodes, "allocated_euros": episodes.allocated_euros}


__all__ = ["run_flow", "spec_files"]
