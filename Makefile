# sm-r-magic: `make demo` runs the quickstart notebook end to end on the local backend;
# `make test` sets up everything (R, the venv, Docker, chromium) and runs the whole suite.
# Works on a fresh Debian machine as root (or with sudo available for apt-get).

SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMPS := .cache/stamps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=600

# R and the R packages the container, the tests and the R package (kernel_ext) use, all from Debian.
R_PACKAGES := r-base-core r-base-dev r-cran-jsonlite r-cran-plumber r-cran-httpuv \
	r-cran-reticulate r-cran-irkernel r-cran-callr r-cran-processx r-cran-testthat r-cran-rstudioapi

.PHONY: help install system-deps venv demo test test-fast bench image docker-up docker-down browser clean

help:
	@echo "make demo   - set up and run notebooks/quickstart.ipynb on the local backend"
	@echo "make test   - set up everything and run the whole test suite"
	@echo "make bench  - run the benchmarks (serving, submission, docker)"
	@echo "make image  - build the shared R image sm-r-magic:latest"

install: system-deps venv

# apt-get only what is missing, so a warm machine pays nothing.
system-deps:
	@missing=$$(for p in $(R_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || missing="$$missing python3-venv python3-pip"; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:" $$missing; \
		$(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sm-r-magic)" >/dev/null
	@touch $@

demo: install
	$(PY) scripts/demo.py

browser: venv
	bash scripts/install-browser.sh $(VENV)

# The shared image; the debootstrap base is made when no registry is reachable.
image: docker-up
	bash scripts/build-image.sh

docker-up:
	bash scripts/ensure-docker.sh

docker-down:
	bash scripts/stop-docker.sh

# Everything: docker-backend, browser and R-package tests included (scripts/test.sh stops the Docker
# daemon it started by PID, also when tests fail).
test: install browser
	@dpkg -s docker-registry >/dev/null 2>&1 || $(APT_GET) install -y -qq --no-install-recommends docker-registry >/dev/null || true
	PY=$(PY) bash scripts/test.sh

# Without Docker and the browser: the quick loop while developing.
test-fast: install
	$(PY) -m pytest -q -m "not docker and not browser" $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache test-output .pytest_cache
