"""Every module under utils/ and tools/ has tests a newcomer finds from its name (ARCHITECTURE.md, "Where a module's
tests are"): `tests/unit/test_<name>.py` or `tests/test_<name>.py`, or a row below naming the file that tests it.

A file only counts if it reaches the module: imports it (directly or through the modules it imports), names it
(`utils.x`, `utils/x.py`, `python -m tools.x`, or code in a string run in a subprocess), or runs a solution
notebook that imports it. So a row cannot point at a file that has nothing to do with its module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from test_architecture import REPO, _resolve, code_modules, imports_of, notebook_sources

# module -> (the test files that test it, what they test), for modules whose tests are not named after them
TESTED_ELSEWHERE = {
    "tools/kept_reports.py": (["tests/test_doc_figures.py"], "the kept reports, their figures and the tables generated from them"),
    "utils/__init__.py": (["tests/test_quiet.py"], "importing the package silences bitsandbytes' harmless warning"),
    "utils/adapters.py": (["tests/test_lab_3_1_2.py", "tests/test_lab_3_1_7.py"], "adapter_config (LoRA/DoRA); merged inference"),
    "utils/go_template_subset.py": (["tests/test_modelfile.py"], "the Go-template renderer against Go's own engine"),
    "utils/experiments/memory_targets.py": (["tests/test_lab_3_1_2.py"], "a memory target trains with the lab's batch size"),
    "utils/memory_worker.py": (["tests/test_memory.py"], "the fresh-process worker behind measure_peak_memory"),
    "utils/modelfile_check.py": (["tests/test_modelfile.py"], "check_modelfile's findings"),
    "utils/preference_data.py": (["tests/test_lab_3_1_6.py", "tests/unit/test_kto_pairs.py"], "the preference and KTO data"),
    "utils/raw_formats.py": (["tests/test_lab_3_1_6.py"], "Lab 3.1.6's raw files and broken records"),
    "utils/model_questions.py": (["tests/test_model_checks.py"], "questions files and the checks of a reply"),
    "utils/model_report.py": (["tests/test_model_checks.py"], "the model test's report, gates and JUnit XML"),
    "utils/served_model_client.py": (["tests/test_model_test.py", "tests/test_lab_3_1_10.py"], "a served model tested over the chat API"),
    "utils/tiny_llama.py": (["tests/test_spark_dry_run.py"], "the toy Llama 3.1: tokens, template, architecture"),
    "utils/experiments/neftune_loss.py": (["tests/test_lab_3_1_3.py"], "training-set loss with the noise on and off"),
    "utils/experiments/stop_and_resume.py": (["tests/test_lab_3_1_4.py"], "a run stopped, resumed and compared"),
    "utils/experiments/qlora_run.py": (["tests/test_lab_3_1_5.py"], "4-bit loading and the measured QLoRA run"),
    "utils/experiments/preference.py": (["tests/test_lab_3_1_7.py", "tests/unit/test_kto_pairs.py"], "one preference run per method"),
    "utils/experiments/preference_comparison.py": (["tests/test_lab_3_1_8.py", "tests/test_lab_3_1_9.py"], "methods compared on one split"),
    "utils/experiments/on_policy.py": (["tests/test_lab_3_1_7_on_policy.py"], "Lab 3.1.7's on-policy DPO round"),
    "utils/decode_speed.py": (["tests/test_quant_bench.py"], "repeated, interleaved timings and the speed ratios"),
    "tools/quant_table.py": (["tests/test_quant_bench.py"], "the committed table is generated from its JSON"),
    "tools/build_data.py": (["tests/test_course_data.py"], "the shipped course data is what the generator writes (--check)"),
    "tools/build_preference_data.py": (["tests/test_lab_3_1_6.py"], "the preference data rebuilt from the Lab 3.1.6 solution"),
    "tools/edition_leaks.py": (["tests/test_student_edition.py"], "no hidden test or solution line in the edition"),
    "tools/generate_labs.py": (["tests/test_notebooks.py"], "labs/ in sync with solutions/"),
    "tools/hidden_test_errors.py": (["tests/test_nbgrader_release.py"], "hidden tests kept out of feedback tracebacks"),
    "tools/nbgrader_root.py": (["tests/test_nbgrader_release.py"], "a stock nbgrader course root releases and autogrades"),
    "tools/quickstart.py": (["tests/test_student_edition.py"], "`make quickstart` runs in the student edition (slow)"),
    "tools/self_check.py": (["tests/test_grade_class.py"], "one notebook checked with the class grader's engine"),
    "tools/without_compiler.py": (["tests/test_no_compiler.py"], "set-up and fast tests on a PATH without a C++ compiler"),
    "tools/grading/bench.py": (["tests/test_grade_class.py"], "grading time per lab (the benchmark test)"),
    "tools/grading/confine.py": (["tests/unit/test_grading_sandbox.py"], "the kernel side of the sandbox"),
    "tools/grading/course.py": (["tests/test_grade_class.py", "tests/test_run_lab.py"], "labs and notebooks of a Course"),
    "tools/grading/output.py": (["tests/test_grade_class.py"], "results, gradebook and grades.csv"),
    "tools/grading/plan.py": (["tests/test_grade_class.py"], "what is graded again after a change, late work"),
    "tools/grading/pool.py": (["tests/test_grade_class.py"], "local pool and Dask; a crashed worker is a grader error"),
    "tools/grading/report.py": (["tests/test_grade_class.py"], "summary.md, cells.csv, the score plot"),
}


def name_of(rel: str) -> str:
    """utils/plotting.py -> plotting; tools/grading/engine.py -> grading_engine; utils/__init__.py -> ''."""
    inner = rel[: -len(".py")].split("/", 1)[1].removesuffix("__init__").rstrip("/")
    return inner.replace("/", "_")



def has_code(path: Path) -> bool:
    """False for a module that is only a docstring (or empty): nothing to test."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def reached(test_file: Path, modules: dict[str, str], graph: dict[str, set[str]], notebooks: dict[str, set[str]]) -> set[str]:
    """The modules a test file reaches: what it imports or names, what those import in turn, and what the solution
    notebooks it names import."""
    source = test_file.read_text()
    start = {module for module, _ in imports_of(source, "tests", False, modules)}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for word in re.findall(r"\b(?:utils|tools)(?:[./]\w+)+", node.value):
                start.add(_resolve(word.removesuffix(".py").replace("/", "."), modules))
            try:  # code run with `python -c` or written into a file
                start |= {module for module, _ in imports_of(node.value, "tests", False, modules)}
            except (SyntaxError, ValueError):
                pass
    start |= {module for stem, imported in notebooks.items() if stem in source for module in imported}
    seen, todo = set(), [module for module in start if module]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    return seen


@pytest.fixture(scope="module")
def world():
    modules = code_modules(REPO)
    graph = {name: {m for m, _ in imports_of((REPO / rel).read_text(), name, rel.endswith("__init__.py"), modules)}
             for name, rel in modules.items()}
    notebooks = {path.stem: {m for source in notebook_sources(path) for m, _ in imports_of(source, "notebook", False, modules)}
                 for path in sorted((REPO / "solutions").glob("*.ipynb"))}
    reach = {}  # test file -> the modules it reaches, worked out once per session
    return modules, lambda file: reach.get(file) or reach.setdefault(file, reached(REPO / file, modules, graph, notebooks))


def found_tests(rel: str) -> tuple[list[str], str]:
    """The test files of a module (found by name first, else by the table) and how they were found."""
    name = name_of(rel)
    by_name = [f"{folder}/test_{name}.py" for folder in ("tests/unit", "tests") if name and (REPO / folder / f"test_{name}.py").exists()]
    if by_name:
        return by_name, "by name"
    return (TESTED_ELSEWHERE[rel][0], "TESTED_ELSEWHERE") if rel in TESTED_ELSEWHERE else ([], "")


def test_every_module_has_tests_found_from_its_name(world):
    modules, reach = world
    problems = []
    for module, rel in sorted(modules.items()):
        if not has_code(REPO / rel):
            continue
        files, how = found_tests(rel)
        if not files:
            problems.append(f"{rel} has no tests: write tests/unit/test_{name_of(rel) or 'utils'}.py, or name the file that "
                            f"tests it in TESTED_ELSEWHERE ({Path(__file__).name})")
        for file in files:
            if not (REPO / file).exists():
                problems.append(f"{rel}: {file} (from {how}) does not exist")
            elif module not in reach(file):
                problems.append(f"{rel}: {file} (found {how}) neither imports it, names it, nor runs a notebook that imports it")
    assert not problems, "\n".join(problems)


def test_the_table_has_no_stale_rows():
    modules = set(code_modules(REPO).values())
    stale = [rel for rel in TESTED_ELSEWHERE if rel not in modules]
    named = [rel for rel in TESTED_ELSEWHERE if rel in modules and found_tests(rel)[1] == "by name"]
    assert not stale, f"TESTED_ELSEWHERE names modules that no longer exist: {stale}"
    assert not named, f"these modules now have tests named after them; delete their TESTED_ELSEWHERE rows: {named}"


def test_a_module_without_tests_is_reported(world, monkeypatch):
    monkeypatch.delitem(TESTED_ELSEWHERE, "utils/raw_formats.py")
    with pytest.raises(AssertionError, match=r"utils/raw_formats.py has no tests: write tests/unit/test_raw_formats.py"):
        test_every_module_has_tests_found_from_its_name(world)


def test_a_row_pointing_at_an_unrelated_file_is_reported(world, monkeypatch):
    monkeypatch.setitem(TESTED_ELSEWHERE, "utils/raw_formats.py", (["tests/unit/test_paired_stats.py"], "wrong"))
    with pytest.raises(AssertionError, match=r"utils/raw_formats.py: tests/unit/test_paired_stats.py \(found TESTED_ELSEWHERE\) neither"):
        test_every_module_has_tests_found_from_its_name(world)


@pytest.mark.parametrize("rel, expected", [("utils/plotting.py", "plotting"), ("tools/grading/engine.py", "grading_engine"),
                                           ("utils/experiments/qlora_run.py", "experiments_qlora_run"), ("utils/__init__.py", "")])
def test_names(rel, expected):
    assert name_of(rel) == expected


def test_no_two_test_files_share_a_name():
    """pytest imports test files by their base name (rootdir import mode): two `test_x.py` in different folders
    stop the whole run at collection, so a module's unit tests and its slow tests need different names."""
    seen: dict[str, list[str]] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(path.relative_to(REPO).as_posix())
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"test files with the same name (rename one): {clashes}"
