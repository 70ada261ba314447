"""Populations for shared savings (``docs/panels-spec.md`` section 4).

- ``attribution``: insured attributed per calendar quarter to the GP practice that declared their
  registration fee (inschrijftarief) that quarter; the counts of what was not attributed and why;
  an enrolled population (a list of practices, or the GP practices of a contract) and its
  attributed insured per quarter.

Pure polars, no Prefect or Dask.
"""
