# gibench: `make demo` runs the embedded default pipeline, `make test` the test suite.
# Both bootstrap .venv idempotently: torch==2.13.0 first (the CPU wheel on this kind of
# machine; any other torch spec would pull CUDA packages), then gibench with its test extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gibench-installed
CORES  ?= 2
PYTEST_ARGS ?=

.PHONY: venv venv-gpu demo reproduce test test-fast bench clean-results slurm-up slurm-down

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# GPU nodes: the one supported cluster set-up (README "Running on a cluster") is this .venv on the
# filesystem the nodes share, with PyPI's CUDA build of torch (the Linux x86_64 wheel of torch
# 2.13.0 is built for CUDA 13.0 and brings its CUDA libraries; the nodes need an NVIDIA driver for
# CUDA 13).  torch comes from TORCH_INDEX alone (--isolated, no pip config): a local index or
# find-links holding torch 2.13.0+cpu would otherwise win over PyPI's CUDA wheel.  Another CUDA
# build: make venv-gpu TORCH_INDEX=<a PyTorch wheel index that lists torch 2.13.0 for your CUDA>.
# Exact versions of everything else: make venv-gpu CONSTRAINTS=envs/constraints.txt.
# Fails unless the installed torch is a CUDA build (whether a GPU is visible here is only printed:
# login nodes usually have none).
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?= https://pypi.org/simple
CONSTRAINTS   ?=
venv-gpu:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PIP_CONFIG_FILE=/dev/null $(PY) -m pip install --isolated --quiet --index-url $(TORCH_INDEX) "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[test]"
	$(PY) -c "import sys, torch; sys.exit(0 if torch.version.cuda else 'make venv-gpu: torch ' + torch.__version__ + ' is a CPU-only build; check TORCH_INDEX')"
	$(PY) -c "import torch; print('torch', torch.__version__, 'built for CUDA', torch.version.cuda, '- a GPU visible on this machine:', torch.cuda.is_available())"
	touch $(STAMP)

# Runs the pipeline, then prints the tables it made and where everything is.  No
# --printshellcmds: every rule is a script job, for which Snakemake prints "Shell command: None".
demo: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/snakemake --cores $(CORES)
	@$(PY) -m gibench.cli where --print-tables

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
