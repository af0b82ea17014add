# lhl: every target is a thin wrapper over the `lhl` entry point. `make help` lists targets and
# variables; a variable means the same for every target that takes it (docs: reference/makefile).
# Documentation lines: `target: ... ## what it does` and `VAR ?= default ## targets: what it means`.
PYTHON ?= python3## install: the interpreter that creates the virtual environment
VENV   ?= .venv## install: the virtual environment's folder
BIN    := $(VENV)/bin
# The dev/CI install path pins the pair that installs from local disk here; the package itself
# only asks for torch>=2.4 (setup.cfg), so GPU users keep their own build.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1## install: the torch pair to install (your CUDA build's)
STAMP  := $(VENV)/.installed

SEQ      ?= synthetic_s1## experiment compare compare-upgrade paper curves slurm tune: the sequence preset (lhl list)
METHOD   ?= had## experiment slurm: the method preset of one run
METHODS  ?= finetune lwf had joint## compare paper tune: the method presets of a table (paper: the table's own unless given)
SEEDS    ?=## experiment compare compare-upgrade paper tune curves distill slurm: seeds, "0 1 2" (unset: the preset's)
SEED     ?=## experiment compare compare-upgrade paper tune curves distill slurm: one seed (SEEDS wins when both are set)
REF      ?=## compare compare-upgrade paper: the reference method preset of Δ
GPUS     ?=## experiment compare compare-upgrade paper tune curves slurm: GPUs per node (DDP); unset: one device
NODES    ?=## experiment compare compare-upgrade paper tune curves slurm: nodes (multi-node DDP)
LOGGER   ?=## experiment compare compare-upgrade paper tune curves slurm: csv | tensorboard | wandb | none
JOBS     ?=## compare compare-upgrade paper tune: runs at a time on this machine, one process each on 1/JOBS of the threads
RUNS_DIR ?= runs## experiment compare compare-upgrade paper tune curves distill slurm clean-runs: where run folders go
ARGS     ?=## experiment compare compare-upgrade paper tune curves distill bench bench-e2e slurm test docs chaos: extra arguments, passed last
TABLE    ?= main## paper: main | ablation
AGGREGATE ?=## compare paper tune: 1 = never train, tabulate the finished runs
RUN      ?=## report: the run folder to report
REF_RUN  ?=## report: a reference run folder for Δ
KD       ?=## distill: distillers, e.g. heteroakd or none,kd,heteroakd (unset: all)
TEACHER  ?=## distill: teacher segmenter (deeplabv3_resnet18, ...)
STUDENT  ?=## distill: student segmenter (segformer_pvt_v2_b0, ...)
DATA     ?=## distill: synthetic | nyuv2 | cityscapes
TEACHER_CKPT ?=## distill: a teacher.ckpt of an earlier distill run
TIME     ?= 24:00:00## slurm: the job's time limit
PARTITION ?=## slurm: the SLURM partition
SCALE    ?= 2## curves: the long run trains every phase SCALE times as long
ISOLATED ?=## curves: 1 = each long phase starts from the preset run's network after the phase before
TUNED    ?=## compare paper: a tuned.yaml of `make tune`: each method at its chosen stability weight
OBJECTIVE ?=## tune: delta (final Δ vs finetune, the default) | plasticity_decay (De Lange et al.)
CHAOS_FAULTS ?=## chaos: faults in the campaign (unset: 50)
CHAOS_SEED ?=## chaos: the seed that draws the faults, to replay a campaign (unset: 0)

opt = $(if $(2),$(1)=$(2))
# the seeds as a word list: SEEDS, else SEED, else none (the preset's run.seed / run.seeds)
SEED_LIST = $(strip $(or $(SEEDS),$(SEED)))
SEEDS_OPT = $(if $(SEED_LIST),seeds="$(SEED_LIST)")
# run, compare and paper share these (GPUS per node, NODES nodes: Lightning's devices / num_nodes)
COMMON_OPTS = $(call opt,gpus,$(GPUS)) $(call opt,nodes,$(NODES)) $(call opt,logger,$(LOGGER)) out=$(RUNS_DIR)
ONE_RUN = $(BIN)/lhl run seq=$(SEQ) method=$(METHOD)

.PHONY: help install experiment compare tune compare-upgrade paper report curves distill bench bench-e2e slurm test docs docs-serve clean-runs

help: ## this list
	@echo "usage: make TARGET [VAR=value ...]   (every target wraps one 'lhl <command>'; lhl <command> --help)"
	@echo
	@echo "targets:"
	@awk -F':.*## ' '/^[a-z][a-z0-9-]*:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "variables (targets that take it: meaning; default after =):"
	@awk '/^[A-Z][A-Z_]* *[?]=.*## / { name=$$1; split($$0, a, "## "); split($$0, d, "[?]="); def=d[2]; sub(/##.*/, "", def); gsub(/^ +| +$$/, "", def); \
	  printf "  %-13s %s%s\n", name, a[2], (def == "" ? "" : "  [= " def "]") }' $(MAKEFILE_LIST)

install: $(STAMP) ## create .venv: the torch pair, then lhl editable with its dev extra

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

experiment: install ## one lifelong run per seed: lhl run seq=SEQ method=METHOD
	set -e; $(if $(SEED_LIST),for s in $(SEED_LIST); do $(ONE_RUN) seed=$$s $(COMMON_OPTS) $(ARGS); done,$(ONE_RUN) $(COMMON_OPTS) $(ARGS))

compare: install ## METHODS x SEEDS on SEQ, one table: lhl compare
	$(BIN)/lhl compare seq=$(SEQ) methods="$(METHODS)" $(SEEDS_OPT) $(call opt,ref,$(REF)) $(call opt,tuned,$(TUNED)) $(call opt,jobs,$(JOBS)) $(if $(AGGREGATE),aggregate=true) $(COMMON_OPTS) $(ARGS)

# the tunable methods of the CPU benchmark (every method with a declared stability knob)
TUNE_METHODS := lwf had had_faithful had_paper icarl ewc si mas er der derpp sgp
tune: install ## each method's stability weight on the tuning stream (METHODS: the tunable ones unless given; SEEDS default 100 101): lhl tune
	$(BIN)/lhl tune seq=$(SEQ) methods="$(if $(filter command line environment,$(origin METHODS)),$(filter-out finetune joint single_task spg,$(METHODS)),$(TUNE_METHODS))" $(SEEDS_OPT) $(call opt,objective,$(OBJECTIVE)) $(call opt,jobs,$(JOBS)) $(if $(AGGREGATE),aggregate=true) $(COMMON_OPTS) $(ARGS)

# the four rows of docs/methods/architecture-upgrade.md, Δ against staying on model.backbone
UPGRADE_ROWS := had had_upgrade_blank had_upgrade_output had_upgrade_feature
compare-upgrade: install ## the architecture-upgrade rows (SEEDS default 0-4, REF default had)
	$(BIN)/lhl compare seq=$(SEQ) methods="$(UPGRADE_ROWS)" seeds="$(or $(SEED_LIST),0 1 2 3 4)" ref=$(or $(REF),had) $(call opt,jobs,$(JOBS)) $(COMMON_OPTS) $(ARGS)

paper: install ## the paper's main or ablation table (TABLE=): lhl paper
	$(BIN)/lhl paper table=$(TABLE) seq=$(SEQ) $(SEEDS_OPT) $(if $(filter command line environment,$(origin METHODS)),methods="$(METHODS)") $(call opt,ref,$(REF)) $(call opt,tuned,$(TUNED)) $(call opt,jobs,$(JOBS)) $(if $(AGGREGATE),aggregate=true) $(COMMON_OPTS) $(ARGS)

report: install ## a run's results, Δ and forgetting: lhl report RUN [--ref REF_RUN]
	$(if $(RUN),,$(error make report RUN=<run folder> [REF_RUN=<reference run folder>]))
	$(if $(REF),$(error make report: REF= names a reference method; give the reference run folder as REF_RUN=))
	$(BIN)/lhl report $(RUN) $(if $(REF_RUN),--ref $(REF_RUN))

# per seed, finetune as the preset into RUNS_DIR/curves/<seq>/x1/seed<k> and with every phase SCALE
# times as long (validated every epoch) into .../x<SCALE>[iso]/seed<k>, then lhl curves on the pairs
# (docs/concepts/metrics.md, "Convergence of a phase")
CURVES_SEEDS = $(or $(SEED_LIST),0)
CURVES_DIR = $(RUNS_DIR)/curves/$(SEQ)
CURVES_LONG = x$(SCALE)$(if $(ISOLATED),iso)
CURVES_OPTS = $(call opt,gpus,$(GPUS)) $(call opt,nodes,$(NODES)) $(call opt,logger,$(LOGGER)) run.out_dir=$(RUNS_DIR)
curves: install ## convergence check: finetune as the preset and SCALE x as long, per seed
	$(if $(SEQ),,$(error make curves SEQ=<sequence> [SCALE=2] [ISOLATED=1] [SEEDS="0 1 2"]))
	$(if $(EPOCHS),$(error make curves: EPOCHS= is gone; SCALE=2 (the default) doubles every phase's epochs, train.task_epochs included))
	set -e; for s in $(CURVES_SEEDS); do \
	  $(BIN)/lhl run seq=$(SEQ) method=finetune seed=$$s run.name=curves/$(SEQ)/x1/seed$$s $(CURVES_OPTS) $(ARGS); \
	  $(BIN)/lhl run seq=$(SEQ) method=finetune train.epoch_scale=$(SCALE) eval.every_n_epochs=1 seed=$$s run.name=curves/$(SEQ)/$(CURVES_LONG)/seed$$s $(if $(ISOLATED),run.phases_start_from=$(CURVES_DIR)/x1/seed$$s) $(CURVES_OPTS) $(ARGS); \
	done
	$(BIN)/lhl curves $(foreach s,$(CURVES_SEEDS),$(CURVES_DIR)/$(CURVES_LONG)/seed$(s)) --short $(foreach s,$(CURVES_SEEDS),$(CURVES_DIR)/x1/seed$(s)) $(if $(word 2,$(CURVES_SEEDS)),--summary $(CURVES_DIR)/$(CURVES_LONG)/convergence.md)

distill: install ## teacher, then students alone and with each distiller: lhl distill
	$(strip $(BIN)/lhl distill $(if $(KD),--kd $(KD)) $(if $(TEACHER),--teacher $(TEACHER)) $(if $(STUDENT),--student $(STUDENT)) $(if $(DATA),--data $(DATA)) $(if $(TEACHER_CKPT),--teacher-ckpt $(TEACHER_CKPT)) $(if $(SEED_LIST),--seeds "$(SEED_LIST)") --out $(RUNS_DIR)/kd) $(ARGS)

bench: install ## training-step throughput of finetune / LwF / HAD: lhl dev bench
	$(BIN)/lhl dev bench $(ARGS)

bench-e2e: install ## a whole sequence as lhl runs it and as the release does: lhl dev bench-e2e
	$(BIN)/lhl dev bench-e2e $(ARGS)

slurm: install ## write and submit one sbatch job per seed: lhl slurm
	set -e; for s in $(or $(SEED_LIST),_); do \
	  $(BIN)/lhl slurm seq=$(SEQ) method=$(METHOD) $$([ "$$s" = _ ] || echo seed=$$s) gpus=$(or $(GPUS),1) nodes=$(or $(NODES),1) time=$(TIME) $(call opt,partition,$(PARTITION)) $(call opt,logger,$(LOGGER)) run.out_dir=$(RUNS_DIR) $(ARGS); \
	done

test: install ## the test suite on CPU (ARGS: pytest arguments)
	$(BIN)/python -m pytest -q $(ARGS)

docs: install ## build the documentation site into site/ (mkdocs --strict: a warning fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site $(ARGS)

docs-serve: install ## serve the documentation at http://127.0.0.1:8000 while editing
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

clean-runs: ## print what RUNS_DIR holds, then remove it
	@if [ -d "$(RUNS_DIR)" ]; then \
	  echo "removing $(RUNS_DIR)/ ($$(du -sh "$(RUNS_DIR)" | cut -f1)), which holds:"; \
	  find "$(RUNS_DIR)" -name config.yaml -printf '  %h\n' | sort; \
	  rm -rf "$(RUNS_DIR)"; \
	else echo "no $(RUNS_DIR)/ folder: nothing to remove"; fi

chaos: install ## the fault campaign: a tiny run killed at random moments (SIGKILL/SIGTERM/SIGUSR1), resumed, results compared byte for byte (CHAOS_FAULTS=50 CHAOS_SEED=0)
	OMP_NUM_THREADS=1 $(BIN)/lhl dev chaos --faults $(or $(CHAOS_FAULTS),50) --seed $(or $(CHAOS_SEED),0) --table $(ARGS)
