# Module 3.1 — the two commands a fresh machine needs:
#   make quickstart   set up, then fine-tune SmolLM2 with LoRA on the course task (CPU, minutes: QUICKSTART.md)
#   make test         set up, then run the whole test suite (what CI runs)
# More: make test-fast | make labs | make run-lab LAB=3.1.1 PROFILE=cpu
#       make self-check LAB=3.1.1 NB=path   check a notebook against the visible tests, as the class grader runs them
#       make grade-lab LAB=3.1.1 NB=path    the same with the hidden tests (instructors)
#       make grade-class SUBMISSIONS=dir [OUT=grading]   autograde a whole class (README: For instructors)
#       make student-edition OUT=dir        the course without solutions or hidden tests, and OUT.zip
#       make grade-budget   every lab under the grade profile, each within GRADE_BUDGET seconds
#       make bench          this machine's matmul rate and LoRA training throughput (COURSE_PRECISION=fp32 to force fp32)
#       make deploy-setup   Lab 3.1.10's llama.cpp (needs cmake and a C++ compiler), Ollama client and GGUF converter
# Only Lab 3.1.10 and its tests need deploy-setup; everything else needs python3 and make.

include setup.mk
PROFILE ?=  # empty: the course rule (COURSE_PROFILE, else spark with CUDA, else cpu; utils.profiles.profile_name)
LAB ?= 3.1.1
GRADE_BUDGET ?= 60

.PHONY: quickstart test test-fast labs run-lab grade-budget self-check grade-lab grade-class \
	student-edition bench clean test-browser
# Runs a command with no C++ compiler on PATH: `make test` proves set-up, quickstart, the fast tests and a
# self-check need none (only Lab 3.1.10's deploy-setup does).
NO_COMPILER := $(PYTHON) tools/without_compiler.py --

quickstart: prepare-model
	$(BIN)/python -m tools.quickstart

# CI's command. Phase 1, without a C++ compiler: set-up, a quickstart under the grade profile, the fast tests
# that need no deploy tools, a self-check. Phase 2: deploy-setup, then the slow tests and Lab 3.1.10's.
# The venv is made by the interpreter's real path: the compiler-free PATH is a folder of links that goes away.
test:
	$(NO_COMPILER) $(MAKE) setup prepare-model PYTHON="$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	$(NO_COMPILER) env COURSE_PROFILE=grade $(BIN)/python -m tools.quickstart
	$(NO_COMPILER) $(BIN)/python -m pytest -m "not slow and not deploy"
	$(NO_COMPILER) $(BIN)/python -m tools.self_check 3.1.1 solutions/lab-3.1.1-lora-theory.ipynb
	$(MAKE) deploy-setup
	COURSE_REQUIRE_DEPLOY=1 $(BIN)/python -m pytest -m "slow or deploy"

# Deploy tests (Lab 3.1.10) skip with the reason when deploy-setup has not run.
test-fast: prepare-model
	$(BIN)/python -m pytest -m "not slow"

labs: setup
	$(BIN)/python -m tools.generate_labs

run-lab: prepare-model $(DEPLOY_IF_NEEDED)
	$(BIN)/python -m tools.run_lab $(LAB) $(if $(PROFILE),--profile $(PROFILE))

grade-budget: prepare-model deploy-setup
	$(BIN)/python -m tools.run_lab all --profile grade --budget $(GRADE_BUDGET)

self-check: prepare-model $(DEPLOY_IF_NEEDED)
	@test -n "$(NB)" || { echo "usage: make self-check LAB=3.1.1 NB=path/to/notebook.ipynb"; exit 2; }
	$(BIN)/python -m tools.self_check $(LAB) "$(NB)"

grade-lab: prepare-model $(DEPLOY_IF_NEEDED)
	@test -n "$(NB)" || { echo "usage: make grade-lab LAB=3.1.1 NB=path/to/notebook.ipynb"; exit 2; }
	$(BIN)/python -m tools.self_check $(LAB) "$(NB)" --hidden

OUT ?= grading
grade-class: prepare-model deploy-setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade-class SUBMISSIONS=dir [OUT=grading]"; exit 2; }
	$(BIN)/python -m tools.grade_class "$(SUBMISSIONS)" --out "$(OUT)"

student-edition: setup
	@test -n "$(OUT)" -a "$(OUT)" != grading || { echo "usage: make student-edition OUT=dir"; exit 2; }
	$(BIN)/python -m tools.student_edition "$(OUT)" --zip

bench: prepare-model
	$(BIN)/python -m tools.bench

clean:
	rm -rf runs outputs .pytest_cache

# The browser tier (tests/browser; README: Browser tests): a student's JupyterLab with nbgrader's Validate, the
# instructor's formgrader, plots and progress bars, in headless Chromium. Debian's chromium is installed with
# apt-get when missing (root only: elsewhere the tests skip and say so); Playwright drives it and downloads nothing.
# Screenshots of every step: runs/browser/.
CHROMIUM := /usr/bin/chromium
test-browser: prepare-model $(VENV)/.browser-done
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } \
	      || echo "test-browser: apt-get could not install chromium: the browser tests will skip"; \
	  else echo "test-browser: $(CHROMIUM) is missing and installing it needs root and apt-get: the browser tests will skip"; fi; \
	fi
	COURSE_BROWSER=1 $(BIN)/python -m pytest tests/browser --timeout=480

$(VENV)/.browser-done: $(VENV)/.setup-done pyproject.toml
	$(BIN)/python -m pip install -c $(VENV)/torch-constraint.txt -e ".[dev,browser]"
	@$(BIN)/python -c "import playwright" || { echo "playwright is not installed: pyproject.toml needs the 'browser' extra"; exit 1; }
	touch $@
