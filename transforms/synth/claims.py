"""Collect the claim lines of one patient block as column arrays, then turn them into delivery tables.

Care paths and background care call ``ClaimBuffer.dbc`` / ``ClaimBuffer.first_line`` with arrays
(one element per line); nothing is built row by row. ``finalise`` then keeps only what a real
delivery would hold: care while the patient is insured and alive, inside the delivery years,
subtrajecten closed by ``data_as_of``, and (unless ``--clean``) lines declared by ``data_as_of``.
Everything dropped is counted, so the truth file can say exactly what was withheld and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from transforms.synth.calendar import year_of
from transforms.synth.catalogue import Product, price_index
from transforms.synth.population import OPEN, Population
from transforms.synth.providers import INSURERS, ProviderRegistry

FIRST_LINE_TABLES = ("gp", "pharmacy", "paramedical", "maternity")
CLAIM_PREFIX = {"dbc": "D", "gp": "G", "pharmacy": "F", "paramedical": "P", "maternity": "K"}


@dataclass
class ActivityLines:
    """Activities registered in the DBC lines of one ``ClaimBuffer.dbc`` call (aligned arrays)."""

    code: str
    day: np.ndarray
    quantity: np.ndarray
    amount_cents: np.ndarray | None = None


@dataclass
class _Chunk:
    columns: dict[str, np.ndarray]
    extra: dict[str, object] = field(default_factory=dict)


def declaration_lag(rng: np.random.Generator, n: int, hospital: bool) -> np.ndarray:
    """Days between the end of care and the processing of its declaration.

    Most lines are processed within one or two months; a tail (disputes, settlements, reprocessing)
    takes up to two years. Hospital subtrajecten are slower than first-line care.
    """
    median = 45.0 if hospital else 21.0
    slow = rng.random(n) < (0.15 if hospital else 0.06)
    lag = np.where(slow, rng.lognormal(np.log(160.0), 0.7, n), rng.lognormal(np.log(median), 0.6, n))
    return np.minimum(np.round(lag), 730).astype(np.int64) + (7 if hospital else 1)


class ClaimBuffer:
    """The claim lines of one block, by table, before filtering and id assignment."""

    def __init__(self, population: Population, registry: ProviderRegistry, rng: np.random.Generator) -> None:
        self.pop = population
        self.registry = registry
        self.rng = rng
        self._dbc: list[_Chunk] = []
        self._activities: list[_Chunk] = []
        self._first_line: dict[str, list[_Chunk]] = {t: [] for t in FIRST_LINE_TABLES}
        self._n_dbc = 0
        self._n_first_line = {t: 0 for t in FIRST_LINE_TABLES}

    # -- prices ------------------------------------------------------------------------------------
    def dbc_price_cents(self, product: Product, provider: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Negotiated price: national price x provider level x yearly growth; the same for every line
        of one product at one provider in one year (as contracts fix prices per year)."""
        euros = product.price_eur * self.registry.price_factor[provider] * price_index(year_of(days))
        return np.round(euros * 100).astype(np.int64)

    # -- adding lines --------------------------------------------------------------------------------
    def dbc(
        self,
        product: Product,
        patient: np.ndarray,
        provider: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        *,
        origin: str,
        amount_cents: np.ndarray | None = None,
        activities: list[ActivityLines] = (),
    ) -> np.ndarray:
        """Add DBC subtrajecten of one product; returns their row numbers in the buffer."""
        patient = np.asarray(patient, dtype=np.int64)
        n = patient.size
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rows = np.arange(self._n_dbc, self._n_dbc + n)
        self._n_dbc += n
        if amount_cents is None:
            amount_cents = self.dbc_price_cents(product, provider, end)
        self._dbc.append(_Chunk({
            "row": rows,
            "patient": patient,
            "provider": np.broadcast_to(np.asarray(provider, dtype=np.int64), (n,)).copy(),
            "start": np.asarray(start, dtype=np.int64),
            "end": np.maximum(np.asarray(end, dtype=np.int64), start),
            "amount": np.asarray(amount_cents, dtype=np.int64),
            "background": np.full(n, origin == "background"),
        }, {"product": product}))
        for act in activities:
            qty = np.broadcast_to(np.asarray(act.quantity, dtype=np.int64), (n,))
            keep = qty > 0
            amount = (np.broadcast_to(act.amount_cents, (n,)) if act.amount_cents is not None else None)
            self._activities.append(_Chunk({
                "row": rows[keep],
                "day": np.broadcast_to(np.asarray(act.day, dtype=np.int64), (n,))[keep],
                "quantity": qty[keep],
                "amount": amount[keep] if amount is not None else np.full(int(keep.sum()), -1, dtype=np.int64),
                "has_amount": np.full(int(keep.sum()), amount is not None),
            }, {"code": act.code}))
        return rows

    def first_line(
        self,
        table: str,
        patient: np.ndarray,
        provider: np.ndarray,
        days: np.ndarray,
        amount_cents: np.ndarray,
        *,
        origin: str,
        **extra: object,
    ) -> np.ndarray:
        """Add first-line services (gp, pharmacy, paramedical, maternity); extra columns may be
        scalars or arrays (e.g. ``service_cd="12000"``, ``atc_cd=array``)."""
        patient = np.asarray(patient, dtype=np.int64)
        n = patient.size
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rows = np.arange(self._n_first_line[table], self._n_first_line[table] + n)
        self._n_first_line[table] += n
        self._first_line[table].append(_Chunk({
            "row": rows,
            "patient": patient,
            "provider": np.broadcast_to(np.asarray(provider, dtype=np.int64), (n,)).copy(),
            "day": np.asarray(days, dtype=np.int64),
            "amount": np.broadcast_to(np.asarray(amount_cents, dtype=np.int64), (n,)).copy(),
            "background": np.full(n, origin == "background"),
        }, extra))
        return rows

    # -- measuring (for calibration) --------------------------------------------------------------
    def cost_by_patient_year(self, table: str, first_year: int, last_year: int, *, background: bool | None = None) -> np.ndarray:
        """Euros (cents) per (patient, year) of the lines added so far that will be delivered
        (insured and alive on the date), optionally only background or only path lines."""
        n_years = last_year - first_year + 1
        out = np.zeros((self.pop.size, n_years), dtype=np.int64)
        chunks = self._dbc if table == "dbc" else self._first_line[table]
        for chunk in chunks:
            c = chunk.columns
            if background is not None:
                sel = c["background"] == background
            else:
                sel = np.ones(c["patient"].size, dtype=bool)
            day_col = c["start"] if table == "dbc" else c["day"]
            p, d, a = c["patient"][sel], day_col[sel], c["amount"][sel]
            y = year_of(d) - first_year
            ok = (y >= 0) & (y < n_years) & (p < self.pop.size) & (self.pop.spell_at(p, d) >= 0)
            np.add.at(out, (p[ok], y[ok]), a[ok])
        return out

    # -- finalising --------------------------------------------------------------------------------
    def finalise(self, *, block: int, first_day: int, last_day: int, as_of: int, withhold_late: bool,
                 patient_ids: np.ndarray) -> tuple[dict[str, pl.DataFrame], dict[str, dict[str, int]], dict[str, np.ndarray]]:
        """Build the block's claim tables.

        Returns ``(tables, withheld, claim_ids)``: the tables as polars frames with contract columns;
        counts of lines withheld per table and reason; and per table the claim_id of every buffer
        row (``None`` where the row was not delivered), so care paths can name their trigger lines.
        """
        tables: dict[str, pl.DataFrame] = {}
        withheld: dict[str, dict[str, int]] = {}
        claim_of_row: dict[str, np.ndarray] = {}

        # ---- dbc ----
        if self._dbc:
            cols = {k: np.concatenate([c.columns[k] for c in self._dbc]) for k in self._dbc[0].columns}
            product_idx = np.concatenate([np.full(c.columns["row"].size, i) for i, c in enumerate(self._dbc)])
            products = [c.extra["product"] for c in self._dbc]
        else:
            cols = {k: np.zeros(0, dtype=np.int64) for k in ("row", "patient", "provider", "start", "end", "amount")}
            cols["background"] = np.zeros(0, dtype=bool)
            product_idx = np.zeros(0, dtype=np.int64)
            products = []
        death = self.pop.death_day[cols["patient"]]
        end = np.minimum(cols["end"], death)  # a subtraject closes at death
        spell = self.pop.spell_at(cols["patient"], cols["start"])
        reasons = _classify(
            ("outside_delivery_years", (cols["start"] < first_day) | (cols["start"] > last_day)),
            ("not_insured_or_deceased", spell < 0),
            ("not_closed_by_data_as_of", end > as_of),
        )
        declared = end + declaration_lag(self.rng, end.size, hospital=True)
        late = declared > as_of
        if withhold_late:
            reasons = np.where((reasons == "") & late, "declared_after_data_as_of", reasons)
        else:
            declared = np.minimum(declared, as_of)
        keep = reasons == ""
        withheld["dbc"] = _count_reasons(reasons[~keep])
        claim_ids = np.full(cols["row"].size, None, dtype=object)
        order = np.argsort(cols["row"], kind="stable")
        kept_rows = cols["row"][keep]
        ids = _claim_ids("D", block, kept_rows)
        row_to_id = np.full(self._n_dbc, None, dtype=object)
        row_to_id[kept_rows] = ids
        claim_of_row["dbc"] = row_to_id
        del order, claim_ids
        pidx = product_idx[keep]
        insurer = self.pop.spell_insurer[spell[keep]]
        dbc = frame_of({
            "claim_id": ids,
            "patient_id": patient_ids[cols["patient"][keep]],
            "provider_agb": self.registry.agb[cols["provider"][keep]],
            "insurer_uzovi": np.array(INSURERS, dtype=object)[insurer],
            "specialism_cd": np.array([p.specialism for p in products], dtype=object)[pidx] if products else [],
            "diagnosis_cd": np.array([p.diagnosis for p in products], dtype=object)[pidx] if products else [],
            "product_cd": np.array([p.product for p in products], dtype=object)[pidx] if products else [],
            "care_type_cd": np.array([p.care_type for p in products], dtype=object)[pidx] if products else [],
            "start_date": cols["start"][keep],
            "end_date": end[keep],
            "clinical": np.array([p.clinical for p in products], dtype=bool)[pidx] if products else np.zeros(0, bool),
            "amount_cents": cols["amount"][keep],
            "declared_on": declared[keep],
        }, {"start_date": pl.Int64, "end_date": pl.Int64, "declared_on": pl.Int64})
        tables["dbc"] = dbc

        # ---- dbc_activity ----
        if self._activities:
            acols = {k: np.concatenate([c.columns[k] for c in self._activities]) for k in self._activities[0].columns}
            codes = np.concatenate([np.full(c.columns["row"].size, c.extra["code"], dtype=object) for c in self._activities])
        else:
            acols = {k: np.zeros(0, dtype=np.int64) for k in ("row", "day", "quantity", "amount")}
            acols["has_amount"] = np.zeros(0, dtype=bool)
            codes = np.zeros(0, dtype=object)
        parent = row_to_id[acols["row"]]
        # parent's (possibly death-shortened) end date bounds the activity dates
        end_by_row = np.full(self._n_dbc, -1, dtype=np.int64)
        end_by_row[cols["row"]] = end
        start_by_row = np.full(self._n_dbc, -1, dtype=np.int64)
        start_by_row[cols["row"]] = cols["start"]
        inside = (acols["day"] <= end_by_row[acols["row"]]) & (acols["day"] >= start_by_row[acols["row"]])
        akeep = (parent != None) & inside  # noqa: E711 (object array comparison)
        tables["dbc_activity"] = frame_of({
            "claim_id": parent[akeep],
            "activity_cd": codes[akeep],
            "activity_date": acols["day"][akeep],
            "quantity": acols["quantity"][akeep].astype(np.int32),
            "amount_cents": np.where(acols["has_amount"][akeep], acols["amount"][akeep], 0),
            "amount_is_null": ~acols["has_amount"][akeep],
        }, {"activity_date": pl.Int64})
        withheld["dbc_activity"] = {"parent_not_delivered": int((parent == None).sum()),  # noqa: E711
                                    "after_subtraject_end": int(((parent != None) & ~inside).sum())}  # noqa: E711

        # ---- first-line tables ----
        for table in FIRST_LINE_TABLES:
            chunks = self._first_line[table]
            if not chunks:
                tables[table] = None  # type: ignore[assignment]
                withheld[table] = {}
                claim_of_row[table] = np.full(0, None, dtype=object)
                continue
            fcols = {k: np.concatenate([c.columns[k] for c in chunks]) for k in chunks[0].columns}
            extra_names = sorted({k for c in chunks for k in c.extra})
            extras = {name: _concat_extra(name, chunks) for name in extra_names}
            spell = self.pop.spell_at(fcols["patient"], fcols["day"])
            reasons = _classify(
                ("outside_delivery_years", (fcols["day"] < first_day) | (fcols["day"] > last_day)),
                ("not_insured_or_deceased", spell < 0),
            )
            declared = fcols["day"] + declaration_lag(self.rng, fcols["day"].size, hospital=False)
            if withhold_late:
                reasons = np.where((reasons == "") & (declared > as_of), "declared_after_data_as_of", reasons)
            else:
                declared = np.minimum(declared, as_of)
            keep = reasons == ""
            withheld[table] = _count_reasons(reasons[~keep])
            kept_rows = fcols["row"][keep]
            ids = _claim_ids(CLAIM_PREFIX[table], block, kept_rows)
            row_to_id = np.full(self._n_first_line[table], None, dtype=object)
            row_to_id[kept_rows] = ids
            claim_of_row[table] = row_to_id
            frame = {
                "claim_id": ids,
                "patient_id": patient_ids[fcols["patient"][keep]],
                "provider_agb": self.registry.agb[fcols["provider"][keep]],
                "insurer_uzovi": np.array(INSURERS, dtype=object)[self.pop.spell_insurer[spell[keep]]],
                "service_date": fcols["day"][keep],
                "amount_cents": fcols["amount"][keep],
                "declared_on": declared[keep],
            }
            overrides = {"service_date": pl.Int64, "declared_on": pl.Int64}
            for name, (values, missing) in extras.items():
                frame[name] = values[keep]
                if missing is not None:
                    frame[f"{name}_null"] = missing[keep]
                if values.dtype == object:
                    overrides[name] = pl.String
            tables[table] = frame_of(frame, overrides)
        return tables, withheld, claim_of_row


def frame_of(columns: dict[str, object], overrides: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """A polars frame from numpy columns; object arrays (codes, ids, with None) become String."""
    series = []
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.dtype == object:
            series.append(pl.Series(name, values.tolist(), dtype=pl.String))
        elif isinstance(values, list):
            series.append(pl.Series(name, values, dtype=(overrides or {}).get(name)))
        else:
            dtype = (overrides or {}).get(name)
            s = pl.Series(name, values)
            series.append(s.cast(dtype) if dtype is not None and s.dtype != dtype else s)
    return pl.DataFrame(series)


def _concat_extra(name: str, chunks: list[_Chunk]) -> tuple[np.ndarray, np.ndarray | None]:
    """Concatenate an extra column over chunks; chunks without it get nulls (a mask for numbers)."""
    parts, masks = [], []
    numeric = None
    for c in chunks:
        v = c.extra.get(name)
        if v is not None and numeric is None:
            numeric = not isinstance(v, str) and np.asarray(v).dtype != object
    for c in chunks:
        n = c.columns["row"].size
        v = c.extra.get(name)
        if v is None:
            parts.append(np.zeros(n) if numeric else np.full(n, None, dtype=object))
            masks.append(np.ones(n, dtype=bool))
        else:
            a = np.broadcast_to(np.asarray(v, dtype=None if numeric else object), (n,))
            parts.append(a)
            masks.append(np.zeros(n, dtype=bool))
    values = np.concatenate(parts)
    missing = np.concatenate(masks)
    return values, (missing if numeric and missing.any() else None)


def _classify(*conditions: tuple[str, np.ndarray]) -> np.ndarray:
    """First matching reason per line ('' = delivered)."""
    n = conditions[0][1].size
    out = np.full(n, "", dtype=object)
    for reason, mask in reversed(conditions):
        out[mask] = reason
    return out


def _count_reasons(reasons: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(reasons.astype(str), return_counts=True) if reasons.size else ([], [])
    return {str(v): int(c) for v, c in zip(values, counts)}


def _claim_ids(prefix: str, block: int, rows: np.ndarray) -> np.ndarray:
    """Deterministic claim ids: table letter, block, row number (e.g. ``D00003-000001234``)."""
    return (
        pl.Series("row", rows, dtype=pl.Int64)
        .cast(pl.String)
        .str.zfill(9)
        .map_batches(lambda s: pl.lit(f"{prefix}{block:05d}-") + s) if False else
        pl.select(pl.concat_str([pl.lit(f"{prefix}{block:05d}-"), pl.Series(rows).cast(pl.String).str.zfill(9)])).to_series()
    ).to_numpy().astype(object)


__all__ = ["ActivityLines", "ClaimBuffer", "FIRST_LINE_TABLES", "OPEN", "declaration_lag"]
