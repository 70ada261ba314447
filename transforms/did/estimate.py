"""ATT(g,t), its aggregations and the pre-trend test with ``csdid`` 0.4.3, shaped into stable tables.

Why csdid and why pinned: it reproduces R ``did`` 2.5 on every mpdta reference scenario (control
groups, covariates, the three methods, weights, clustering, universal base period, anticipation,
repeated cross-sections, fixed weights) to about 1e-12 on Python 3.11 (``docs/did.md`` has the
comparison with moderndid and differences). A new csdid release may change numbers; the pin makes a
report rebuildable a year later, and the R references in ``reference/did_mpdta/r_ref/`` tell when
an upgrade does.

How csdid is driven, from its source (``csdid/att_gt.py``, ``aggte_fnc/``), not its README:

- ``ATTgt(...)`` preprocesses (never treated is ``G = 0``; :mod:`transforms.did.inputs` has mapped
  every other coding before), ``fit(est_method, base_period, bstrap)`` estimates; ``fit``'s
  ``bstrap`` defaults to True in csdid, so it is always passed explicitly;
- the pre-trend Wald statistic is ``MP["W"]`` / ``MP["Wpval"]`` (R's formula, p rounded to 5
  decimals); its degrees of freedom are the pre-treatment cells with a variance, recomputed here
  from the influence functions, and the p-value is given unrounded;
- ``aggte(typec)`` prints R's summary table to stdout (silenced here) and returns the overall effect
  and the per-index effects (event times, groups or periods in the panel's own units);
- the multiplier bootstrap draws from numpy's global random state: it is seeded with ``--seed``
  right before ``fit`` and restored afterwards, so the same seed gives the same standard errors.

Confidence intervals are pointwise (``att +- z * se``, z = 1.96 for 95%), as R's ``cband = FALSE``.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
import polars as pl
from scipy.stats import chi2, norm

from transforms.did.inputs import (
    CLUSTER,
    COHORT,
    OUTCOME,
    PERIOD,
    UNIT,
    WEIGHT,
    DidInputError,
    DidOptions,
    PreparedPanel,
    mask_identifiers,
)

CSDID_VERSION = "0.4.3"
ALPHA = 0.05
AGGREGATION_TYPES = ("simple", "dynamic", "group", "calendar")
#: The index column each aggregation type fills (``simple`` has none: its only row is the overall).
INDEX_OF = {"dynamic": "event_time", "group": "group", "calendar": "time"}
ATT_GT_SCHEMA = {
    "group": pl.Int64,
    "time": pl.Int64,
    "event_time": pl.Int64,
    "post": pl.Boolean,
    "att": pl.Float64,
    "se": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_group": pl.Int64,
}
AGGREGATION_SCHEMA = {
    "type": pl.String,
    "event_time": pl.Int64,
    "group": pl.Int64,
    "time": pl.Int64,
    "att": pl.Float64,
    "se": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
}


@dataclass
class DidResult:
    """One estimate: the two tables of the report, the pre-test and what csdid said on the way."""

    att_gt: pl.DataFrame
    aggregations: pl.DataFrame
    pretest: dict
    units_estimated: int  # units (observations for repeated cross-sections) csdid kept
    critical_value: float
    notes: list[str] = field(default_factory=list)

    def overall(self, kind: str = "simple") -> dict:
        """The overall row of one aggregation type (``simple``: the headline effect)."""
        return self.aggregations.filter(pl.col("type") == kind).row(0, named=True)


def csdid_version() -> str:
    """The installed csdid's version; a one-line error naming the extra when it is missing."""
    try:
        return metadata.version("csdid")
    except metadata.PackageNotFoundError:
        raise DidInputError(
            f'zorgpad did estimate needs csdid: pip install -e ".[did]" (or pip install csdid=={CSDID_VERSION})'
        ) from None


def _plain(message: str, names: dict[str, str]) -> str:
    """A csdid message in the panel's own column names (it only knows the internal ``zp_`` ones)."""
    for internal, column in sorted(names.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(internal, column)
    return mask_identifiers(re.sub(r"\s+", " ", message).strip())


def _names(options: DidOptions, prepared: PreparedPanel) -> dict[str, str]:
    names = {OUTCOME: options.y, PERIOD: options.t, COHORT: options.g, **prepared.covariates}
    if options.id:
        names[UNIT] = options.id
    if options.weights:
        names[WEIGHT] = options.weights
    if options.cluster:
        names[CLUSTER] = options.cluster
    return names


@contextlib.contextmanager
def _seeded(seed: int):
    """numpy's global random state seeded for the bootstrap, and put back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _fit(prepared: PreparedPanel, options: DidOptions, names: dict[str, str]):
    from csdid.att_gt import ATTgt

    panel = not options.repeated_cross_sections
    model = ATTgt(
        yname=OUTCOME,
        tname=PERIOD,
        idname=UNIT if panel else None,
        gname=COHORT,
        data=prepared.frame,
        control_group=options.csdid_control_group,
        xformla=prepared.formula,
        panel=panel,
        allow_unbalanced_panel=False,
        clustervar=CLUSTER if options.cluster else None,
        weights_name=WEIGHT if options.weights else None,
        anticipation=options.anticipation,
        cband=False,
        biters=options.bootstrap_draws,
        alp=ALPHA,
        fix_weights=options.csdid_fix_weights,
    )
    return model.fit(est_method=options.method, base_period=options.base_period, bstrap=options.bootstrap)


def _float(value) -> float | None:
    value = float(np.asarray(value, dtype=float).reshape(-1)[0]) if value is not None else None
    return None if value is None or not np.isfinite(value) else value


def _pretest(model, options: DidOptions) -> dict:
    """The Wald test that every pre-treatment ATT(g,t) is zero (R ``did``'s ``W``), with its
    degrees of freedom and unrounded p-value; nulls and the reason when there is none."""
    mp = model.MP
    w = _float(mp.get("W"))
    result = {
        "W": w,
        "df": None,
        "p_value": None,
        "p_value_csdid": _float(mp.get("Wpval")),
        "pre_cells": 0,
        "note": None,
    }
    group = np.asarray(mp["group"], dtype=float)
    time = np.asarray(mp["t"], dtype=float)
    pre = group - options.anticipation > time
    result["pre_cells"] = int(pre.sum())
    if w is None:
        if not pre.any():
            result["note"] = "there are no pre-treatment periods to test"
        elif options.bootstrap and options.cluster:
            result["note"] = (
                "R did and csdid leave it out with a clustered bootstrap, whose clusters the analytic "
                "variance would ignore; read the confidence intervals of the periods before the start"
            )
        else:
            result["note"] = (
                "the pre-treatment effects have no usable variance (zero, missing or a singular covariance)"
            )
        return result
    influence = np.asarray(mp["inffunc"]["inffunc"], dtype=float)  # units x cells
    spread = np.sqrt(np.mean(influence**2, axis=0))
    usable = pre & np.isfinite(spread) & (spread > 0)
    df = int(usable.sum())
    result["df"] = df
    result["p_value"] = float(chi2.sf(w, df))
    return result


def _group_sizes(model, options: DidOptions) -> dict[int, int]:
    data = model.dp["data"]
    if not options.repeated_cross_sections:
        data = data[data[PERIOD] == data[PERIOD].min()]
    return {int(g): int(n) for g, n in data.groupby(COHORT).size().items()}


def _att_gt_table(model, options: DidOptions) -> pl.DataFrame:
    results = model.results
    group = np.asarray(results["group"]).astype(np.int64)
    time = np.asarray(results["year"]).astype(np.int64)
    att = np.asarray(results["att"], dtype=float)
    se = np.asarray(results["se"], dtype=float)
    crit = float(results["c"])
    sizes = _group_sizes(model, options)
    frame = pl.DataFrame(
        {
            "group": group,
            "time": time,
            "event_time": time - group,
            "post": time >= group,
            "att": att,
            "se": se,
            "ci_low": att - crit * se,
            "ci_high": att + crit * se,
            "n_group": [sizes.get(int(g), 0) for g in group],
        },
        schema=ATT_GT_SCHEMA,
    )
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None)).sort("group", "time")


def _aggregations(model, options: DidOptions) -> pl.DataFrame:
    rows = []
    pointwise = float(norm.ppf(1 - ALPHA / 2))
    for kind in AGGREGATION_TYPES:
        with contextlib.redirect_stdout(io.StringIO()):
            model.aggte(typec=kind, na_rm=options.skip_missing_cells)
        out = model.atte
        att, se = _float(out["overall_att"]), _float(out["overall_se"])
        rows.append(
            {
                "type": kind,
                "event_time": None,
                "group": None,
                "time": None,
                "att": att,
                "se": se,
                "ci_low": None if att is None or se is None else att - pointwise * se,
                "ci_high": None if att is None or se is None else att + pointwise * se,
            }
        )
        if kind == "simple":
            continue
        crit = _float(out.get("crit_val_egt")) or pointwise
        index = np.asarray(out["egt"]).reshape(-1)
        att_e = np.asarray(out["att_egt"], dtype=float).reshape(-1)
        se_e = np.asarray(out["se_egt"], dtype=float).reshape(-1)
        for e, a, s in zip(index, att_e, se_e):
            a = None if not np.isfinite(a) else float(a)
            s = None if not np.isfinite(s) else float(s)
            row = {
                "type": kind,
                "event_time": None,
                "group": None,
                "time": None,
                "att": a,
                "se": s,
                "ci_low": None if a is None or s is None else a - crit * s,
                "ci_high": None if a is None or s is None else a + crit * s,
            }
            row[INDEX_OF[kind]] = int(e)
            rows.append(row)
    return pl.DataFrame(rows, schema=AGGREGATION_SCHEMA)


def estimate(prepared: PreparedPanel, options: DidOptions) -> DidResult:
    """ATT(g,t) with analytic (or, with ``options.bootstrap``, multiplier-bootstrap) standard
    errors, the simple, dynamic, group and calendar aggregations and the pre-trend test. A panel
    csdid refuses (a control group too small, nothing left after balancing) raises
    :class:`DidInputError` with csdid's reason in the panel's column names."""
    csdid_version()
    names = _names(options, prepared)
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()) as printed:
        warnings.simplefilter("always")
        try:
            with _seeded(options.seed) if options.bootstrap else contextlib.nullcontext():
                model = _fit(prepared, options, names)
                att_gt = _att_gt_table(model, options)
                aggregations = _aggregations(model, options)
        except (ValueError, KeyError, np.linalg.LinAlgError) as exc:
            raise DidInputError(f"csdid cannot estimate on this panel: {_plain(str(exc), names)}") from None
    for warning in caught:
        text = _plain(str(warning.message), names)
        if text not in notes and issubclass(warning.category, UserWarning):
            notes.append(text)
    for line in printed.getvalue().splitlines():
        if line.startswith(("Note:", "Dropped")) and _plain(line, names) not in notes:
            notes.append(_plain(line, names))
    kept = int(model.dp["n"])
    if not options.repeated_cross_sections:
        # csdid says "observations" where it drops units; say what happened in the panel's terms
        notes = [n for n in notes if "while converting to balanced panel" not in n]
        frame = prepared.frame
        first = frame[COHORT].gt(0) & frame[COHORT].le(prepared.periods[0] + options.anticipation)
        unbalanced = prepared.units - int(frame.loc[first, UNIT].nunique()) - kept
        if unbalanced > 0:
            notes.append(
                f"{unbalanced:,} of {prepared.units:,} units are not observed in every period and were "
                "left out (csdid estimates on the balanced panel, as R did does by default)"
            )
    missing = att_gt.filter(pl.col("att").is_null())
    if missing.height:
        cells = ", ".join(f"({g}, {t})" for g, t in missing.select("group", "time").iter_rows())
        notes.append(
            f"ATT(g,t) could not be estimated for {missing.height} (group, time) cell(s) {cells} (too few "
            "units, or covariates without variation in the cell); the aggregations use the others "
            "(R did: aggte(na.rm = TRUE))"
        )
    if prepared.never_treated_units == 0 and options.control == "not_yet_treated":
        last = max(prepared.groups)
        notes.append(
            f"no unit is never treated: the last cohort ({last}) serves only as a comparison group, and "
            f"periods from {last - options.anticipation} on are left out (nobody is left to compare with)"
        )
    return DidResult(
        att_gt=att_gt,
        aggregations=aggregations,
        pretest=_pretest(model, options),
        units_estimated=kept,
        critical_value=float(model.results["c"]),
        notes=notes,
    )
