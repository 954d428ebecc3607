"""utils.run_report: figures recorded by name, a no-op without a report, and the report's own fields."""

import json
import math
import subprocess
import sys

import pytest

from utils import run_report
from utils.profiles import PROFILES, get_profile


def test_record_does_nothing_without_a_report_but_still_checks_the_name(monkeypatch, tmp_path):
    monkeypatch.delenv(run_report.REPORT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    run_report.record("heldout_accuracy", 0.5, n=8)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="'Heldout Accuracy'.*lower-case"):
        run_report.record("Heldout Accuracy", 0.5)  # fails in JupyterLab too, not only in a headless run
    with pytest.raises(ValueError, match=r"unknown detail\(s\) \['size'\]; known: \['n', 'note', 'repeats', 'unit'\]"):
        run_report.record("heldout_accuracy", 0.5, size=8)


def test_figures_go_to_the_file_the_environment_names(monkeypatch, tmp_path):
    """How a kernel started by tools.run_lab (and every process it starts) reaches the report."""
    figures = tmp_path / "figures.jsonl"
    monkeypatch.setenv(run_report.REPORT_ENV, str(figures))
    code = "from utils.run_report import record; record('step_seconds.peft', 1.25, unit='s', repeats=5)"
    subprocess.run([sys.executable, "-c", code], check=True)
    run_report.record("heldout_accuracy", 0.25, n=8)
    run_report.record("heldout_accuracy", 0.5, n=8)  # a re-run cell: the last value counts
    found, notes = run_report.read_figures_file(figures)
    assert found == {"step_seconds.peft": {"value": 1.25, "unit": "s", "repeats": 5}, "heldout_accuracy": {"value": 0.5, "n": 8}}
    assert notes == []


def test_values_become_plain_json(tmp_path):
    import numpy as np
    import torch

    with run_report.collecting(tmp_path / "f.jsonl") as path:
        run_report.record("a", np.float32(0.5))
        run_report.record("b", torch.tensor([1, 2]))
        run_report.record("c", math.nan)
        run_report.record("d", True)
        with pytest.raises(TypeError, match="figure 'e': value must be a number"):
            run_report.record("e", "high")
    found, _ = run_report.read_figures_file(path)
    assert found == {"a": {"value": 0.5}, "b": {"value": [1, 2]}, "c": {"value": None}, "d": {"value": True}}
    json.loads(path.read_text().splitlines()[2])  # strict JSON: no NaN


def test_a_lab_resolving_its_profile_notes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "grade")
    with run_report.collecting(tmp_path / "f.jsonl") as path:
        P = get_profile(lab="3.1.3")
        get_profile("cpu", lab="3.1.3")  # an explicit name is code's own business, not the run's profile
    _, notes = run_report.read_figures_file(path)
    assert [n["profile"] for n in notes] == [P.to_dict()]
    assert notes[0]["precision"] in ("fp32", "bf16") and notes[0]["torch_threads"] >= 1


def test_session_writes_the_report_also_when_the_run_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "grade")
    path = tmp_path / "r.json"
    with pytest.raises(ZeroDivisionError):
        with run_report.session("quickstart", "quickstart", get_profile("grade"), path) as extra:
            get_profile()
            run_report.record("heldout_before_fact_accuracy", 0.0, n=8)
            extra["device"] = "cpu"
            1 / 0
    report = json.loads(path.read_text())
    assert report["status"] == "failed" and report["error"].startswith("ZeroDivisionError")
    assert report["figures"] == {"heldout_before_fact_accuracy": {"value": 0.0, "n": 8}}
    assert report["device"] == "cpu" and report["profile"] == PROFILES["grade"].to_dict()
    assert run_report._collecting is None, "the session left this process collecting"


def test_a_run_whose_process_resolves_another_profile_is_marked_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    path = tmp_path / "r.json"
    with run_report.session("quickstart", "quickstart", get_profile("grade"), path):
        get_profile()
    report = json.loads(path.read_text())
    assert report["status"] == "failed" and "second door" in report["error"] and "max_steps" in report["error"]


def test_cpu_facts_from_x86_and_arm_cpuinfo():
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 ht\n"
    assert run_report.cpu_facts(x86) == {"cpu_model": "AMD EPYC 9B14", "cpu_flags": ["avx", "avx2", "avx512_bf16", "avx512f", "fma", "sse4_2"]}
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp sve bf16 i8mm cpuid\n"
    assert run_report.cpu_facts(arm)["cpu_flags"] == ["asimd", "asimddp", "bf16", "i8mm", "sve"]


def test_git_commit_is_unknown_outside_a_checkout(tmp_path):
    assert run_report.git_commit(tmp_path) == ("unknown", None)
    commit, dirty = run_report.git_commit()
    assert commit == "unknown" or (len(commit) == 40 and isinstance(dirty, bool))


def test_library_versions_are_read_without_importing():
    versions = run_report.library_versions()
    assert set(versions) == {"torch", "transformers", "peft", "trl"} and all(versions.values())
