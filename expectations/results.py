"""One validation result per suite, folded from the results of its many batches.

A table's verdicts are validated in batches of a few million rows
(``transforms.ingest.verdicts.validation_batches``), so a national delivery gives hundreds of
batches, and each batch's result carries the whole suite (code lists of thousands of values
included). Keeping them all would make the orchestrating process grow with the size of the
delivery, and Data Docs with a page per batch answer no question a data team asks. So results are folded as they arrive: per suite (``table.stage``) one
result whose counts are the sums over all batches, whose examples are the first ones seen, and
which fails when any batch failed. Memory is then bounded by the number of suites, not batches.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

#: Counts that add up over batches.
_SUMMED = ("element_count", "unexpected_count", "missing_count")
#: Examples kept per expectation in the folded result.
EXAMPLES = 20


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _fold_value_counts(into: list[dict], more: list[dict]) -> list[dict]:
    counts: Counter[str] = Counter()
    for entry in (*into, *more):
        counts[entry["value"]] += int(entry["count"])
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:EXAMPLES]
    return [{"value": value, "count": count} for value, count in ranked]


def _fold_expectation(into: dict, more: dict) -> None:
    """Add one batch's result of an expectation to the folded one (in place)."""
    if into["expectation_config"].get("meta") != more["expectation_config"].get("meta"):
        raise ValueError("results of one suite must list the same expectations in the same order")
    into["success"] = bool(into["success"] and more["success"])
    if more.get("exception_info", {}).get("raised_exception") and not into.get("exception_info", {}).get(
        "raised_exception"
    ):
        into["exception_info"] = more["exception_info"]
    a, b = into.setdefault("result", {}), more.get("result", {})
    for key in _SUMMED:
        if key in b:
            a[key] = a.get(key, 0) + b[key]
    if "partial_unexpected_list" in b:
        a["partial_unexpected_list"] = (a.get("partial_unexpected_list", []) + b["partial_unexpected_list"])[:EXAMPLES]
    if "partial_unexpected_counts" in b:
        a["partial_unexpected_counts"] = _fold_value_counts(
            a.get("partial_unexpected_counts", []), b["partial_unexpected_counts"]
        )
    if "observed_value" in b and not more["success"] and into.get("_observed_from_success", True):
        a["observed_value"] = b["observed_value"]  # a failing batch's observation says more
        into["_observed_from_success"] = False
    elements, missing, unexpected = a.get("element_count"), a.get("missing_count", 0), a.get("unexpected_count")
    if elements is not None and unexpected is not None:
        nonmissing = elements - missing
        a["unexpected_percent"] = _percent(unexpected, nonmissing)
        if "unexpected_percent_total" in a:
            a["unexpected_percent_total"] = _percent(unexpected, elements)
        if "unexpected_percent_nonmissing" in a:
            a["unexpected_percent_nonmissing"] = _percent(unexpected, nonmissing)
        if "missing_percent" in a:
            a["missing_percent"] = _percent(missing, elements)


class ValidationMerger:
    """Folds slim GX validation results (JSON dicts from ``validate_batch``) into one per suite."""

    def __init__(self) -> None:
        self._suites: dict[str, dict] = {}

    def absorb(self, result: dict | None) -> None:
        if not result:
            return
        name = result["suite_name"]
        meta = result.get("meta", {})
        batches = int(meta.get("batches", 1))  # a folded result (see ``load_results``) counts its batches
        if name not in self._suites:
            folded = json.loads(json.dumps(result))  # own copy: later batches are added into it
            folded["meta"] = {
                "table": meta.get("table"),
                "stage": meta.get("stage"),
                "batches": batches,
                "batch": f"{meta.get('table')}-{meta.get('stage')}-all",
                "first_batch": meta.get("first_batch", meta.get("batch")),
                "great_expectations_version": meta.get("great_expectations_version"),
            }
            for expectation in folded["results"]:
                expectation["_observed_from_success"] = bool(expectation["success"])
            folded.pop("id", None)
            self._suites[name] = folded
            return
        folded = self._suites[name]
        if len(folded["results"]) != len(result["results"]):
            raise ValueError(f"suite {name}: batches with different numbers of expectations")
        for into, more in zip(folded["results"], result["results"]):
            _fold_expectation(into, more)
        folded["meta"]["batches"] += batches
        folded["success"] = bool(folded["success"] and result["success"])

    def absorb_all(self, results: Iterable[dict]) -> ValidationMerger:
        for result in results:
            self.absorb(result)
        return self

    def results(self) -> list[dict]:
        """The folded results, one per suite, in suite-name order, with statistics recomputed."""
        out = []
        for name in sorted(self._suites):
            folded = json.loads(json.dumps(self._suites[name]))
            for expectation in folded["results"]:
                expectation.pop("_observed_from_success", None)
            evaluated = len(folded["results"])
            successful = sum(1 for r in folded["results"] if r["success"])
            folded["statistics"] = {
                "evaluated_expectations": evaluated,
                "successful_expectations": successful,
                "unsuccessful_expectations": evaluated - successful,
                "success_percent": _percent(successful, evaluated),
            }
            out.append(folded)
        return out

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.results()))
        return path


def load_results(paths: Iterable[Path]) -> list[dict]:
    """Folded results saved by :meth:`ValidationMerger.save` (missing files are skipped), folded
    again so a suite seen in several files appears once."""
    merger = ValidationMerger()
    for path in paths:
        if Path(path).exists():
            merger.absorb_all(json.loads(Path(path).read_text()))
    return merger.results()
