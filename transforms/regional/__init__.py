"""The regional panel on the real Vektis open data (``zorgpad regional``, docs/panels-spec.md section 5):
cost per gemeente, year and category against the national rates of that year, standardised for sex
and age class, with funnel limits and trends. ``panel`` holds the rules (pure polars), ``plots`` the
charts, ``run`` the steps the Prefect flow ``flows/regional_flow.py`` wires together."""
