# Every target creates or reuses .venv. torch goes first with an exact pin: on this project's machines
# that pin resolves to a local CPU wheel, while a loose range pulls several GB of CUDA packages.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
DEMO_DIR ?= outputs/demo
# The pretrained Whisper-tiny encoder (Smart Turn v3.2), imported once from the pipecat-ai wheel and reused.
ENCODER_DIR ?= .cache/encoders/smart-turn-v3.2-whisper-tiny
STAMP := $(VENV)/.installed
# The Label Studio server (tests and local labelling) lives in its own environment: its pins (numpy, pyarrow,
# Django) clash with ours. The platform only talks to it over HTTP.
LS_VENV := .venv-labelstudio
LS_PIN ?= label-studio==1.23.2
LS_STAMP := $(LS_VENV)/.installed
# pytest-xdist processes for `make test`, each with its own local Ray (a test file stays in one process)
TEST_WORKERS ?= 2

.PHONY: venv labelstudio demo test test-e2e test-cluster test-opensmile docs lint bench mutation clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[test,docs]"
	@touch $(STAMP)

venv: $(STAMP)

$(LS_STAMP):
	@test -x $(LS_VENV)/bin/python || $(PY) -m venv $(LS_VENV) || python3 -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q "$(LS_PIN)"
	@touch $(LS_STAMP)

# A migrated database for the test servers, made once per Label Studio install (a first start migrates for ~45 s).
LS_TEMPLATE := $(LS_VENV)/ser-models-template/token
$(LS_TEMPLATE): $(STAMP) $(LS_STAMP)
	$(BIN)/python -c "from ser_models.testing.label_studio import find_label_studio as f, migrated_template as t; t(f())"

labelstudio: $(LS_TEMPLATE)

# The demo: a 2,880-clip pool (2,016 training clips, 432 test), then jobs.evidence: the shipped strategy against
# random over 10 paired seeds at 50/100/200/400 labels, and all labels, from one feature cache (the encoder runs
# once per clip). Prints the table with 95 % intervals, AUBC and label savings; draws the bands.
DEMO_CLIPS ?= 2880
demo: $(STAMP)
	$(BIN)/python -m jobs.import_encoder smart-turn $(ENCODER_DIR)
	$(BIN)/python -m jobs.make_demo_pool $(DEMO_DIR)/corpus --n $(DEMO_CLIPS) --seed 0 --workers 2
	$(BIN)/python -m jobs.prepare_pool jobs/configs/prepare_pool_demo.yaml \
		manifest=$(DEMO_DIR)/corpus/manifest.csv output_dir=$(DEMO_DIR)/pool
	$(BIN)/python -m jobs.evidence jobs/configs/demo_evidence.yaml pool_dir=$(DEMO_DIR)/pool \
		model.encoder.source=$(ENCODER_DIR) active.feature_cache_dir=$(DEMO_DIR)/feature_cache \
		output_dir=$(DEMO_DIR)/evidence

# `make test`: everything but the failure-model tests (kills and restarts; docs/failure-model.md), which
# `make test-cluster` runs, and the long end-to-end runs (marker slow_e2e: Ray Train and Tune sweeps, whole
# jobs on S3, job subprocesses; 30 s or more each on 2 cores), which `make test-e2e` runs, so that
# `make test` fits its target of 12 minutes on 2 cores. CI runs all three.
test: $(STAMP) $(LS_TEMPLATE)
	$(BIN)/ruff check .
	SER_REQUIRE_LABEL_STUDIO=1 SER_REQUIRE_DOCS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20 \
		-m "not failure_model and not slow_e2e" tests

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20 \
		-m "slow_e2e and not failure_model" tests

test-cluster: $(STAMP) $(LS_TEMPLATE)
	SER_REQUIRE_LABEL_STUDIO=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20 \
		-m failure_model tests

# The tests of the optional opensmile extra (eGeMAPS functionals; `make test` skips them): installs the extra
# into .venv, then runs them. CI runs it last.
test-opensmile: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test,opensmile]"
	$(BIN)/python -m pytest -q --durations=5 -m opensmile tests

# The docs site (Sphinx + MyST over docs/*.md; the jobs reference is generated from the config dataclasses):
# warnings are errors. Output: docs/_build/html/index.html. CI builds it.
docs: $(STAMP)
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

# Mutation testing of the safety core (locks, ownership, io's atomic writes, the ledger, names, the pool update,
# the feature-cache guard and keys, the evidence statistics, the strategies' exclusion of labelled clips):
# installs mutmut, runs each target's mutants against the tests that reach them, writes
# bench/results/mutation.md. About 30 mutants a minute on 2 cores; locks, whose tests wait on purpose, are scored
# on a random sample of 100 of their 987 mutants (bench.mutation --full runs them all). TARGETS=names,ledger runs
# some targets.
TARGETS ?=
mutation: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test,docs,mutation]"
	$(BIN)/python -m bench.mutation $(if $(TARGETS),--targets "$(TARGETS)")

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench.selection
	$(BIN)/python -m bench.cold_start
	$(BIN)/python -m bench.ingest

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache docs/_build mutants
