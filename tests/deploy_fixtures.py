"""Deployment artefacts the tests share, built once per test session: converting SmolLM2 to GGUF takes
seconds and ~270 MB, so tests/test_model_test.py and tests/test_lab_3_1_10.py reuse one file."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=None)
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="course-deploy-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def course_gguf(outtype: str = "f16") -> Path:
    """The course model (the prepared SmolLM2 folder) converted with llama.cpp's converter."""
    from utils.gguf_files import convert_to_gguf
    from utils.models import prepare_smollm2

    return convert_to_gguf(prepare_smollm2(), {outtype: workdir() / f"smollm2-{outtype}.gguf"})[outtype]


@functools.lru_cache(maxsize=None)
def course_q4_k_m() -> Path:
    from utils.gguf_files import quantize_gguf

    return quantize_gguf(course_gguf("f16"), workdir() / "smollm2-Q4_K_M.gguf", "Q4_K_M")
