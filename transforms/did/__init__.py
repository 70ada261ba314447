"""Callaway & Sant'Anna difference-in-differences on any panel, with a report that matches R ``did``.

``zorgpad did estimate`` (``flows/did_command.py``) is a thin wrapper around three steps kept here
as plain functions, so they are tested without the command line:

- :mod:`transforms.did.inputs` -- the options, reading the panel (parquet file, parquet folder with
  Hive partitions, or CSV) and checking it *before* the estimator sees it, so a wrong column or a
  never-treated coding of another package is refused with one message naming the column instead of
  being silently dropped or recoded by the estimator;
- :mod:`transforms.did.estimate` -- ATT(g,t), the four aggregations and the pre-trend Wald test
  with ``csdid`` (pinned; ``docs/did.md`` says why), shaped into tables with stable columns;
- :mod:`transforms.did.report` -- the event-study plot, the self-contained ``report.html`` with the
  headline in plain words, and the publication of the report folder (``transforms.output_folder``).

``csdid`` is an optional extra (``pip install -e ".[did]"``): it is imported only when an estimate
is made, so the rest of zorgpad installs and runs without it.
"""
