"""The readable half of a DiD report: the headline in plain words, the event-study plot and a
``report.html`` that opens anywhere.

Why self-contained: a report is mailed, archived next to a thesis or opened on a locked-down
analysis machine without internet. So the HTML carries its own styles and the plot as a base64
PNG, loads nothing from another server and runs no script; it is the same bytes for the same panel
and options (no timestamp in it: the manifest has the run's time).

Why the headline is a sentence: a contract manager reads "After the start, treated units' cost was
1,300 lower on average (95% CI ...)" and the pre-trend verdict next to it; the tables below are for
the analyst and the referee.
"""

from __future__ import annotations

import base64
import html
import io
import math

import polars as pl

from transforms.did.estimate import ALPHA, DidResult
from transforms.did.inputs import DidOptions, PreparedPanel

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 62em;
       color: #1d2733; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #d5dbe1; }
p.headline { font-size: 1.2em; background: #eef4fa; border-left: 4px solid #2b6cb0; padding: 0.7em 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #d5dbe1; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f5f7; } td.text, th.text { text-align: left; }
tr.overall td { font-weight: 600; background: #fafbfc; }
img { max-width: 100%; border: 1px solid #d5dbe1; }
.note { color: #4a5563; font-size: 0.92em; }
"""


# ------------------------------------------------------------------------------ numbers in words
def number(value: float | None, scale: float | None = None) -> str:
    """A number rounded to about two significant digits of ``scale`` (the largest value it is
    shown with), thousands separated: 0.040, 0.50, 2.5, 1,300. ``-`` for a missing value."""
    if value is None or not math.isfinite(value):
        return "-"
    scale = abs(scale if scale is not None else value)
    decimals = 3 if scale == 0 else min(6, max(0, 1 - math.floor(math.log10(scale))))
    text = f"{value:,.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text.replace(",", "")) == 0 else text


def p_value(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def headline(result: DidResult, options: DidOptions) -> str:
    """The effect and the pre-trend verdict in one or two plain sentences (the report's first line)."""
    overall = result.overall("simple")
    att, low, high = overall["att"], overall["ci_low"], overall["ci_high"]
    level = round((1 - ALPHA) * 100)
    if att is None:
        effect = f"The average effect on {options.y} after the start could not be estimated"
    else:
        scale = max(abs(v) for v in (att, low, high) if v is not None)
        direction = "lower" if att < 0 else "higher"
        size = number(abs(att), scale)
        if low is None or high is None:
            effect = f"After the start, treated units' {options.y} was {size} {direction} on average (no confidence interval)"
        elif low > 0 or high < 0:
            effect = (
                f"After the start, treated units' {options.y} was {size} {direction} on average "
                f"({level}% CI {number(low, scale)} to {number(high, scale)})"
            )
        else:
            effect = (
                f"After the start, treated units' {options.y} was {size} {direction} on average, but the "
                f"{level}% CI ({number(low, scale)} to {number(high, scale)}) includes no effect"
            )
    test = result.pretest
    if test.get("p_value") is None:
        trend = f"no pre-trend test was possible: {test.get('note') or 'there are no pre-treatment periods'}"
    elif test["p_value"] < ALPHA:
        trend = (
            f"the pre-trend test rejects parallel trends ({p_value(test['p_value'])}): before the start the "
            "treated already moved differently from the controls, so read the effect with care"
        )
    else:
        trend = f"the pre-trend test does not reject parallel trends ({p_value(test['p_value'])})"
    return f"{effect}; {trend}."


# ------------------------------------------------------------------------------ the plot
def event_study_png(result: DidResult, options: DidOptions) -> bytes:
    """The dynamic aggregation by event time with its 95% CI; periods before the start (and the
    anticipation periods) drawn apart from those after it, so a pre-trend is seen at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dynamic = result.aggregations.filter((pl.col("type") == "dynamic") & pl.col("event_time").is_not_null()).sort(
        "event_time"
    )
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    kinds = [
        ("before the start", pl.col("event_time") < -options.anticipation, "#8a94a0", "o"),
        ("anticipation", (pl.col("event_time") < 0) & (pl.col("event_time") >= -options.anticipation), "#d69e2e", "D"),
        ("after the start", pl.col("event_time") >= 0, "#2b6cb0", "s"),
    ]
    for label, condition, colour, marker in kinds:
        part = dynamic.filter(condition)
        if part.is_empty():
            continue
        e = part["event_time"].to_numpy()
        att = part["att"].to_numpy()
        low = (part["att"] - part["ci_low"]).fill_null(0).to_numpy()
        high = (part["ci_high"] - part["att"]).fill_null(0).to_numpy()
        ax.errorbar(
            e,
            att,
            yerr=[low, high],
            fmt=marker,
            color=colour,
            ecolor=colour,
            capsize=3,
            markersize=6,
            linewidth=1.2,
            label=f"{label} (95% CI)",
        )
    ax.axhline(0, color="#1d2733", linewidth=0.8)
    ax.axvline(-0.5 - options.anticipation, color="#8a94a0", linewidth=0.8, linestyle="--")
    ax.set_xlabel("periods since the start (event time)")
    ax.set_ylabel(f"ATT on {options.y}")
    ax.set_title(f"Event study: effect on {options.y} by time since the start")
    if not dynamic.is_empty():
        ax.set_xticks(dynamic["event_time"].to_list())
    ax.grid(axis="y", color="#e5e9ed", linewidth=0.6)
    ax.legend(loc="best", fontsize="small", frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


# ------------------------------------------------------------------------------ the page
def _decimals(frame: pl.DataFrame) -> int:
    """Decimals for a table's estimates: four for effects around 0.1, none for effects in the
    thousands (cents), from the largest effect in the table."""
    values = (
        [abs(v) for v in frame["att"].to_list() if v is not None and math.isfinite(v)] if "att" in frame.columns else []
    )
    scale = max(values, default=0.0)
    return 4 if scale == 0 else min(4, max(0, 3 - math.floor(math.log10(scale))))


def _cell(value: object, *, decimals: int = 4) -> str:
    if value is None:
        return "<td>-</td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, float):
        return f"<td>{value:,.{decimals}f}</td>" if math.isfinite(value) else "<td>-</td>"
    if isinstance(value, int):
        return f"<td>{value}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def _table(frame: pl.DataFrame, headers: dict[str, str], *, overall_when_null: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in headers.values())
    rows = []
    decimals = _decimals(frame)
    for row in frame.iter_rows(named=True):
        css = ' class="overall"' if overall_when_null and row.get(overall_when_null) is None else ""
        cells = "".join(
            _cell(row[c], decimals=decimals)
            if c != overall_when_null or row[c] is not None
            else '<td class="text">overall</td>'
            for c in headers
        )
        rows.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _pairs(pairs: list[tuple[str, object]]) -> str:
    rows = "".join(
        f'<tr><th class="text">{html.escape(k)}</th><td class="text">{html.escape(str(v))}</td></tr>' for k, v in pairs
    )
    return f"<table><tbody>{rows}</tbody></table>"


def options_used(options: DidOptions, panel_path: str) -> list[tuple[str, object]]:
    """The options in words, as the report and its readers need them."""
    errors = (
        "analytic (influence function)"
        if not options.bootstrap
        else f"multiplier bootstrap, {options.bootstrap_draws:,} draws, seed {options.seed}"
    )
    if options.cluster:
        errors += f", clustered by {options.cluster}"
    weights = options.weights or "none"
    if options.fix_weights != "none":
        weights += f" (time-varying weights fixed: {options.fix_weights})"
    methods = {
        "dr": "doubly robust (dr)",
        "ipw": "inverse probability weighting (ipw)",
        "reg": "outcome regression (reg)",
    }
    return [
        ("panel", panel_path),
        ("outcome (--y)", options.y),
        ("period (--t)", options.t),
        ("unit (--id)", options.id or "-"),
        ("first treated (--g)", options.g),
        ("never treated coded as", "0" if options.never_treated_coding == "zero" else "empty (NaN), mapped to 0"),
        ("covariates (--x)", ", ".join(options.x) or "none (unconditional parallel trends)"),
        ("control group", options.control.replace("_", " ")),
        ("method", methods[options.method]),
        ("data", "repeated cross-sections" if options.repeated_cross_sections else "panel (balanced by csdid)"),
        ("base period", options.base_period),
        ("anticipation periods", options.anticipation),
        ("weights", weights),
        ("standard errors", errors),
        ("confidence intervals", f"pointwise {round((1 - ALPHA) * 100)}%"),
    ]


AGG_TITLES = {
    "simple": "Overall average effect (simple)",
    "dynamic": "By time since the start (dynamic, event study)",
    "group": "By cohort (group)",
    "calendar": "By period (calendar)",
}
ESTIMATE_HEADERS = {"att": "ATT", "se": "std. error", "ci_low": "95% CI low", "ci_high": "95% CI high"}


def render_html(
    result: DidResult,
    prepared: PreparedPanel,
    options: DidOptions,
    *,
    panel_path: str,
    headline_text: str,
    png: bytes,
    versions: dict[str, str],
) -> str:
    """``report.html``: headline, options, the plot, the pre-test, every aggregation and ATT(g,t)."""
    image = base64.b64encode(png).decode("ascii")
    test = result.pretest
    pretest_pairs = [
        ("Wald statistic W", "-" if test["W"] is None else f"{test['W']:.4f}"),
        ("degrees of freedom", "-" if test["df"] is None else test["df"]),
        ("p-value", "-" if test["p_value"] is None else f"{test['p_value']:.5f}"),
    ]
    if test.get("note"):
        pretest_pairs.append(("note", test["note"]))
    data_pairs = [
        ("rows in the panel", f"{prepared.rows_read:,}"),
        ("rows used", f"{prepared.rows_used:,}"),
        ("units" if not options.repeated_cross_sections else "observations", f"{prepared.units:,}"),
        ("kept by csdid", f"{result.units_estimated:,}"),
        (
            "never-treated units" if not options.repeated_cross_sections else "never-treated observations",
            f"{prepared.never_treated_units:,}",
        ),
        ("periods", f"{prepared.periods[0]} to {prepared.periods[-1]} ({len(prepared.periods)})"),
        ("cohorts (first treated)", ", ".join(str(g) for g in prepared.groups)),
    ]
    sections = []
    for kind in ("simple", "dynamic", "group", "calendar"):
        part = result.aggregations.filter(pl.col("type") == kind)
        index = {
            "dynamic": ("event_time", "event time"),
            "group": ("group", "cohort"),
            "calendar": ("time", "period"),
        }.get(kind)
        headers = ({index[0]: index[1]} if index else {}) | ESTIMATE_HEADERS
        sections.append(
            f"<h3>{html.escape(AGG_TITLES[kind])}</h3>"
            + _table(part, headers, overall_when_null=index[0] if index else None)
        )
    att_gt = _table(
        result.att_gt,
        {
            "group": "cohort",
            "time": "period",
            "event_time": "event time",
            "post": "after start",
            **ESTIMATE_HEADERS,
            "n_group": "units in cohort",
        },
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in prepared.notes + result.notes)
    title = f"Difference-in-differences: {options.y}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Callaway &amp; Sant'Anna (2021) group-time average treatment effects, estimated with csdid
{html.escape(versions.get("csdid", "?"))} (reproduces R did 2.5).</p>
<p class="headline" id="headline">{html.escape(headline_text)}</p>
<h2>Event study</h2>
<img alt="event study: the effect on {html.escape(options.y)} by time since the start, with 95% confidence intervals"
 src="data:image/png;base64,{image}">
<p class="note">Grey: periods before the start (their effects should be about zero when trends are parallel);
{"amber: the anticipation periods just before the start; " if options.anticipation else ""}blue: after the start. Each point is the average effect over the cohorts observed that long after (or before)
their start; bars are pointwise 95% confidence intervals.</p>
<h2>Pre-trend test</h2>
<p class="note">Wald test that every ATT(g,t) before the start is zero (R did's W).</p>
{_pairs(pretest_pairs)}
<h2>Aggregated effects</h2>
{"".join(sections)}
<h2>Group-time effects ATT(g,t)</h2>
{att_gt}
<h2>Options</h2>
{_pairs([(k, v) for k, v in options_used(options, panel_path)])}
<h2>Data</h2>
{_pairs(data_pairs)}
{f'<ul class="note">{notes}</ul>' if notes else ""}
<p class="note">zorgpad {html.escape(versions.get("zorgpad", "?"))}; input SHA-256 {html.escape(versions.get("input_sha256", "?"))}.
The tables are in att_gt.parquet and aggregations.parquet beside this page; manifest.json has every option.</p>
</body>
</html>
"""
