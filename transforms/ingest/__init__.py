"""Ingest a delivery: validate it (Great Expectations, generated from the contract), quarantine
bad rows with a reason, net corrections, and write a store bucketed by patient.

Entry point: :func:`transforms.ingest.run.ingest`; the Prefect flow is ``flows.ingest_flow``.
"""
