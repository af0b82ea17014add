# lhl: every target is a thin wrapper over the `lhl` entry point (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The dev/CI install path pins the pair that installs from local disk here; the package itself
# only asks for torch>=2.4 (setup.cfg), so GPU users keep their own build.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

SEQ     ?= synthetic_s1
METHOD  ?= had
SEED    ?=
GPUS    ?=
NODES   ?=
LOGGER  ?=
ARGS    ?=
METHODS ?= finetune lwf had joint
SEEDS   ?=
REF     ?=
KD      ?=
TEACHER ?=
STUDENT ?=
DATA    ?=
TEACHER_CKPT ?=
TIME    ?= 24:00:00
PARTITION ?=
RUN     ?=
RUNS_DIR ?= runs

opt = $(if $(2),$(1)=$(2))
RUN_OPTS = seq=$(SEQ) method=$(METHOD) $(call opt,seed,$(SEED)) $(call opt,gpus,$(GPUS)) $(call opt,nodes,$(NODES)) $(call opt,logger,$(LOGGER))

.PHONY: install experiment compare compare-upgrade paper report curves distill bench bench-e2e slurm test clean-runs help

help:
	@echo "make install | experiment | compare | compare-upgrade | paper TABLE=main|ablation | report RUN=... [REF=...] | curves SEQ=... [SCALE=2] [ISOLATED=1] [SEEDS=...] | distill | bench | bench-e2e | slurm | test | clean-runs  (see README.md)"

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

experiment: install
	$(BIN)/lhl run $(RUN_OPTS) $(ARGS)

# make compare SEQ=... METHODS="..." [SEEDS="..."] [REF=...] [JOBS=2: two runs at a time, one thread each]
compare: install
	$(BIN)/lhl compare seq=$(SEQ) methods="$(METHODS)" $(if $(SEEDS),seeds="$(SEEDS)") $(call opt,ref,$(REF)) $(call opt,jobs,$(JOBS)) $(call opt,gpus,$(GPUS)) $(call opt,logger,$(LOGGER)) $(ARGS)

# make compare-upgrade [SEQ=synthetic_s1] [SEEDS="0 1 2 3 4"]: the four rows of README "Upgrading the
# architecture mid-sequence" (stay on model.backbone; upgrade with blank old heads; with output
# distillation; with output + aligned-feature distillation), Δ against staying
UPGRADE_ROWS ?= had had_upgrade_blank had_upgrade_output had_upgrade_feature
compare-upgrade: install
	$(BIN)/lhl compare seq=$(SEQ) methods="$(UPGRADE_ROWS)" seeds="$(or $(SEEDS),0 1 2 3 4)" ref=had $(call opt,gpus,$(GPUS)) $(call opt,logger,$(LOGGER)) $(ARGS)

# make paper TABLE=main|ablation SEQ=... SEEDS="0 1 2" [AGGREGATE=1] [ARGS="train.max_steps=20"]
TABLE ?= main
AGGREGATE ?=
paper: install
	$(BIN)/lhl paper table=$(TABLE) seq=$(SEQ) $(if $(SEEDS),seeds="$(SEEDS)") $(if $(AGGREGATE),aggregate=true) $(call opt,gpus,$(GPUS)) $(call opt,logger,$(LOGGER)) $(ARGS)

report: install
	$(if $(RUN),,$(error make report RUN=<run folder> [REF=<reference run folder>]))
	$(BIN)/lhl report $(RUN) $(if $(REF),--ref $(REF))

# make curves SEQ=... [SCALE=2] [ISOLATED=1] [SEED=0 | SEEDS="0 1 2 3 4"]: per seed, finetune as the
# preset into $(RUNS_DIR)/curves/<seq>/x1/seed<k>, and with every phase SCALE times as long
# (train.epoch_scale; train.epochs and train.task_epochs both scale), validating every epoch, into
# .../x<SCALE>/seed<k>; ISOLATED=1: each phase of the long run starts from the preset run's network
# after the phase before (run.phases_start_from), into .../x<SCALE>iso/seed<k>, so that a phase is
# compared with the same network trained longer on its slice. Then lhl curves: per phase, the
# trained task's main metric after the preset's phase against the longer run's (>= 90 % reached with
# SCALE=2: converged; README "Metrics"), over several seeds also its mean and 95 % interval
# (written to .../x<SCALE>[iso]/convergence.md)
SCALE ?= 2
ISOLATED ?=
CURVES_SEEDS = $(or $(SEEDS),$(or $(SEED),0))
CURVES_DIR = $(RUNS_DIR)/curves/$(SEQ)
CURVES_LONG = x$(SCALE)$(if $(ISOLATED),iso)
curves: install
	$(if $(SEQ),,$(error make curves SEQ=<sequence> [SCALE=2] [ISOLATED=1] [SEED=0 | SEEDS="0 1 2"]))
	$(if $(EPOCHS),$(error make curves: EPOCHS= is gone; SCALE=2 (the default) doubles every phase's epochs, train.task_epochs included))
	set -e; for s in $(CURVES_SEEDS); do \
	  $(BIN)/lhl run seq=$(SEQ) method=finetune seed=$$s run.name=curves/$(SEQ)/x1/seed$$s run.out_dir=$(RUNS_DIR) $(call opt,gpus,$(GPUS)) $(call opt,logger,$(LOGGER)) $(ARGS); \
	  $(BIN)/lhl run seq=$(SEQ) method=finetune train.epoch_scale=$(SCALE) eval.every_n_epochs=1 seed=$$s run.name=curves/$(SEQ)/$(CURVES_LONG)/seed$$s run.out_dir=$(RUNS_DIR) $(if $(ISOLATED),run.phases_start_from=$(CURVES_DIR)/x1/seed$$s) $(call opt,gpus,$(GPUS)) $(call opt,logger,$(LOGGER)) $(ARGS); \
	done
	$(BIN)/lhl curves $(foreach s,$(CURVES_SEEDS),$(CURVES_DIR)/$(CURVES_LONG)/seed$(s)) --short $(foreach s,$(CURVES_SEEDS),$(CURVES_DIR)/x1/seed$(s)) $(if $(word 2,$(CURVES_SEEDS)),--summary $(CURVES_DIR)/$(CURVES_LONG)/convergence.md)

clean-runs:
	@if [ -d "$(RUNS_DIR)" ]; then \
	  echo "removing $(RUNS_DIR)/ ($$(du -sh "$(RUNS_DIR)" | cut -f1)), which holds:"; \
	  find "$(RUNS_DIR)" -name config.yaml -printf '  %h\n' | sort; \
	  rm -rf "$(RUNS_DIR)"; \
	else echo "no $(RUNS_DIR)/ folder: nothing to remove"; fi

distill: install
	$(strip $(BIN)/lhl distill $(if $(KD),--kd $(KD)) $(if $(TEACHER),--teacher $(TEACHER)) $(if $(STUDENT),--student $(STUDENT)) $(if $(DATA),--data $(DATA)) $(if $(TEACHER_CKPT),--teacher-ckpt $(TEACHER_CKPT)) $(if $(SEEDS),--seeds "$(SEEDS)")) $(ARGS)

bench: install
	$(BIN)/lhl bench $(ARGS)

bench-e2e: install
	$(BIN)/lhl bench-e2e $(ARGS)

slurm: install
	$(BIN)/lhl slurm seq=$(SEQ) method=$(METHOD) $(call opt,seed,$(SEED)) gpus=$(or $(GPUS),1) nodes=$(or $(NODES),1) time=$(TIME) $(call opt,partition,$(PARTITION)) $(ARGS)

test: install
	$(BIN)/python -m pytest -q $(ARGS)
