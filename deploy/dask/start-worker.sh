#!/usr/bin/env bash
# Start Dask workers on one machine: one process per core, one thread each (the tasks are polars
# and GX batches that use their own threads), memory limit per process. zorgpad must be installed
# on every worker machine (pip install zorgpad / pip install -e .), and every machine must see the
# delivery and store paths (a shared file system or object store mount).
set -euo pipefail
SCHEDULER=${1:?usage: start-worker.sh tcp://scheduler:8786 [processes] [memory-per-process]}
PROCESSES=${2:-$(nproc)}
MEMORY=${3:-6GiB}
# One thread per library pool in each process, set before the processes start: polars sizes its
# pool at import, and a pool per core in each of the per-core processes makes them fight over the
# cores (flows.dask_cluster.SINGLE_THREADED; the flows warn when they find it).
export POLARS_MAX_THREADS=1 OMP_NUM_THREADS=1 ARROW_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# Without Dask's MALLOC_TRIM_THRESHOLD_=65536 in the worker processes: any glibc malloc tunable
# switches off glibc's adaptive mmap threshold, and every numpy/pandas buffer over 128 KiB becomes a
# fresh, kernel-zeroed mmap (15-35% more CPU per task; flows.dask_cluster.ALLOCATOR_DEFAULTS).
export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON='{"MALLOC_TRIM_THRESHOLD_": None}'
exec dask worker "$SCHEDULER" --nworkers "$PROCESSES" --nthreads 1 --memory-limit "$MEMORY"
