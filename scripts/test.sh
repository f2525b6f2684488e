#!/usr/bin/env bash
# What `make test` runs once the venv exists: Docker (daemon + image) when it can be had, the pytest
# suite (which includes the R package's testthat suite). A Docker daemon started here is stopped again by PID, also
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

# The R package's testthat suite runs inside pytest (tests/test_kernel_ext.py).
exit $status
