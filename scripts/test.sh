#!/usr/bin/env bash
# What `make test` runs once the venv exists: Docker (daemon + image) when it can be had, the pytest
# suite, then the R package's testthat suite. A Docker daemon started here is stopped again by PID, also
# when a test fails or the run is interrupted.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

cleanup() { bash scripts/stop-docker.sh; }
trap cleanup EXIT

if bash scripts/ensure-docker.sh && bash scripts/build-image.sh; then
    echo "docker: daemon up, image sm-r-magic:latest built"
else
    echo "docker: unavailable here; the docker-backend tests will skip with the reason"
fi

status=0
"$PY" -m pytest -q -ra --durations=15 ${PYTEST_ARGS:-} || status=$?

# The R package for IRkernel/RStudio users, through reticulate on this venv's Python.
if [ -f kernel_ext/R/smrmagic/DESCRIPTION ]; then
    echo "testthat: kernel_ext/R/smrmagic"
    SM_R_MAGIC_PYTHON=$(readlink -f "$PY") RETICULATE_PYTHON=$(readlink -f "$PY") \
        Rscript -e 'res <- testthat::test_local("kernel_ext/R/smrmagic", reporter = "summary", stop_on_failure = TRUE)' \
        || { [ "$status" -ne 0 ] || status=1; }
fi
exit $status
