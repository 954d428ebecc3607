"""tools.run_lab: the --budget check, the profile it resolves once and hands to the kernel only, and its run report."""

import json
import os

import pytest

import tools.run_lab as run_lab
from tools.grading.course import Course
from utils import run_report
from utils.profiles import PROFILE_ENV, PROFILES, get_profile

lab_names = Course().lab_names


def _lab(prefix: str) -> str:
    return next(name for name in lab_names() if name.startswith(prefix))


@pytest.fixture
def run_times(monkeypatch, tmp_path):
    """Replace notebook execution: each lab 'takes' the seconds set in the returned dict (default 10).

    The fake kernel does what a lab does in its first cell and one later cell: resolves its profile from the
    environment it was given and records a figure, through that environment only.
    """
    seconds, executed, envs = {}, [], []

    def run(notebook, env, output, cell_timeout):
        executed.append(notebook.stem)
        envs.append(env)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            lab = run_lab.lab_id(notebook)
            get_profile(lab=lab if lab in run_lab.LAB_SIZES else None)
            run_report.record("heldout_after_fact_accuracy", 0.5, n=8)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return seconds.get(notebook.stem, 10.0)

    monkeypatch.setattr(run_lab, "run", run)
    monkeypatch.setattr(run_lab, "RUNS", tmp_path / "runs")
    seconds["executed"], seconds["envs"], seconds["runs"] = executed, envs, tmp_path / "runs"
    return seconds


def test_within_budget_exits_zero(run_times):
    assert run_lab.main(["3.1.6", "--profile", "grade", "--budget", "60"]) == 0
    assert run_times["executed"] == [_lab("lab-3.1.6")]


def test_over_budget_exits_one_and_names_the_lab(run_times, capsys):
    slow = _lab("lab-3.1.4")
    run_times[slow] = 75.0
    assert run_lab.main(["all", "--profile", "grade", "--budget", "60"]) == 1
    assert run_times["executed"] == lab_names()  # every lab still runs
    err = capsys.readouterr().err
    assert slow in err and "75 s > 60 s" in err


def test_no_budget_never_fails(run_times):
    run_times[_lab("lab-3.1.1")] = 10_000.0
    assert run_lab.main(["3.1.1", "--profile", "cpu"]) == 0


def test_the_profile_reaches_the_kernel_and_leaves_this_process_alone(run_times, monkeypatch, capsys):
    monkeypatch.setenv(PROFILE_ENV, "cpu")
    before = dict(os.environ)
    assert run_lab.main(["3.1.3", "--profile", "grade"]) == 0
    assert dict(os.environ) == before, "run_lab changed its own environment"
    env = run_times["envs"][0]
    assert env[PROFILE_ENV] == "grade" and env[run_report.REPORT_ENV]
    out = capsys.readouterr().out
    assert "profile 'grade' (from --profile)" in out and "alphas=[0, 5]" in out, out


def test_without_profile_the_course_rule_decides(run_times, monkeypatch, capsys):
    monkeypatch.setenv(PROFILE_ENV, "grade")
    assert run_lab.main(["3.1.6"]) == 0
    assert run_times["envs"][0][PROFILE_ENV] == "grade"
    assert f"profile 'grade' (from {PROFILE_ENV})" in capsys.readouterr().out


def test_nbgrader_in_the_shell_is_refused(run_times, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(SystemExit, match="NBGRADER_EXECUTION"):
        run_lab.main(["3.1.6", "--profile", "cpu"])


def test_each_run_writes_a_report_with_the_kernels_profile_and_figures(run_times):
    assert run_lab.main(["3.1.2", "--profile", "grade"]) == 0
    report = json.loads((run_times["runs"] / "grade" / f"{_lab('lab-3.1.2')}.report.json").read_text())
    assert report["status"] == "ok" and report["lab"] == "3.1.2" and report["kind"] == "lab"
    assert report["profile"] == get_profile("grade", lab="3.1.2").to_dict()
    assert report["figures"] == {"heldout_after_fact_accuracy": {"value": 0.5, "n": 8}}
    assert report["wall_seconds"] == 10.0


def test_a_kernel_that_resolves_another_profile_fails_the_run(run_times, monkeypatch, capsys):
    """A second door: the kernel reads settings run_lab did not resolve (here an override set behind its back)."""
    real = run_lab.run

    def sneaky(notebook, env, output, cell_timeout):
        return real(notebook, {**env, "COURSE_PROFILE_OVERRIDES": '{"max_steps": 3}'}, output, cell_timeout)

    monkeypatch.setattr(run_lab, "run", sneaky)
    assert run_lab.main(["3.1.6", "--profile", "grade"]) == 1
    assert "max_steps" in capsys.readouterr().err
    report = json.loads((run_times["runs"] / "grade" / f"{_lab('lab-3.1.6')}.report.json").read_text())
    assert report["status"] == "failed" and "max_steps" in report["error"]


def test_a_failed_cell_still_leaves_a_report(run_times, monkeypatch):
    def failing(notebook, env, output, cell_timeout):
        raise RuntimeError("cell 7 raised\nValueError: boom")

    monkeypatch.setattr(run_lab, "run", failing)
    with pytest.raises(RuntimeError):
        run_lab.main(["3.1.6", "--profile", "grade"])
    report = json.loads((run_times["runs"] / "grade" / f"{_lab('lab-3.1.6')}.report.json").read_text())
    assert report["status"] == "failed" and report["error"] == "RuntimeError: ValueError: boom"


@pytest.mark.slow
def test_a_grade_run_of_lab_3_1_1_writes_a_complete_report(tmp_path):
    """The real thing: Lab 3.1.1 executed under grade; its report carries every field the course promises."""
    path = tmp_path / "lab-3.1.1.report.json"
    assert run_lab.main(["3.1.1", "--profile", "grade", "--report", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["schema"] == run_report.SCHEMA and report["status"] == "ok" and report["error"] is None
    assert report["profile"] == PROFILES["grade"].to_dict()  # every field, as the kernel resolved it
    assert report["precision"] in ("fp32", "bf16") and isinstance(report["precision_forced"], bool)
    assert report["torch_threads"] >= 1
    machine = report["machine"]
    assert machine["cpu_model"] and isinstance(machine["cpu_flags"], list) and machine["cpus"] >= 1 and machine["usable_cpus"] >= 1
    assert set(report["versions"]) == {"torch", "transformers", "peft", "trl"} and all(report["versions"].values())
    assert report["commit"] == "unknown" or len(report["commit"]) == 40
    assert 0 < report["wall_seconds"] < 600
    figures = report["figures"]
    for name in ("heldout_before_fact_accuracy", "heldout_after_fact_accuracy", "heldout_after_format_validity"):
        assert figures[name]["n"] == PROFILES["grade"].eval_examples and 0 <= figures[name]["value"] <= 1, name
    assert figures["train_seconds"]["value"] > 0 and figures["train_seconds"]["unit"] == "s"
    assert figures["lora_trainable_params"]["value"] == PROFILES["grade"].lora_r * 10176 * 30  # r x sum(d_in + d_out) of SmolLM2
    assert {"model_parameters", "train_loss_last", "effective_rank_median", "forward_seconds.merged"} <= set(figures)
