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

.PHONY: help install system-deps libpython venv r-package demo test test-fast bench image docker-up docker-down \
	browser clean

help:
	@echo "make demo   - set up and run notebooks/quickstart.ipynb on the local backend"
	@echo "make test   - set up everything and run the whole test suite"
	@echo "make bench  - run the benchmarks (serving, submission, docker)"
	@echo "make image  - build the shared R image sm-r-magic:latest"
	@echo "make r-package - install the R package smrmagic (kernel_ext) into your R library"

install: system-deps libpython venv

# apt-get only what is missing, so a warm machine pays nothing.
system-deps:
	@missing=$$(for p in $(R_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || missing="$$missing python3-venv python3-pip"; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:" $$missing; \
		$(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# reticulate (the R package's bridge to Python) loads Python's shared library, libpython3.X.so, from the
# folders sysconfig names LIBPL and LIBDIR. Debian ships it apart from python3: for Debian 12's
# /usr/bin/python3 (which the venv is made from) that is the package libpython3.11 (-dev is not needed).
LIBPYTHON_FOUND := import glob, sys, sysconfig; v = "%d.%d" % sys.version_info[:2]; \
	print("yes" if any(glob.glob(f"{d}/libpython{v}*.so*") for d in \
	{sysconfig.get_config_var(k) for k in ("LIBPL", "LIBDIR")} if d) else f"libpython{v}")

libpython: system-deps
	@missing=$$($(PYTHON) -c '$(LIBPYTHON_FOUND)'); \
	if [ "$$missing" != yes ]; then \
		if dpkg -S "$$(readlink -f "$$(command -v $(PYTHON))")" >/dev/null 2>&1; then \
			echo "apt-get install: $$missing (Python's shared library, which reticulate loads)"; \
			$(APT_GET) install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "note: $(PYTHON) has no $$missing.so; the R package (reticulate) needs a Python built with --enable-shared"; \
		fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (sm-r-magic)" >/dev/null
	@touch $@

# The R package for IRkernel and RStudio users, into your R library (created when missing).
r-package: install
	@lib=$$(Rscript -e 'cat(path.expand(Sys.getenv("R_LIBS_USER")))'); mkdir -p "$$lib"; \
	out=$$(R CMD INSTALL --no-test-load --library="$$lib" kernel_ext/R/smrmagic 2>&1) || { echo "$$out"; exit 1; }; \
	echo "installed the R package smrmagic into $$lib" && \
	echo "tell R which Python runs it, e.g. in ~/.Renviron: SM_R_MAGIC_PYTHON=$(abspath $(PY))"

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
