# prm-course: every target that needs Python creates .venv itself (idempotently), torch first.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
COURSE ?= build/nbgrader
GRADE_ARGS ?=
# torch is pinned and installed before the package, or pip would pull a multi-GB CUDA build.
# Off these machines, add TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU wheel.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the cached models the notebooks use: the backbone first with both threads, then the rest in 2 single-threaded workers (prm_core.prebuild)
PREBUILD := $(PY) -m prm_core.prebuild --jobs 2
# the test suite in 2 pytest-xdist workers of one torch thread each (a notebook's cells stay on one worker)
TEST_JOBS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_JOBS) --dist loadscope
export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED ?= 0

.DEFAULT_GOAL := help
.PHONY: help setup test test-robust test-exercises prebuild run-notebooks refresh-notebooks exercises grade nbgrader bench experiment results lab lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[notebooks,dev,classroom]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (prm-course)" >/dev/null
	touch $@

setup: $(STAMP)  ## create .venv and install torch (CPU) and prm_core with its extras

test: $(STAMP)  ## train what the notebooks use (2 workers), run the test suite, re-run the notebooks under nbval
	$(PREBUILD) --profile cpu
	$(PYTEST) --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

test-robust: $(STAMP)  ## train another draw (other CPU kernels) into build/cache-robust, run every notebook's checked cells on it
	$(PY) scripts/test_robust.py

prebuild: $(STAMP)  ## train every model the notebooks use: the backbone first, then 2 single-threaded workers (PROFILE=cpu|gpu)
	$(PREBUILD) --profile $(PROFILE)

test-exercises: $(STAMP)  ## run every student notebook in exercises/ top to bottom (the notebooks' cost again)
	$(PREBUILD) --profile cpu
	$(PY) -m pytest -m exercise_run tests/test_classroom.py

run-notebooks: $(STAMP)  ## train what the notebooks use (2 workers), execute notebooks/ in order with papermill (PROFILE=cpu|gpu)
	$(PREBUILD) --profile $(PROFILE)
	$(PY) scripts/run_notebooks.py --profile $(PROFILE)

refresh-notebooks: $(STAMP)  ## re-execute notebooks/ in place with default parameters, regenerate exercises/
	$(PREBUILD) --profile cpu
	$(PY) scripts/run_notebooks.py --in-place
	$(PY) -m prm_core.classroom make-exercises

exercises: $(STAMP)  ## write exercises/ (student versions: solutions stubbed, outputs cleared) from notebooks/
	$(PY) -m prm_core.classroom make-exercises

grade: $(STAMP)  ## grade a student's notebook, anywhere on disk: make grade NB=path/to/03_loss.ipynb [GRADE_ARGS="--json out.json"]
	@test -n "$(NB)" || { echo "NB is empty; run e.g. make grade NB=exercises/03_loss.ipynb"; exit 2; }
	$(PY) -m prm_core.classroom grade "$(NB)" $(GRADE_ARGS)

nbgrader: $(STAMP)  ## write the assignments as an nbgrader course: make nbgrader COURSE=build/nbgrader
	$(PY) -m prm_core.nbgrader_course "$(COURSE)"

bench: $(STAMP)  ## throughput ratios measured in one run (PROFILE=cpu|gpu)
	$(PY) benchmarks/throughput.py --profile $(PROFILE)

experiment: $(STAMP)  ## train + evaluate the standard PRM and ORM, write build/metrics/$(PROFILE).json
	$(PY) -m prm_core.experiments --profile $(PROFILE) --out build/metrics/$(PROFILE).json

results: $(STAMP)  ## rerun the cpu experiment and its sweeps into results/cpu-2core.json, then README's tables from it
	$(PY) -m prm_core.experiments --profile cpu --out results/cpu-2core.json > /dev/null
	$(PY) -m prm_core.results_table

lab: $(STAMP)  ## open the course in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/

lint: $(STAMP)  ## ruff over the library, tests and scripts
	$(VENV)/bin/ruff check prm_core tests scripts benchmarks

clean:  ## remove build outputs and caches (keeps .venv; rm -rf .venv to start over)
	rm -rf build .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
