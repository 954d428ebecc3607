"""Every run-derived number in the documents comes from a committed run report (issue 28), and the check can fail.

The real documents are checked against module-3.1/results/ by `tools.doc_figures.check`; the rest of the module
shows, on a small report written here, that a plausible wrong document fails: a changed digit, a number without
a marker in a results table, a marker to a missing report or figure, a stale generated table, an old run's date.
No torch: this runs in the fast suite.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tools.doc_figures import DOCUMENTS, REPO, RESULTS, check, check_text, compare, main
from tools.kept_reports import regenerate, render_run_times

REF = "box/cpu-fp32/lab-3.1.7-dpo-training"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    report = {
        "schema": 1, "kind": "lab", "subject": "lab-3.1.7-dpo-training", "status": "ok", "error": None,
        "started_utc": "2026-12-07T15:01:02+00:00", "wall_seconds": 398.61, "profile": {"name": "cpu", "max_steps": 16},
        "precision": "fp32", "commit": "0123456789abcdef", "dirty": False,
        "figures": {
            "onpolicy.fact_accuracy.after": {"value": 0.675, "n": 40},
            "pref_accuracy.after": {"value": 27 / 40, "n": 40},
            "mcnemar_p": {"value": 0.0923},
            "p_tiny": {"value": 1.49e-9},
            "peak_bytes": {"value": 1_739_000_000, "unit": "bytes"},
            "step_seconds": {"value": 3.384, "unit": "s", "repeats": 16},
            "ratio": {"value": 1.4567},
            "same_ids": {"value": 27, "n": 40},  # a count of n (an int), not a fraction
            "speed": {"value": 6.03, "min": 5.26, "max": 6.21},
        },
    }
    folder = tmp_path / "box" / "cpu-fp32"
    folder.mkdir(parents=True)
    (folder / "lab-3.1.7-dpo-training.report.json").write_text(json.dumps(report))
    return tmp_path


def problems(text: str, results: Path) -> list[str]:
    return [p.text for p in check_text(text, "doc.md", results=results, repo=REPO)]


def fig(name: str, ref: str = REF) -> str:
    return f"<!-- fig {ref} {name} -->"


# ---------------------------------------------------------------- the committed documents


def test_the_documents_agree_with_the_committed_reports():
    found = check()
    assert not found, "documents disagree with module-3.1/results/:\n" + "\n".join(map(str, found))


def test_the_documents_cite_committed_reports():
    """The check above would pass on documents that cite nothing: the study guide must cite lab reports."""
    text = (REPO / "module-3.1" / "README.md").read_text(encoding="utf-8")
    assert "<!-- generated: run-times" in text, "the study guide's run-times table is not generated from the reports"
    assert re.search(r"<!-- fig epyc-avx512/cpu-fp32/lab-3\.1\.\d+-", text), "the study guide quotes no lab report"
    assert list(RESULTS.glob("*/*/*.report.json")), "no run report is committed under module-3.1/results/"


@pytest.mark.parametrize("wrong, why", [
    ("Xeon", "no kept run is from a Xeon"),
    ("issue 9", "readers do not have the issue tracker"),
    ("all six labs", "there are ten labs"),
    ("45 s goal", "a goal stated nowhere else"),
    ("1.8-2.0x", "a ratio no report holds"),
    ("1.81 vs 1.41", "matches no bench row"),
    ("--model course-model ", "Ollama's name is course-<model>-<profile>; course-model-q4_k_m is the llama.cpp alias"),
    ("course-smollm2 ", "the Ollama name is course-smollm2-135m-instruct-<profile>"),
])
def test_the_listed_discrepancies_are_gone(wrong, why):
    for doc in DOCUMENTS:
        text = " ".join((REPO / doc).read_text(encoding="utf-8").split())
        assert wrong not in text, f"{doc} still says {wrong!r}: {why}"


# ---------------------------------------------------------------- markers


@pytest.mark.parametrize("printed, name", [
    ("27/40", "pref_accuracy.after"), ("67.5%", "onpolicy.fact_accuracy.after"), ("68%", "onpolicy.fact_accuracy.after"),
    ("p = 0.092", "mcnemar_p"), ("p = 0.09", "mcnemar_p"), ("1.5e-9", "p_tiny"), ("1.62 GiB", "peak_bytes"),
    ("1.74 GB", "peak_bytes"), ("1658.4 MiB", "peak_bytes"), ("3.38 s", "step_seconds"), ("3384 ms", "step_seconds"),
    ("1.46x", "ratio"), ("399 s", "report.wall_seconds"), ("6 min 39 s", "report.wall_seconds"), ("5.26x", "speed:min"),
    ("16", "report.profile.max_steps"), ("27/40", "same_ids"),
])
def test_a_number_printed_from_its_figure_passes(results, printed, name):
    assert problems(f"In the run, {printed}{fig(name)} held.", results) == []


@pytest.mark.parametrize("printed, name", [
    ("26/40", "pref_accuracy.after"),           # a changed digit
    ("27/20", "pref_accuracy.after"),           # another n than the figure's
    ("67.6%", "onpolicy.fact_accuracy.after"),  # one digit more, and wrong at it
    ("p = 0.093", "mcnemar_p"),
    ("1.6e-9", "p_tiny"),
    ("1.63 GiB", "peak_bytes"),
    ("3.39 s", "step_seconds"),
    ("1.45x", "ratio"),
    ("389 s", "report.wall_seconds"),
    ("6 min 38 s", "report.wall_seconds"),
    ("5.27x", "speed:min"),
    ("26/40", "same_ids"),
])
def test_a_changed_digit_fails(results, printed, name):
    found = problems(f"In the run, {printed}{fig(name)} held.", results)
    assert len(found) == 1 and "but figure" in found[0], found


def test_a_marker_to_a_missing_report_or_figure_fails(results):
    found = problems(f"27/40{fig('pref_accuracy.before')} and 27/40{fig('pref_accuracy.after', 'box/cpu-fp32/lab-3.1.8')}"
                     f" and 1{fig('speed:q3')} and 3{fig('report.profile.lab')}", results)
    assert len(found) == 4
    assert "no figure 'pref_accuracy.before'" in found[0] and "no report" in found[1] and "lab-3.1.8" in found[1]
    assert "no field 'q3'" in found[2] and "no field 'profile.lab'" in found[3]


def test_a_marker_with_no_number_before_it_fails(results):
    assert "no number" in problems(f"the accuracy{fig('ratio')} rose", results)[0]


def test_compare_reads_units_only_where_the_figure_has_them():
    assert compare("1.5 GB", 1.5, "gap", {}) is None  # a figure already in GB is compared as it is
    assert compare("1.5 GB", 1.5e9, "peak_bytes", {}) is None
    assert compare("50%", 50.0, "share", {"unit": "%"}) is None
    assert "not a number" in compare("1", None, "lost", {})


# ---------------------------------------------------------------- results tables


TABLE = """## Run times

Measured on the box, one run each:

| lab | wall time | accuracy |
|---|---|---|
| 3.1.7 | {wall} | {acc} |
"""


def test_a_results_table_with_markers_passes(results):
    text = TABLE.format(wall=f"399 s{fig('report.wall_seconds')}", acc=f"27/40{fig('pref_accuracy.after')}")
    assert problems(text, results) == []


def test_a_number_without_a_marker_in_a_results_table_fails(results):
    text = TABLE.format(wall="399 s", acc=f"27/40{fig('pref_accuracy.after')}")
    found = problems(text, results)
    assert len(found) == 1 and "'399 s' in a results table has no source" in found[0]
    for bare in ("67.5%", "1.46x", "0.092", "2 min 4 s", "1.62 GiB", "27/40"):
        assert problems(TABLE.format(wall=f"399 s{fig('report.wall_seconds')}", acc=bare), results), bare


def test_other_tables_and_names_are_not_figures(results):
    plan = "## Roadmap\n\nThe labs:\n\n| Lab | time | points |\n|---|---|---|\n| 3.1.10 | ~2 h | 8 + 5 |\n"
    assert problems(plan, results) == []
    names = TABLE.format(wall="`lab-3.1.10` (Lab 3.1.10)", acc="8 x 2")
    assert problems(names, results) == []
    opted_out = TABLE.replace("Measured on", "<!-- not-measured: published figures -->\nMeasured on").format(wall="12.5 s", acc="1%")
    assert problems(opted_out, results) == []


def test_a_table_from_another_committed_file_names_it(results):
    text = TABLE.replace("Measured on", "<!-- source: {src} -->\nMeasured on")
    assert problems(text.format(src="module-3.1/results/setup-measurements-2026-12-07.md", wall="2 min 4 s", acc="1"), results) == []
    found = problems(text.format(src="module-3.1/results/nowhere.md", wall="2 min 4 s", acc="1"), results)
    assert len(found) == 1 and "not a file" in found[0]


# ---------------------------------------------------------------- dates and generated blocks


def test_a_date_of_no_kept_run_fails(results):
    assert problems("One run on 2026-12-07 (the report).", results) == []
    found = problems("One run on 2026-12-03 on an idle machine.", results)
    assert len(found) == 1 and "2026-12-03" in found[0]


def test_the_run_times_table_is_generated_from_the_reports(results):
    table = render_run_times("box", results)
    assert "| 3.1.7 | `cpu` | fp32 | 399 s | ok | 2026-12-07 | 0123456 | `cpu-fp32/lab-3.1.7-dpo-training` |" in table
    block = f"<!-- generated: run-times box -->\n{table}<!-- /generated -->\n"
    assert problems(block, results) == [] and regenerate(block, results) == block
    stale = block.replace("399 s", "393 s")
    assert "not what the reports give" in problems(stale, results)[0]
    assert regenerate(stale, results) == block
    assert "unknown generated block" in problems("<!-- generated: nothing -->\n<!-- /generated -->", results)[0]


def test_the_command_fails_with_the_problems(capsys, monkeypatch, results):
    import tools.doc_figures as doc_figures

    (results / "doc.md").write_text("Run on 2026-11-23: 42.5%<!-- fig nowhere/x y -->\n")
    for name, value in (("DOCUMENTS", ("doc.md",)), ("REPO", results), ("RESULTS", results)):
        monkeypatch.setattr(doc_figures, name, value)
    assert main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "doc.md:1: marker nowhere/x y: no report" in err and "2026-11-23" in err and "2 problem(s)" in err
    (results / "doc.md").write_text(f"Run on 2026-12-07: 27/40{fig('pref_accuracy.after')}\n")
    assert main(["--check"]) == 0


def test_a_number_quoted_from_another_committed_file_must_occur_in_it(results):
    src = "module-3.1/results/setup-measurements-2026-12-07.md"
    assert problems(f"The build took 4 min 45 s<!-- in {src} -->.", results) == []
    found = problems(f"The build took 4 min 46 s<!-- in {src} --> and 1 s<!-- in nowhere.md -->.", results)
    assert len(found) == 2 and "does not occur" in found[0] and "no such file" in found[1]


def test_the_quickstart_and_bench_tables_come_from_their_reports(results):
    from tools.kept_reports import render_bench, render_quickstart

    folder = results / "box" / "cpu-fp32"
    quick = {"precision": "fp32", "precision_forced": True, "wall_seconds": 178.4, "started_utc": "2026-12-07T15:00:00+00:00",
             "profile": {"max_steps": 90}, "figures": {
                 "train_seconds": {"value": 161.2, "unit": "s"},
                 **{f"heldout_{w}_{k}": {"value": v, "n": 40} for w, v in (("before", 0.0), ("after", 0.975))
                    for k in ("fact_accuracy", "format_validity")}}}
    (folder / "quickstart.report.json").write_text(json.dumps(quick))
    row = render_quickstart("box", results).splitlines()[2]
    assert row == ("| fp32 | forced (`COURSE_PRECISION`) | 90 | 161 s | 178 s | 0.0% (0/40) -> 97.5% (39/40) "
                   "| 0.0% (0/40) -> 97.5% (39/40) | 2026-12-07 | `cpu-fp32/quickstart` |")
    bench = {"precision": "fp32", "precision_forced": True, "started_utc": "2026-12-07T15:10:00+00:00", "commit": "abcdef0123",
             "figures": {"matmul_gflops.fp32": {"value": 181.6}, "matmul_gflops.bf16": {"value": 790.2},
                         **{f"{what}.{key}": {"value": v} for key, s in (("plain_peft", 2.0), ("course_trainer", 1.5))
                            for what, v in (("step_seconds", s), ("tokens_per_second", 384 * 8 / s / 8), ("model_gflops_per_second", 100 / s))}}}
    (folder / "bench.report.json").write_text(json.dumps(bench))
    table = render_bench("box", results)
    assert "| fp32 matrix multiply, 1024^3 | 182 GFLOP/s |" in table and "| bf16 matrix multiply, 1024^3 | 790 GFLOP/s |" in table
    assert "| course trainer (`utils.training`) | 1.50 s/step, 256 tokens/s, 67 GFLOP/s (0.75x PEFT's plain step) |" in table
    assert "| plain loop, Lab 3.1.1's `LoRALinear` |  |" in table  # not measured: an empty cell, not a made-up one


def test_a_mean_over_seeds_is_not_printed_as_a_count(results):
    """13.3% of 40 questions averaged over 3 seeds is no k/40: the figures table must not invent one, nor pass '5/40'."""
    from tools.kept_reports import render_figures

    report = json.loads((results / f"{REF}.report.json").read_text())
    report["figures"]["fact_accuracy.mean"] = {"value": 0.13333333333333333, "n": 40, "repeats": 3}
    (results / f"{REF}.report.json").write_text(json.dumps(report))
    table = render_figures(REF, "fact_accuracy.mean", results=results)
    assert "| `fact_accuracy.mean` | 13.3% | 40 | 3 |" in table
    assert "| `pref_accuracy.after` | 67.5% (27/40) |" in render_figures(REF, results=results)
    assert "but figure" in problems(f"{'5/40'}{fig('fact_accuracy.mean')}", results)[0]
    report["figures"]["fact_accuracy.mean"]["value"] = 0.05  # 2/40 on average over 3 seeds: still no count
    (results / f"{REF}.report.json").write_text(json.dumps(report))
    assert "| `fact_accuracy.mean` | 5.0% | 40 | 3 |" in render_figures(REF, "fact_accuracy.mean", results=results)
    assert "a mean over 3" in problems(f"{'2/40'}{fig('fact_accuracy.mean')}", results)[0]


def test_a_notebooks_markdown_is_checked_like_a_document(results):
    """A solution notebook's Markdown (labs/ is generated from it) with a changed digit, or a date no report has, fails."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    (results / "solutions").mkdir()
    path = results / "solutions" / "lab-x.ipynb"

    def problems(markdown: str) -> list[str]:
        nbformat.write(new_notebook(cells=[new_code_cell("x = 1  # 99.9% not prose"), new_markdown_cell(markdown)]), path)
        return [str(p) for p in check(documents=(), repo=results, results=results)]

    assert problems(f"The kept run reached 67.5%{fig('onpolicy.fact_accuracy.after')}.") == []
    wrong = problems(f"The kept run reached 68.5%{fig('onpolicy.fact_accuracy.after')}.")
    assert len(wrong) == 1 and wrong[0].startswith("solutions/lab-x.ipynb (Markdown cell 1)"), wrong
    assert any("2026-11-23" in p for p in problems("Measured on 2026-11-23."))
