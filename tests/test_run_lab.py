"""tools.run_lab: the --budget check instructors use to hold each lab to its time limit."""

import pytest

import tools.run_lab as run_lab
from tools.grading.course import Course

lab_names = Course().lab_names


def _lab(prefix: str) -> str:
    return next(name for name in lab_names() if name.startswith(prefix))


@pytest.fixture
def run_times(monkeypatch):
    """Replace notebook execution: each lab 'takes' the seconds set in the returned dict (default 10)."""
    seconds, executed = {}, []

    def run(notebook, profile, output, cell_timeout):
        executed.append(notebook.stem)
        return seconds.get(notebook.stem, 10.0)

    monkeypatch.setattr(run_lab, "run", run)
    seconds["executed"] = executed
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
