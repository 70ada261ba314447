"""Panels: what analysts, contract managers and researchers consume, built from the episodes.

- ``casemix``: the case-mix models per bundle (Poisson pseudo-likelihood for costs, logistic for
  binary outcomes), fitted on the Dask cluster: dask-ml for large models, exact IRLS in one task
  for the others;
- ``funnel``: observed / expected, funnel limits with overdispersion, empirical-Bayes shrinkage;
- ``benchmark``: the provider benchmark table; ``suppression``: small-cell suppression;
- ``bundle_costs``: cost distributions per component and phase;
- ``reconciliation``: contract settlements, the placebo test over the pre-contract years;
- ``tables``: the declared output tables (grain, key, columns), from which schemas and docs come;
- ``run``: the whole build, written as one output folder.
"""
