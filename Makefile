# Every target is a thin call of the `ptblm` command line (see `ptblm --help`); `make help` lists them.
#   make submit EXP=3.1 [CLUSTER=mila] [DRY_RUN=1] [FORCE=1] [EXECUTOR=auto|slurm|local] [SET="num_epochs=40 seeds=1111,1,2"]
#   make samples ARGS='--rnn DIR --gru DIR --no-unk'   (gradients too: ARGS='--rnn DIR --gru DIR --lstm DIR')
#   make data [CORPUS=wikitext-2]                        (default: PTB into data/ptb)
#   make submit EXP=3.2 CORPUS=wikitext-2                (every setting on that corpus: --set corpus=...)
# Set-up: a virtualenv in .venv; TORCH_SPEC is the torch requirement pip installs (from PyPI on Linux a CUDA
# build; the CPU build only where pip is pointed at one, as on the development machines), e.g.
# TORCH_SPEC='torch>=2.4,<2.15' on a cluster login node.
# What a user passes (EXP, SET, ARGS, RESULTS, ...) reaches the shell quoted, one word at a time: a value
# cannot run a command, and RESULTS may hold spaces. Exit status: 0 when ptblm's is 0; make itself exits 2
# when ptblm exits nonzero, whatever ptblm's status (its `make: *** [...] Error N` line shows N: 1 an error or a
# failed local run, 2 a usage error, 128+N a signal), so `make submit && make report` stops at the first
# failure; a script that needs ptblm's own status calls .venv/bin/ptblm.
PYTHON     ?= python3## the Python that makes the virtualenv
VENV       ?= .venv## the virtualenv (make setup)
TORCH_SPEC ?= torch==2.13.0## the torch requirement make setup installs (whichever build pip finds)
EXP        ?=## experiments: submit and sbatch default to smoke, status and tensorboard to every one with results
CLUSTER    ?=## cluster profile slurm/clusters/NAME.yaml (default: local, refused on a real cluster)
DRY_RUN    ?=## 1: print the plan and its cost, submit nothing
FORCE      ?=## 1: rerun finished settings from scratch
EXECUTOR   ?= auto## auto, slurm or local (submit)
SET        ?=## space-separated KEY=VALUE[,VALUE...] overrides, each passed as --set KEY=VALUE
ONLY       ?=## settings by number or run name, e.g. ONLY=0,2 (submit, sbatch)
EXPS       ?=## the experiments tables/figures/report/export cover (default: every one under results/ but manual/)
CORPUS     ?=## a corpus of `ptblm data --help`: data downloads it, train and bench use it, submit, sbatch and status set it in every setting (--set corpus=)
FORMAT     ?=## export: csv (default) or course
ARGS       ?=## more flags for train, gradients, samples, bench, e.g. ARGS='--rnn DIR --gru DIR'
RESULTS    ?=## the results folder of every target (sets PTBLM_RESULTS; default results/)
ENGINE     ?= docker## image: docker or podman
BASE       ?=## image with podman: a base image in place of the Dockerfile's FROM
BASE_TORCH ?=## image: the torch version of that base
FROM_TAR   ?=## sif: a `docker save` tar built elsewhere

# $(call each_quoted,NAME): the value of NAME as given (make does not expand it), each word quoted for sh.
each_quoted = $(foreach w,$(value $(1)),'$(subst ','\'',$(w))')
# $(call flag,--name,NAME): `--name 'value'` for each word of NAME, nothing when it is empty.
flag  = $(foreach w,$(value $(2)),$(1) '$(subst ','\'',$(w))')
quote = '$(subst ','\'',$(1))'
# make would put these in each recipe's environment, expanding them first (a value's $(shell ...) would run):
# they reach ptblm as quoted arguments, and PTBLM_RESULTS, only.
unexport PYTHON VENV TORCH_SPEC EXP CLUSTER DRY_RUN FORCE EXECUTOR SET ONLY EXPS CORPUS FORMAT ARGS RESULTS ENGINE \
         BASE BASE_TORCH FROM_TAR

PTBLM        := $(call quote,$(VENV)/bin/ptblm)
STAMP        := $(VENV)/.installed
CORPUS_SET   := $(if $(value CORPUS),--set $(call quote,corpus=$(value CORPUS)))
SUBMIT_FLAGS := $(if $(DRY_RUN),--dry-run) $(if $(FORCE),--force) $(call flag,--cluster,CLUSTER) \
                $(call flag,--set,SET) $(CORPUS_SET) $(call flag,--only,ONLY)
IMAGE_FLAGS  := $(call flag,--engine,ENGINE) $(call flag,--base,BASE) \
                $(if $(value BASE_TORCH),--build-arg $(call quote,BASE_TORCH=$(value BASE_TORCH)))
# Every ptblm command (and the jobs it submits) reads the results folder from PTBLM_RESULTS (through the
# environment, not the shell), made absolute here: a relative RESULTS is this Makefile's folder's; a
# leading ~ (RESULTS='~/x', quoted so the shell left it) is passed on as it is, and ptblm expands it.
ifneq ($(value RESULTS),)
export PTBLM_RESULTS := $(if $(filter /% ~%,$(firstword $(value RESULTS))),,$(CURDIR)/)$(value RESULTS)
endif

.PHONY: help setup test demo data train submit status tables figures gradients samples report export bench \
        tensorboard image sif cluster-start cluster-stop sbatch clean

help: ## list the targets and the variables they read
	@echo "make TARGET [VARIABLE=value ...]; each target runs $(VENV)/bin/ptblm (see its --help)."
	@echo "Targets:"
	@awk -F ':.*## ' '/^[a-z-]+:.*## /{printf "  %-14s %s\n", $$1, $$2}' $(call quote,$(firstword $(MAKEFILE_LIST)))
	@echo "Variables:"
	@awk '/^[A-Z_]+ +\?=.*## /{name=$$1; sub(/^[^#]*## /, ""); printf "  %-11s %s\n", name, $$0}' \
		$(call quote,$(firstword $(MAKEFILE_LIST)))

setup: $(STAMP) ## the virtualenv .venv with torch and ptblm (ptblm is then .venv/bin/ptblm)
$(STAMP): pyproject.toml
	test -x $(call quote,$(VENV)/bin/python) || $(call quote,$(PYTHON)) -m venv $(call quote,$(VENV))
	$(call quote,$(VENV)/bin/python) -m pip install -q --upgrade pip
	$(call quote,$(VENV)/bin/python) -m pip install -q $(call quote,$(TORCH_SPEC))
	$(call quote,$(VENV)/bin/python) -m pip install -q -e ".[test]"
	touch $(call quote,$(STAMP))

test: $(STAMP) ## ruff, then the test suite
	$(call quote,$(VENV)/bin/ruff) check src tests
	$(call quote,$(VENV)/bin/python) -m pytest -q

demo: $(STAMP) ## the smoke experiment on this machine into results/demo/, then its results table
	$(PTBLM) demo

data: $(STAMP) ## download a corpus (CORPUS=, default PTB) into data/<corpus> and verify its checksums
	$(PTBLM) data $(call flag,--corpus,CORPUS)

train: $(STAMP) ## train one setting: ARGS='--model GRU ...' (the scaffold's flags)
	$(PTBLM) train $(call flag,--corpus,CORPUS) $(call each_quoted,ARGS)

submit: $(STAMP) ## submit EXP (default smoke) as one Slurm array, or local processes without Slurm
	$(PTBLM) submit $(or $(call each_quoted,EXP),smoke) --executor $(call quote,$(value EXECUTOR)) $(SUBMIT_FLAGS)

sbatch: $(STAMP) ## submit EXP (default smoke) through slurm/array.sbatch
	$(PTBLM) sbatch $(or $(call each_quoted,EXP),smoke) $(SUBMIT_FLAGS)

status: $(STAMP) ## a table per experiment of EXP (default: every one with results)
	$(PTBLM) status $(call each_quoted,EXP) $(call flag,--set,SET) $(CORPUS_SET)

tables: $(STAMP) ## LaTeX and Markdown tables of EXPS into results/report/tables
	$(PTBLM) tables $(call each_quoted,EXPS)

figures: $(STAMP) ## perplexity curves of EXPS into results/report/figures
	$(PTBLM) figures $(call each_quoted,EXPS)

gradients: $(STAMP) ## dL_T/dh_t for the RNN, the GRU (and an LSTM) (ARGS='--rnn DIR --gru DIR --lstm DIR')
	$(PTBLM) gradients $(call each_quoted,ARGS)

samples: $(STAMP) ## generated sequences of the RNN, the GRU (and an LSTM) (ARGS='--rnn DIR --gru DIR --no-unk')
	$(PTBLM) samples $(call each_quoted,ARGS)

report: $(STAMP) ## report.tex (and its PDF) with every table, figure and fact of EXPS
	$(PTBLM) report $(call each_quoted,EXPS)

export: $(STAMP) ## the run folders of EXPS as CSV (FORMAT=course: the scaffold's files)
	$(PTBLM) export $(call each_quoted,EXPS) $(call flag,--format,FORMAT)

tensorboard: $(STAMP) ## TensorBoard on 127.0.0.1 over the runs of EXP (default: all), and its ssh -L line
	$(PTBLM) tensorboard $(call each_quoted,EXP)

bench: $(STAMP) ## time one training step per model and shape (ARGS='--full')
	$(PTBLM) bench $(call flag,--corpus,CORPUS) $(call each_quoted,ARGS)

image: $(STAMP) ## docker (ENGINE=podman: podman) build of docker/Dockerfile
	$(PTBLM) image $(IMAGE_FLAGS)

sif: $(STAMP) ## Apptainer ptblm.sif from the Docker image (FROM_TAR=ptblm.tar: from a saved tar)
	$(PTBLM) sif $(call flag,--from-tar,FROM_TAR)

cluster-start: ## start the one-node Slurm dev cluster (slurm/dev-cluster.sh)
	slurm/dev-cluster.sh start

cluster-stop: ## stop the dev cluster
	slurm/dev-cluster.sh stop

clean: ## remove .venv and build files
	rm -rf $(call quote,$(VENV)) build *.egg-info src/*.egg-info .pytest_cache
