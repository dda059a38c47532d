# tumorpde — set-up, demo and tests.  Every target creates .venv/ on first use.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
NP    ?= 2
DEMO  ?= tme-2d
PYTEST_FLAGS ?= -q
# pytest-xdist workers of the serial session (one process per test; auto = one per core)
JOBS  ?= auto
STAMP := $(VENV)/.installed

EXPERIMENTS := stroma-dependence cafs immune-polarisation stem-cell-niche metastatic-potential cohort virtual-trial
SIZE ?= medium

.PHONY: setup demo test test-serial test-mpi verify verify-quick lint clean docs experiments resolution \
	constraints image-check bench

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/find-python
	@set -e; if [ ! -x $(PY) ]; then \
	  py=$$(scripts/find-python); echo "creating $(VENV) with $$py"; \
	  $$py -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt -e ".[fenics,test,plot,imaging]"
	$(PY) -c "import tumorpde.compat as c; c.import_dolfinx(); print('tumorpde set up:', c.versions())"
	@touch $(STAMP)

# the default simulation: the tme-2d scenario on $(NP) ranks (about 1 minute)
demo: $(STAMP)
	$(VENV)/bin/mpiexec -n $(NP) $(VENV)/bin/tumorpde run $(DEMO) -o out/demo

test: test-serial test-mpi

test-serial: $(STAMP)
	$(PY) -m pytest $(PYTEST_FLAGS) -n $(JOBS) --dist worksteal -m "not convergence"

# Library tests again on $(NP) ranks; the CLI tests launch their own mpiexec runs
# in the serial session, so they are deselected here.
test-mpi: $(STAMP)
	$(VENV)/bin/mpiexec -n $(NP) $(PY) -m pytest $(PYTEST_FLAGS) -p no:cacheprovider -m "not convergence and not subprocess and not serial"

# the long verification studies, then regenerate docs/verification.md and its figures
verify: $(STAMP)
	$(PY) -m pytest $(PYTEST_FLAGS) -m convergence
	$(PY) -m tumorpde.verification --out docs/verification.md

# a one-minute coarse report (not committed)
verify-quick: $(STAMP)
	$(PY) -m tumorpde.verification --quick --out out/verification-quick/verification.md

# regenerate docs/model.md, docs/metastasis.md and docs/spheroid.md from the models (tests check they are up to date)
docs: $(STAMP)
	$(VENV)/bin/tumorpde doc tme-2d -o docs/model.md
	$(VENV)/bin/tumorpde doc tme-metastasis -o docs/metastasis.md
	$(VENV)/bin/tumorpde doc spheroid -o docs/spheroid.md

# every bundled scenario at its mesh and step and 1.5 times finer: docs/resolution.md
# (about 30 minutes on 2 cores; tme-3d and tme-metastasis take most of it)
resolution: $(STAMP)
	$(VENV)/bin/mpiexec -n $(NP) $(PY) -m tumorpde.verification.resolution --out docs/resolution.md

# rerun every experiment of experiments/ (figures and results.json); SIZE=full|medium|small
experiments: $(STAMP)
	@set -e; for e in $(EXPERIMENTS); do echo "== $$e"; \
	  $(PY) experiments/$$e/run.py --size $(SIZE); done

# benchmarks (not part of `make test`): writes benchmarks/results.json and results.md, about
# 10-15 minutes on 2 cores; BENCH_FLAGS=--quick for a few minutes, BIOFVM_DIR=... for BioFVM
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	BIOFVM_DIR="$(BIOFVM_DIR)" $(PY) -m benchmarks.run $(BENCH_FLAGS)

lint: $(STAMP)
	$(PY) -m ruff check tumorpde tests docs/tutorials

# pin the versions installed in $(VENV) into constraints.txt (after changing dependencies)
constraints: $(STAMP)
	@{ sed -n '/^#/p' constraints.txt; echo "pip==$$($(PY) -m pip --version | cut -d' ' -f2)"; \
	  $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# the container recipes: hadolint on docker/Dockerfile*, then the image's install steps
# (docker/install.sh) in a fresh virtual environment and its smoke test (docker/smoke.sh)
image-check: $(STAMP)
	$(PY) -m pytest $(PYTEST_FLAGS) tests/test_deploy.py
	rm -rf build/image-venv
	PYTHON=$$(scripts/find-python) docker/install.sh build/image-venv .
	docker/smoke.sh build/image-venv/bin

clean:
	rm -rf out build *.egg-info .pytest_cache
