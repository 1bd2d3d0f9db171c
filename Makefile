# Every target is a thin call of the `ptblm` command line (see `ptblm --help`).
#   make submit EXP=3.1 [CLUSTER=local] [DRY_RUN=1] [FORCE=1] [EXECUTOR=auto|slurm|local] [SET="num_epochs=40 seeds=1111,1,2"]
#   make samples ARGS='--rnn DIR --gru DIR --no-unk'   (gradients too: ARGS='--rnn DIR --gru DIR --lstm DIR')
#   make data [CORPUS=wikitext-2]                        (default: PTB into data/ptb)
# Set-up: a virtualenv in .venv; TORCH_SPEC picks the torch build (CPU wheel here; on a cluster
# login node use e.g. TORCH_SPEC='torch>=2.4,<2.15' to get the CUDA build).
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXP        ?=
# EXP: one or more experiments, or all; submit and sbatch default to smoke, status and tensorboard to every one with results
CLUSTER    ?= local
PTBLM      := $(VENV)/bin/ptblm
STAMP      := $(VENV)/.installed
DRY_RUN    ?=
FORCE      ?=
EXECUTOR   ?= auto
EXPS       ?=
# EXPS: the experiments that tables/figures/report cover (default: every one under results/ but manual/)
ENGINE     ?= docker
BASE       ?=
BASE_TORCH ?=
SET        ?=
# SET: space-separated KEY=VALUE[,VALUE...] overrides, each passed as --set KEY=VALUE
SUBMIT_FLAGS := $(if $(DRY_RUN),--dry-run) $(if $(FORCE),--force) $(foreach item,$(SET),--set $(item))
IMAGE_FLAGS  := --engine $(ENGINE) $(if $(BASE),--base $(BASE)) $(if $(BASE_TORCH),--build-arg BASE_TORCH=$(BASE_TORCH))
# Every ptblm command (and the jobs it submits) reads the results folder from PTBLM_RESULTS.
ifneq ($(RESULTS),)
export PTBLM_RESULTS := $(abspath $(RESULTS))
endif

.PHONY: setup test demo data train submit status tables figures gradients samples report export bench \
        tensorboard image sif cluster-start cluster-stop sbatch clean

setup: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/python -m pytest -q

demo: $(STAMP)
	$(PTBLM) demo

data: $(STAMP)
	$(PTBLM) data $(if $(CORPUS),--corpus $(CORPUS))

train: $(STAMP)
	$(PTBLM) train $(ARGS)

submit: $(STAMP)
	$(PTBLM) submit $(or $(EXP),smoke) --cluster $(CLUSTER) --executor $(EXECUTOR) $(SUBMIT_FLAGS)

sbatch: $(STAMP)
	$(PTBLM) sbatch $(or $(EXP),smoke) --cluster $(CLUSTER) $(SUBMIT_FLAGS)

status: $(STAMP)
	$(PTBLM) status $(EXP) $(foreach item,$(SET),--set $(item))

tables: $(STAMP)
	$(PTBLM) tables $(EXPS)

figures: $(STAMP)
	$(PTBLM) figures $(EXPS)

gradients: $(STAMP)
	$(PTBLM) gradients $(ARGS)

samples: $(STAMP)
	$(PTBLM) samples $(ARGS)

report: $(STAMP)
	$(PTBLM) report $(EXPS)

export: $(STAMP)
	$(PTBLM) export $(EXPS) $(if $(FORMAT),--format $(FORMAT))

tensorboard: $(STAMP)
	$(PTBLM) tensorboard $(EXP)

bench: $(STAMP)
	$(PTBLM) bench $(ARGS)

image: $(STAMP)
	$(PTBLM) image $(IMAGE_FLAGS)

sif: $(STAMP)
	$(PTBLM) sif $(if $(FROM_TAR),--from-tar $(FROM_TAR))

cluster-start:
	slurm/dev-cluster.sh start

cluster-stop:
	slurm/dev-cluster.sh stop

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
