# aifactory: two commands matter. `make run` runs the main job; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The twin's hot path compiled with mypyc (scripts/build_native.py), rebuilt when the
# sources change; pure Python where no C compiler is found.
NATIVE_SRC := $(wildcard src/aifactory/scheduler/*.py src/aifactory/scheduler/policies/*.py \
                src/aifactory/twin/*.py src/aifactory/workload/*.py src/aifactory/native.py \
                src/aifactory/heap.py)
NATIVE := $(VENV)/.native
# Run a second time as pure Python by `make test`: the tests of the compiled modules, above
# all the golden per-job results (tests/test_golden.py), which both builds must reproduce.
# (test_twin_vs_slurm.py is left out: it compares with a real Slurm, once is enough.)
PURE_TESTS := tests/test_golden.py tests/test_heap.py tests/test_heap_builds.py \
              tests/test_job_lifecycle.py tests/test_kernel.py tests/test_placement.py \
              tests/test_progress.py tests/test_queue.py tests/test_quota.py \
              $(wildcard tests/test_scheduler_*.py) tests/test_twin.py tests/test_twin_validation.py

.DEFAULT_GOAL := help
.PHONY: help run test bench lint format clean native

help: ## Show the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-7s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,service]'
	rm -f $(VENV)/.installed-*
	touch $@

# Ray (the Ray executor's optional extra, aifactory[ray]) for `make test` only: its tests
# start a real local head. `make run` never installs it.
RAY_STAMP := $(VENV)/.installed-ray-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[ray]'
	rm -f $(VENV)/.installed-ray-*
	touch $@

$(NATIVE): $(STAMP) $(NATIVE_SRC) scripts/build_native.py
	$(BIN)/python scripts/build_native.py
	touch $@

native: $(NATIVE) ## Compile the twin's hot path with mypyc (done by run, test and bench)

run: $(STAMP) $(NATIVE) ## Set up .venv and run the main job (korea-2025 national scenario)
	$(BIN)/aifactory run

test: $(STAMP) $(RAY_STAMP) $(NATIVE) ## Set up .venv and run lint, format check, mypy --strict and pytest
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src
	@# The whole suite in the build on disk; test_golden.py fails if the session imports
	@# another (a compiled module older than its source makes every module load as source).
	build=absent; if ls src/aifactory/heap.*.so >/dev/null 2>&1; then build=compiled; fi; \
	  echo "pytest, $$build build"; AIFACTORY_EXPECT_BUILD=$$build $(BIN)/pytest -q --durations=25
	@# Then the compiled modules' tests as pure Python (about 80 s on 2 cores), where a
	@# compiled build ran first.
	if ls src/aifactory/heap.*.so >/dev/null 2>&1; then \
	  AIFACTORY_PURE_PYTHON=1 AIFACTORY_EXPECT_BUILD=pure $(BIN)/pytest -q $(PURE_TESTS); fi

lint: $(STAMP) ## ruff + mypy only
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src

format: $(STAMP) ## Apply ruff's formatter and safe fixes
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(STAMP) $(NATIVE) ## Run the benchmarks (figures printed as a table and written to bench/results)
	$(BIN)/python -m bench

clean: ## Remove the virtualenv, caches, compiled modules and results
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info bench/results aifactory-data aifactory-data-jobs
	find src -name '*.so' -delete
	rm -rf src/.mypy_cache
