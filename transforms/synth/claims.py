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

from transforms.money import euros_to_cents
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


@dataclass(frozen=True)
class PopulationShift:
    """The planted population contract effect (``SynthConfig.population``) as ``finalise`` applies it:
    amounts of patients whose usual GP is in ``practices`` (provider indices), from ``start_day`` on,
    change by ``basis_points`` / 100 percent (rounded half away from zero to the cent); GP lines with
    a service code in ``exempt_service_cd`` (the registration fees) are left alone."""

    practices: np.ndarray
    start_day: int
    basis_points: int
    exempt_service_cd: tuple[str, ...]

    def affected(self, pop: Population, patient: np.ndarray, days: np.ndarray) -> np.ndarray:
        return np.isin(pop.usual["gp"][patient], self.practices) & (days >= self.start_day)

    def scale(self, cents: np.ndarray) -> np.ndarray:
        num = np.asarray(cents, dtype=np.int64) * (10_000 + self.basis_points)
        return np.sign(num) * ((np.abs(num) + 5_000) // 10_000)


def population_practices(effect, calibration, registry: ProviderRegistry) -> np.ndarray:
    """The ``effect.practices`` GP practices of ``effect.province`` with the most expected patients
    (ties by AGB), as provider indices sorted by AGB; all of the province's if it has fewer (a small
    delivery has about one practice per 3,500 insured, at least one per province). Deterministic and without random numbers: the
    expected patients of a practice follow :meth:`ProviderRegistry.nearby` -- a gemeente's insured
    share split evenly over its practices, or over the province's if the gemeente has none."""
    share = np.einsum("sa,sag->g", calibration.age_sex_share, calibration.gemeente_share)
    gp = registry.of_kind("gp")
    gp_gem = registry.gemeente[gp]
    per_gem = np.bincount(gp_gem, minlength=share.size)
    expected = np.zeros(gp.size)
    has = per_gem[gp_gem] > 0
    expected[has] = share[gp_gem[has]] / per_gem[gp_gem[has]]
    provinces = np.asarray(calibration.province_of_gemeente, dtype=object)
    gp_prov = registry.province[gp]
    for g in np.flatnonzero(per_gem == 0):
        pool = gp_prov == provinces[g]
        if pool.any():
            expected[pool] += share[g] / pool.sum()
    in_province = np.flatnonzero(gp_prov == effect.province)  # never empty (a provider of every kind per province)
    agb = registry.agb[gp[in_province]].astype(str)
    order = np.lexsort((agb, -expected[in_province]))
    chosen = gp[in_province[order[: effect.practices]]]
    return chosen[np.argsort(registry.agb[chosen].astype(str))]


def population_shift(config, calibration, registry: ProviderRegistry) -> PopulationShift | None:
    """The ``PopulationShift`` of ``config.population``, or None when it is off."""
    effect = config.population
    if not effect.active:
        return None
    from transforms.synth.background import REGISTRATION_CODES  # background imports the care paths
    from transforms.synth.calendar import year_start

    return PopulationShift(
        practices=population_practices(effect, calibration, registry),
        start_day=int(year_start(effect.start_year)),
        basis_points=round(effect.spending_pct * 100),
        exempt_service_cd=tuple(code for code, _, _ in REGISTRATION_CODES),
    )


@dataclass
class _Chunk:
    columns: dict[str, np.ndarray]
    extra: dict[str, object] = field(default_factory=dict)


#: The declaration lag per kind of care: ``slow_share`` of the lines are slow, the lag in days is then
#: lognormal with median ``slow_median_days`` and log-sd ``slow_sigma``, else with ``median_days`` and
#: ``sigma``; rounded to whole days, capped at ``cap_days``, plus ``offset_days``. ``truth.json``
#: ``declaration_lag`` is computed from these numbers (``transforms.synth.lag_truth``).
DECLARATION_LAG = {
    "hospital": {
        "median_days": 45.0,
        "sigma": 0.6,
        "slow_share": 0.15,
        "slow_median_days": 160.0,
        "slow_sigma": 0.7,
        "cap_days": 730,
        "offset_days": 7,
    },
    "first_line": {
        "median_days": 21.0,
        "sigma": 0.6,
        "slow_share": 0.06,
        "slow_median_days": 160.0,
        "slow_sigma": 0.7,
        "cap_days": 730,
        "offset_days": 1,
    },
}


def declaration_lag(rng: np.random.Generator, n: int, hospital: bool) -> np.ndarray:
    """Days between the end of care and the processing of its declaration.

    Most lines are processed within one or two months; a tail (disputes, settlements, reprocessing)
    takes up to two years. Hospital subtrajecten are slower than first-line care.
    """
    p = DECLARATION_LAG["hospital" if hospital else "first_line"]
    slow = rng.random(n) < p["slow_share"]
    lag = np.where(
        slow,
        rng.lognormal(np.log(p["slow_median_days"]), p["slow_sigma"], n),
        rng.lognormal(np.log(p["median_days"]), p["sigma"], n),
    )
    return np.minimum(np.round(lag), p["cap_days"]).astype(np.int64) + p["offset_days"]


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
        #: per claim table, the lines (row 0) and cents (row 1) per service day (``first_day`` + i) that
        #: are delivered once declared, counted by ``finalise`` before it draws the declaration lags:
        #: for ``truth.json`` ``declaration_lag``
        self.service_days: dict[str, np.ndarray] = {}
        #: (year, quarter of service) -> [lines, cents] the planted population effect took off the
        #: delivered lines (original minus changed amount), filled by ``finalise`` with a ``PopulationShift``
        self.population_savings: dict[tuple[int, int], list[int]] = {}

    # -- prices ------------------------------------------------------------------------------------
    def dbc_price_cents(self, product: Product, provider: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Negotiated price: national price x provider level x yearly growth; the same for every line
        of one product at one provider in one year (as contracts fix prices per year)."""
        euros = product.price_eur * self.registry.price_level(product.key, provider) * price_index(year_of(days))
        return euros_to_cents(euros)

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
        self._dbc.append(
            _Chunk(
                {
                    "row": rows,
                    "patient": patient,
                    "provider": np.broadcast_to(np.asarray(provider, dtype=np.int64), (n,)).copy(),
                    "start": np.asarray(start, dtype=np.int64),
                    "end": np.maximum(np.asarray(end, dtype=np.int64), start),
                    "amount": np.asarray(amount_cents, dtype=np.int64),
                    "background": np.full(n, origin == "background"),
                },
                {"product": product},
            )
        )
        for act in activities:
            qty = np.broadcast_to(np.asarray(act.quantity, dtype=np.int64), (n,))
            keep = qty > 0
            amount = np.broadcast_to(act.amount_cents, (n,)) if act.amount_cents is not None else None
            self._activities.append(
                _Chunk(
                    {
                        "row": rows[keep],
                        "day": np.broadcast_to(np.asarray(act.day, dtype=np.int64), (n,))[keep],
                        "quantity": qty[keep],
                        "amount": amount[keep] if amount is not None else np.full(int(keep.sum()), -1, dtype=np.int64),
                        "has_amount": np.full(int(keep.sum()), amount is not None),
                    },
                    {"code": act.code},
                )
            )
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
        self._first_line[table].append(
            _Chunk(
                {
                    "row": rows,
                    "patient": patient,
                    "provider": np.broadcast_to(np.asarray(provider, dtype=np.int64), (n,)).copy(),
                    "day": np.asarray(days, dtype=np.int64),
                    "amount": np.broadcast_to(np.asarray(amount_cents, dtype=np.int64), (n,)).copy(),
                    "background": np.full(n, origin == "background"),
                },
                extra,
            )
        )
        return rows

    # -- measuring (for calibration) --------------------------------------------------------------
    def cost_by_patient_year(
        self, table: str, first_year: int, last_year: int, *, background: bool | None = None
    ) -> np.ndarray:
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
    def finalise(
        self,
        *,
        block: int,
        first_day: int,
        last_day: int,
        as_of: int,
        withhold_late: bool,
        patient_ids: pl.Series,
        population: PopulationShift | None = None,
    ) -> tuple[dict[str, pl.DataFrame | None], dict[str, dict[str, int]], dict[str, ClaimIds]]:
        """Build the block's claim tables.

        Returns ``(tables, withheld, claim_ids)``: the tables as polars frames (days as int, money as
        ``amount_cents``, ``<col>_null`` masks); counts of lines withheld per table and reason; and
        per table the claim ids of the buffer rows, so care paths can name their trigger lines.
        With ``population`` the planted population effect changes the amounts first (after the
        calibration has measured them, so every random draw stays the same).
        """
        tables: dict[str, pl.DataFrame | None] = {}
        withheld: dict[str, dict[str, int]] = {}
        claim_ids: dict[str, ClaimIds] = {}
        agb = self.registry.agb_series
        insurers = pl.Series("insurer_uzovi", INSURERS)

        # ---- dbc ----
        cols = _concat_columns(self._dbc, ("row", "patient", "provider", "start", "end", "amount"))
        products = [c.extra["product"] for c in self._dbc]
        product_idx = (
            np.concatenate([np.full(c.columns["row"].size, i) for i, c in enumerate(self._dbc)])
            if self._dbc
            else np.zeros(0, dtype=np.int64)
        )
        end = np.minimum(cols["end"], self.pop.death_day[cols["patient"]])  # a subtraject closes at death
        spell = self.pop.spell_at(cols["patient"], cols["start"])
        reasons = _classify(
            ("outside_delivery_years", (cols["start"] < first_day) | (cols["start"] > last_day)),
            ("not_insured_or_deceased", spell < 0),
            ("not_closed_by_data_as_of", end > as_of),
        )
        dbc_shifted = np.zeros(self._n_dbc, dtype=bool)  # by buffer row, for the activities
        if population is not None:
            hit = population.affected(self.pop, cols["patient"], end)  # service date: the (delivered) end date
            cols["amount"], dbc_saved = _shifted(population, cols["amount"], hit)
            dbc_shifted[cols["row"][hit]] = True
        self.service_days["dbc"] = _per_day(end, cols["amount"], reasons == 0, first_day, as_of)
        declared = end + declaration_lag(self.rng, end.size, hospital=True)
        if withhold_late:
            reasons = np.where((reasons == 0) & (declared > as_of), len(_REASONS) - 1, reasons)
        else:
            declared = np.minimum(declared, as_of)
        keep = reasons == 0
        if population is not None:
            self._count_savings(end, dbc_saved, keep)
        withheld["dbc"] = _count_reasons(reasons[~keep])
        ids = ClaimIds.assign("D", block, cols["row"], keep, self._n_dbc)
        claim_ids["dbc"] = ids
        pidx = product_idx[keep]

        def product_attr(name: str, dtype=pl.String) -> pl.Series:
            return pl.Series(
                name, [getattr(p, name if name != "clinical" else "clinical") for p in products], dtype=dtype
            ).gather(pidx)

        tables["dbc"] = pl.DataFrame(
            [
                ids.kept.alias("claim_id"),
                patient_ids.gather(cols["patient"][keep]).alias("patient_id"),
                agb.gather(cols["provider"][keep]).alias("provider_agb"),
                insurers.gather(self.pop.spell_insurer[spell[keep]]),
                product_attr("specialism").alias("specialism_cd"),
                product_attr("diagnosis").alias("diagnosis_cd"),
                product_attr("product").alias("product_cd"),
                product_attr("care_type").alias("care_type_cd"),
                pl.Series("start_date", cols["start"][keep], dtype=pl.Int64),
                pl.Series("end_date", end[keep], dtype=pl.Int64),
                product_attr("clinical", pl.Boolean).alias("clinical"),
                pl.Series("amount_cents", cols["amount"][keep], dtype=pl.Int64),
                pl.Series("declared_on", declared[keep], dtype=pl.Int64),
            ]
        )

        # ---- dbc_activity ----
        acols = _concat_columns(self._activities, ("row", "day", "quantity", "amount"))
        has_amount = (
            np.concatenate([c.columns["has_amount"] for c in self._activities])
            if self._activities
            else np.zeros(0, dtype=bool)
        )
        code_vocab = sorted({c.extra["code"] for c in self._activities})
        code_idx = (
            np.concatenate(
                [np.full(c.columns["row"].size, code_vocab.index(c.extra["code"])) for c in self._activities]
            )
            if self._activities
            else np.zeros(0, dtype=np.int64)
        )
        end_by_row = np.full(self._n_dbc, -1, dtype=np.int64)
        end_by_row[cols["row"]] = end
        start_by_row = np.full(self._n_dbc, -1, dtype=np.int64)
        start_by_row[cols["row"]] = cols["start"]
        parent_kept = ids.position[acols["row"]] >= 0 if acols["row"].size else np.zeros(0, dtype=bool)
        inside = (acols["day"] <= end_by_row[acols["row"]]) & (acols["day"] >= start_by_row[acols["row"]])
        akeep = parent_kept & inside
        if population is not None:
            hit = dbc_shifted[acols["row"]] & has_amount
            acols["amount"] = np.where(hit, population.scale(acols["amount"]), acols["amount"])
        tables["dbc_activity"] = pl.DataFrame(
            [
                ids.of_rows(acols["row"][akeep]).alias("claim_id"),
                pl.Series("activity_cd", code_vocab, dtype=pl.String).gather(code_idx[akeep]),
                pl.Series("activity_date", acols["day"][akeep], dtype=pl.Int64),
                pl.Series("quantity", acols["quantity"][akeep], dtype=pl.Int32),
                pl.Series("amount_cents", np.where(has_amount[akeep], acols["amount"][akeep], 0), dtype=pl.Int64),
                pl.Series("amount_is_null", ~has_amount[akeep]),
            ]
        )
        withheld["dbc_activity"] = {
            "parent_not_delivered": int((~parent_kept).sum()),
            "after_subtraject_end": int((parent_kept & ~inside).sum()),
        }

        # ---- first-line tables ----
        for table in FIRST_LINE_TABLES:
            chunks = self._first_line[table]
            if not chunks:
                tables[table] = None
                withheld[table] = {}
                claim_ids[table] = ClaimIds.assign(
                    CLAIM_PREFIX[table], block, np.zeros(0, np.int64), np.zeros(0, bool), 0
                )
                continue
            fcols = _concat_columns(chunks, ("row", "patient", "provider", "day", "amount"))
            spell = self.pop.spell_at(fcols["patient"], fcols["day"])
            reasons = _classify(
                ("outside_delivery_years", (fcols["day"] < first_day) | (fcols["day"] > last_day)),
                ("not_insured_or_deceased", spell < 0),
            )
            if population is not None:
                hit = population.affected(self.pop, fcols["patient"], fcols["day"])
                if table == "gp":
                    hit &= ~_service_cd_in(chunks, population.exempt_service_cd)
                fcols["amount"], saved = _shifted(population, fcols["amount"], hit)
            self.service_days[table] = _per_day(fcols["day"], fcols["amount"], reasons == 0, first_day, as_of)
            declared = fcols["day"] + declaration_lag(self.rng, fcols["day"].size, hospital=False)
            if withhold_late:
                reasons = np.where((reasons == 0) & (declared > as_of), len(_REASONS) - 1, reasons)
            else:
                declared = np.minimum(declared, as_of)
            keep = reasons == 0
            if population is not None:
                self._count_savings(fcols["day"], saved, keep)
            withheld[table] = _count_reasons(reasons[~keep])
            ids = ClaimIds.assign(CLAIM_PREFIX[table], block, fcols["row"], keep, self._n_first_line[table])
            claim_ids[table] = ids
            keep_mask = pl.Series(keep)
            series = [
                ids.kept.alias("claim_id"),
                patient_ids.gather(fcols["patient"][keep]).alias("patient_id"),
                agb.gather(fcols["provider"][keep]).alias("provider_agb"),
                insurers.gather(self.pop.spell_insurer[spell[keep]]),
                pl.Series("service_date", fcols["day"][keep], dtype=pl.Int64),
                pl.Series("amount_cents", fcols["amount"][keep], dtype=pl.Int64),
                pl.Series("declared_on", declared[keep], dtype=pl.Int64),
            ]
            for name in sorted({k for c in chunks for k in c.extra}):
                series.append(_concat_extra(name, chunks).filter(keep_mask))
            tables[table] = pl.DataFrame(series)
        return tables, withheld, claim_ids

    def _count_savings(self, days: np.ndarray, saved: np.ndarray, delivered: np.ndarray) -> None:
        """Add the cents the population effect took off the delivered lines, per year and quarter of ``days``."""
        count = delivered & (saved != 0)
        if not count.any():
            return
        d = np.asarray(days, dtype=np.int64)[count].astype("datetime64[D]")
        year = d.astype("datetime64[Y]").astype(np.int64) + 1970
        quarter = d.astype("datetime64[M]").astype(np.int64) % 12 // 3 + 1
        for (y, q), lines, total in _group_sum(year * 10 + quarter, saved[count]):
            entry = self.population_savings.setdefault((y, q), [0, 0])
            entry[0] += lines
            entry[1] += total


def _shifted(population: PopulationShift, cents: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cents`` with the population effect applied where ``hit``, and the cents saved per line."""
    new = np.where(hit, population.scale(cents), cents)
    return new, np.asarray(cents, dtype=np.int64) - new


def _group_sum(key: np.ndarray, values: np.ndarray):
    """``((key // 10, key % 10), count, sum)`` per distinct key."""
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=values.astype(np.float64), minlength=keys.size)
    return [((int(k) // 10, int(k) % 10), int(c), int(round(s))) for k, c, s in zip(keys, counts, sums)]  # noqa: RUF046 - round() of a numpy 1.x scalar is a float


def _service_cd_in(chunks: list[_Chunk], codes: tuple[str, ...]) -> np.ndarray:
    """Per line of ``chunks`` (in concatenation order): its ``service_cd`` is one of ``codes``."""
    parts = []
    for c in chunks:
        n = c.columns["row"].size
        v = c.extra.get("service_cd")
        if v is None:
            parts.append(np.zeros(n, dtype=bool))
        elif isinstance(v, str):
            parts.append(np.full(n, v in codes))
        else:
            values = v.to_numpy() if isinstance(v, pl.Series) else np.asarray(v)
            parts.append(np.isin(np.broadcast_to(values.astype(str), (n,)), codes))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _per_day(days: np.ndarray, cents: np.ndarray, keep: np.ndarray, first_day: int, as_of: int) -> np.ndarray:
    """Lines (row 0) and cents (row 1) of the kept lines per day ``first_day`` .. ``as_of``."""
    offset = np.asarray(days, dtype=np.int64)[keep] - first_day
    n = as_of - first_day + 1
    return np.stack(
        [
            np.bincount(offset, minlength=n).astype(np.float64),
            np.bincount(offset, weights=np.asarray(cents, dtype=np.float64)[keep], minlength=n),
        ]
    )


@dataclass
class ClaimIds:
    """Claim ids of one table: ``position[row]`` is the row's place among the delivered lines (-1 if
    withheld) and ``kept`` the ids of the delivered lines in buffer order."""

    position: np.ndarray
    kept: pl.Series

    @classmethod
    def assign(cls, prefix: str, block: int, rows: np.ndarray, keep: np.ndarray, n_rows: int) -> ClaimIds:
        kept_rows = rows[keep]
        position = np.full(n_rows, -1, dtype=np.int64)
        position[kept_rows] = np.arange(kept_rows.size)
        ids = (
            pl.select(
                pl.concat_str([pl.lit(f"{prefix}{block:05d}-"), pl.Series(kept_rows).cast(pl.String).str.zfill(9)])
            )
            .to_series()
            .alias("claim_id")
        )
        return cls(position=position, kept=ids)

    def of_rows(self, rows: np.ndarray) -> pl.Series:
        """Ids of buffer rows that were delivered (callers filter on ``position >= 0``)."""
        return self.kept.gather(self.position[rows])

    def maybe(self, rows: np.ndarray) -> list[str | None]:
        """Ids of buffer rows, ``None`` for rows not delivered."""
        if rows.size == 0:
            return []
        pos = self.position[rows]
        got = self.kept.gather(np.maximum(pos, 0)).to_list()
        return [g if p >= 0 else None for g, p in zip(got, pos)]


def codes_series(vocabulary: tuple[str, ...], index: np.ndarray) -> pl.Series:
    """A String series from a small vocabulary and an index array (no Python strings per row)."""
    return pl.Series(list(vocabulary), dtype=pl.String).gather(np.asarray(index, dtype=np.int64))


def _concat_columns(chunks: list[_Chunk], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not chunks:
        return {k: np.zeros(0, dtype=np.int64) for k in names}
    return {k: np.concatenate([c.columns[k] for c in chunks]) for k in names}


def _concat_extra(name: str, chunks: list[_Chunk]) -> pl.Series:
    """Concatenate an extra column over chunks; chunks without it get nulls."""
    dtype = None
    for c in chunks:
        v = c.extra.get(name)
        if v is None:
            continue
        if isinstance(v, pl.Series):
            dtype = v.dtype
        elif isinstance(v, str) or np.asarray(v).dtype.kind in "OUS":
            dtype = pl.String
        else:
            dtype = pl.Series(np.asarray(v).ravel()[:1]).dtype
        break
    parts = []
    for c in chunks:
        n = c.columns["row"].size
        v = c.extra.get(name)
        if v is None:
            parts.append(pl.Series(name, [None], dtype=dtype).new_from_index(0, n))
        elif isinstance(v, pl.Series):
            parts.append(v.alias(name).cast(dtype))
        elif np.ndim(v) == 0:
            parts.append(pl.Series(name, [v.item() if hasattr(v, "item") else v], dtype=dtype).new_from_index(0, n))
        elif dtype == pl.String:
            parts.append(
                pl.Series(
                    name, np.asarray(v).astype(str) if np.asarray(v).dtype.kind == "U" else list(v), dtype=pl.String
                )
            )
        else:
            parts.append(pl.Series(name, np.asarray(v)).cast(dtype))
    return pl.concat(parts).alias(name)


_REASONS = (
    "",
    "outside_delivery_years",
    "not_insured_or_deceased",
    "not_closed_by_data_as_of",
    "declared_after_data_as_of",
)


def _classify(*conditions: tuple[str, np.ndarray]) -> np.ndarray:
    """First matching reason per line, as an index into ``_REASONS`` (0 = delivered)."""
    out = np.zeros(conditions[0][1].size, dtype=np.int8)
    for reason, mask in reversed(conditions):
        out[mask] = _REASONS.index(reason)
    return out


def _count_reasons(reasons: np.ndarray) -> dict[str, int]:
    counts = np.bincount(reasons.astype(np.int64), minlength=len(_REASONS))
    return {_REASONS[i]: int(c) for i, c in enumerate(counts) if c and i}


__all__ = [
    "DECLARATION_LAG",
    "FIRST_LINE_TABLES",
    "OPEN",
    "ActivityLines",
    "ClaimBuffer",
    "ClaimIds",
    "PopulationShift",
    "codes_series",
    "declaration_lag",
    "population_shift",
]
