"""Render ``docs/panels.md``, the data dictionary of the panels, from the table declarations in
``transforms/panels/tables/`` and, for the regional panel of ``zorgpad regional``,
``transforms/regional/tables/``. Regenerate with ``python -m transforms.panels.docs``; a test fails
when the committed file differs, so the dictionary cannot drift from the files."""

from __future__ import annotations

from pathlib import Path

from transforms.panels.tables import PANEL_TABLES
from transforms.population.run import TABLES as POPULATION_TABLES
from transforms.regional.tables import REGIONAL_TABLES

DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "panels.md"

INTRO = """# Panels: data dictionary

Generated from `transforms/panels/tables/*.yml` by `python -m transforms.panels.docs`; do not edit by
hand (a test compares). Built by `zorgpad panels --store STORE --episodes EPISODES --out PANELS`.

```
PANELS/manifest.json                  inputs (store and episodes manifests, hashes), options, row counts,
                                      statuses left out, data_as_of, versions, timings
PANELS/<table>/bundle_id=<id>/[year=<y>/]part-0.parquet   every table below, Hive-partitioned
PANELS/funnel_plots/bundle_id=<id>/year=<y>/<cost_basis>.png   one funnel plot per bundle, year and basis
```

Money is integer cents, rounded half away from zero once; divide by 100 for euros. Every table has a
declared grain and key: the key is unique, and the rows are sorted by partition and key, so a
rebuild from the same store and episodes gives the same bytes. Query one table with its partitions,
for example in DuckDB:

```sql
SELECT * FROM read_parquet('PANELS/benchmark/**/*.parquet', hive_partitioning = true)
WHERE bundle_id = 'hip_oa' AND year = 2019 AND level = 'provider' AND outlier IS NOT NULL;
```
"""


REGIONAL_INTRO = """# Regional panel (real Vektis data)

Generated from `transforms/regional/tables/*.yml`. Built by
`zorgpad regional --vektis VEKTIS --out REGIONAL` from the output of `zorgpad ingest-vektis`
(`docs/vektis.md`): per gemeente, year (2011-2023) and Vektis cost category, the Zvw cost against
the cost expected from the national rates of that year, standardised for sex and age class.

```
REGIONAL/manifest.json                    inputs (the Vektis folder's manifest and every partition's
                                          SHA-256), release used, rows left out, s per category, per
                                          year the O/E range and the outlying gemeenten, versions, timings
REGIONAL/regional/year=<y>/part-0.parquet        the table `regional` below
REGIONAL/regional_rates/year=<y>/part-0.parquet  the national rates it is standardised against
REGIONAL/plots/funnel_total_<y>.png       the funnel of every year (all categories together)
REGIONAL/plots/trend_total_largest12.png  O/E per year of the 12 largest gemeenten, with trend lines
```

- **Release `final` only.** 2015 exists twice in the Vektis data; the first release (older municipal
  division) is left out, and its row count is in the manifest (`excluded_rows`).
- **Totals reconcile.** Per year and category, `sum(cost_cents)` over all rows (the unknown gemeente
  included) is the sum of the harmonised `value_cents`, to the cent; `sum(insured_years)` is theirs to the hundredth.
- **Expected adds up.** Expected cost = per sex x age cell of the gemeente, its insured-years times
  the national cost per insured-year of that cell (`regional_rates`), summed. Per year and category,
  `sum(expected_cents) == sum(cost_cents)` over the standardised gemeenten exactly: the expected
  values are rounded to cents by largest remainder (each category on its own, so the categories'
  expected cents may differ from the `total` row's by a few cents). The national O/E is 1 by construction.
- **Every gemeente is kept.** `gemeente` is the CBS code, `vektis:<NAME>` for a Vektis name without
  one (mergers after 2020 that Vektis applies to earlier years: Eemsdelta from 2019; Dijk en Waard,
  Land van Cuijk and Maashorst from 2020; Voorne aan Zee from 2022), and `unknown` for the insured
  whose gemeente Vektis does not know. The unknown row has no sex or age class: it has cost,
  insured-years and cost per insured-year, but no expected cost, O/E, limits or trend, and the
  national rates are those of the insured with a known gemeente.
- **Trend.** Per gemeente and category, the least-squares slope of O/E on the year over the
  gemeente's years in the input (`scipy.stats.linregress`), with its standard error (which assumes
  independent years: a description of the drift, not a test). A merged gemeente's series ends at the
  merger; its successor's begins there.
"""

REGIONAL_LIMITS = """## Regional panel: funnel limits from aggregate data

A funnel needs the spread of a gemeente's O/E if it were like the country (every insured-year costing
the national rate of its sex x age cell, plus chance). Assume the cost of one insured-year in a cell
has mean `m` (the national rate) and standard deviation `s m`, with one coefficient of variation `s`
per category. The gemeente's cost total then has variance `s^2 sum(n m^2)` over its cells (`n`
insured-years), so

```
se0 = s sqrt(sum(n m^2)) / E,   E = sum(n m)      (= s / sqrt(n) when all cells have one rate)
```

Vektis publishes no spread of the cost per person, so `s` is estimated from the panel itself: a
gemeente's persistent level cancels in the change of its O/E from one year to the next, and the
squared change has expectation `s^2 (q_t + q_{t-1}) + c`, with `q = sum(n m^2) / E^2` and `c` the
variance of real change. An OLS fit of `(oe_t - oe_{t-1})^2` on `q_t + q_{t-1}` over all pairs of
consecutive years of all gemeenten (statsmodels, HC1 standard errors) gives `s^2` as its slope; the
manifest reports `s`, its standard error, the intercept and the number of pairs per category (the
estimate therefore depends on the years in the input). With fewer than 20 pairs (one year only), or
a slope that is not positive, `s` is null and the category has no limits. The rest is the providers'
funnel (`transforms/panels/funnel.py`): z-scores, `phi` from the winsorised z-scores of all gemeenten
of the year and category, `tau2` by DerSimonian-Laird, limits `1 +/- z sqrt(se0^2 + tau2)` at 95% and
99.8%, and the outlier flag outside the adjusted 99.8% limits. Gemeenten differ far more than chance
allows (`phi` is large), so the random-effects limits are the ones to read; the unadjusted ones show
how little of the spread chance explains.

## Regional panel: what aggregate data cannot support

- **No person-level capping.** Vektis publishes cell totals, not persons: the benchmark with the
  costliest 5% capped at the 95th percentile cannot be computed from these data, nor can anything
  else that needs the distribution of cost over persons (medians, shares of high-cost insured). `s`
  above is an estimate from year-to-year changes, not a measured spread.
- **No case mix beyond age and sex.** The only adjusters are sex and 19 age classes. Morbidity,
  socio-economic status, institutional residence (nursing homes draw costly insured to some
  gemeenten), and the care on offer nearby are all in the O/E: a high O/E says the gemeente costs
  more than its age and sex predict, not that its care is inefficient.
- **Small cells are suppressed by Vektis.** Cells with fewer than 10 insured are not published, so
  a small gemeente misses e.g. its oldest men: their cost and insured-years are in neither its
  observed nor its expected, and its total insured-years are slightly short. The national totals of
  the panel are the totals of the published cells, which is what the harmonised table holds.
- **Municipal mergers.** Gemeenten are those of the Vektis files as the harmonisation maps them
  (2020 CBS division; later mergers kept under their Vektis name, which Vektis applies to the years
  just before the merger too). A merged gemeente's series breaks at the merger: the panel does not add
  the predecessors up (their rows are there to do so), and the trend of either side covers only its
  own years.
- **Residence, not place of care.** Costs are counted where the insured live, whatever hospital they
  use; an O/E is about a population, never about a provider.
- **Categories change scope.** District nursing (2015), first-line stay (2018) and GZSP (2020) moved
  into the Zvw, GGZ was restructured several times: the `total` and `rehabilitation_nursing` rows grow
  by scope, which O/E (relative to that year's country) absorbs but cost per insured-year does not.
"""


POPULATION_INTRO = """# Population benchmarks (shared savings on an enrolled population)

Generated from `transforms/population/tables/*.yml`. Built by
`zorgpad population --store STORE --vektis VEKTIS --population POP.yaml --out POPULATION`, where
`POP.yaml` names the enrolled population: `name`, `practices` (GP practice AGB codes) or
`contract_id` (the GP practices among a contract's providers), and `start_date`.

```
POPULATION/manifest.json                                  population, inputs, options, placebo, timings
POPULATION/population_benchmark/benchmark=<b>/part-0.parquet  every benchmark per quarter
POPULATION/population_placebo/part-0.parquet              the placebo of every benchmark
POPULATION/population_savings/part-0.parquet              the contract period: settled gap, and less the pre-period gap
POPULATION/attribution_counts/part-0.parquet              what the attribution did with every insured-quarter and fee
```

- **Attribution** (`transforms/population/attribution.py`): an insured belongs in a quarter to the
  GP practice that declared their registration fee (inschrijftarief, NZa codes 11000-11104) with a
  service date in that quarter; with two practices, the latest fee of the quarter (the registration
  at the quarter's end), then the higher amount, then the lowest AGB; with none, the insured-quarter
  is unattributed (never carried forward); a credited fee or one outside enrolment does not count.
- **Outcome**: total Zvw spending of the claim tables (dbc, gp, pharmacy, paramedical, maternity;
  `dbc_activity` only breaks DBCs down), net of corrections, by service date (a DBC's end date),
  per attributed insured per quarter, 0 for an insured without claims.
- **Benchmarks** (`transforms/population/benchmark.py`): `national` (every other attributed insured),
  `regional` (those of practices in the population's province), `regional_capped_p95` (every
  insured-quarter of population and region capped at the region's 95th percentile of that quarter),
  `casemix` (indirect age-class x sex standardisation against the Vektis costs per insured-year of the
  claim tables' categories, scaled by the data's national observed / expected), and
  `regional_casemix_capped` (zorgpad's own: the region's capped cost per age class x sex applied to
  the population's make-up).
- **Band and threshold**: the gap's 95% band from both groups' insured-level variances; the
  yearly savings threshold = 1.96 x its standard error x the population x 4: a smaller true saving
  cannot be told from noise. **Placebo**: the quarters before the start (2020-2021 left out by
  default): `spurious` when more quarters' bands miss 0 than chance gives (one in 20; binomial test),
  and `systematic` when the band of the mean gap (from the quarter-to-quarter spread) misses 0 -- a
  bias too small to see in a quarter that a settlement would still pay every year.
- What the data cannot support: attribution sees only registration fees (a patient who never sees a
  GP but is registered is counted; one unregistered is not), the region is the province of most of
  the population's practices, and the case mix is age and sex only (no morbidity).
"""


def render() -> str:
    lines = [INTRO]
    for table in PANEL_TABLES.values():
        lines += table.markdown()
    lines += [REGIONAL_INTRO]
    for table in REGIONAL_TABLES.values():
        lines += table.markdown()
    lines += [REGIONAL_LIMITS]
    lines += [POPULATION_INTRO]
    for table in POPULATION_TABLES.values():
        lines += table.markdown()
    return "\n".join(lines)


if __name__ == "__main__":
    DOCS_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {DOCS_PATH}")
