# gibench: `make demo` runs the embedded default pipeline, `make test` the test suite.
# Both bootstrap .venv idempotently: torch==2.13.0 first (the CPU wheel on this kind of
# machine; any other torch spec would pull CUDA packages), then gibench with its test extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gibench-installed
CORES  ?= 2
PYTEST_ARGS ?=

.PHONY: venv demo reproduce test test-fast bench clean-results slurm-up slurm-down

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/snakemake --cores $(CORES) --printshellcmds
	@$(PY) -m gibench.cli where

# the papers' claims a CPU can check, at converged settings (config/reproduce.yaml; README
# "Reproduce the papers' claims"): results/claims/<study>.{md,csv}
reproduce: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/snakemake --configfile config/reproduce.yaml --cores $(CORES)
	@$(PY) -m gibench.cli where

test: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest -m "not gpu" -v $(PYTEST_ARGS)

test-fast: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest -m "not gpu and not slow and not slurm" $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/run.py

clean-results:
	rm -rf results .snakemake/metadata .snakemake/incomplete

# A real single-node Slurm on this machine (root, Debian): `make slurm-up`, then e.g.
# `.venv/bin/snakemake --profile slurm`; `make slurm-down` stops what slurm-up started.
# The slurm-marked tests start and stop it themselves when it is not already up.
slurm-up:
	bash scripts/slurm_local.sh start

slurm-down:
	bash scripts/slurm_local.sh stop
