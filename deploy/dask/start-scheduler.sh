#!/usr/bin/env bash
# Start the Dask scheduler (one per cluster). Workers and flows connect to tcp://<host>:8786.
set -euo pipefail
exec dask scheduler --host 0.0.0.0 --port 8786 --dashboard-address :8787
