"""Claims maturity (``docs/panels-spec.md`` section 7): how complete each service month of each
claim table is at the delivery's ``data_as_of``, estimated from the delivery itself by chain-ladder.

- ``triangle``: the declaration triangle (service month x development month, lines and cents, by the
  declaration of the original line), truncated at data_as_of;
- ``chainladder``: volume-weighted development factors, cumulative factors to ultimate (tail factor
  1 beyond the last age with enough service months), completion per service month, year and quarter;
- ``store``: reading a store's claim tables and corrections audit into the frames those take;
- ``tables``: the declared output tables (``tables/*.yml``), ``docs``: ``docs/maturity.md`` from them;
- ``run``: ``zorgpad maturity``, one output folder with a manifest.

Pure polars, no Prefect or Dask: a store's claim tables are read a few columns at a time and
aggregated to a few thousand cells at once.
"""
