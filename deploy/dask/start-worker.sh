#!/usr/bin/env bash
# Start Dask workers on one machine: one process per core, one thread each (the tasks are polars
# and GX batches that use their own threads), memory limit per process. zorgpad must be installed
# on every worker machine (pip install zorgpad / pip install -e .), and every machine must see the
# delivery and store paths (a shared file system or object store mount).
set -euo pipefail
SCHEDULER=${1:?usage: start-worker.sh tcp://scheduler:8786 [processes] [memory-per-process]}
PROCESSES=${2:-$(nproc)}
MEMORY=${3:-6GiB}
exec dask worker "$SCHEDULER" --nworkers "$PROCESSES" --nthreads 1 --memory-limit "$MEMORY"
