"""The student edition (tools.student_edition): what it holds, that no answer is in it, and (slow) that it sets
up and self-checks a lab from its own folder with no C++ compiler on PATH.

The leak search (tools.edition_leaks) reads EVERY file of the built edition and of its zip, as bytes
decoded leniently plus the strings of any JSON, for each lab's non-trivial hidden-test and solution lines
(the rule is in tools/edition_leaks.py's docstring) and for nbgrader's markers on a line of their own.
"""

import json
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import re
import time
import zipfile
from pathlib import Path

import pytest

from tools import edition_leaks
from tools.student_edition import ENTRY_MODULES, build, import_closure, is_junk, module_file
from tools.paths import REPO
from tools.without_compiler import COMMANDS_TO_CHECK, compiler_free_path, environ_without_compiler, is_hidden
TOP_LEVEL = {"labs", "utils", "tools", "tests", "module-3.1", "README.md", "Makefile", "PREREQUISITES.md",
             "QUICKSTART.md", "LAB_PREP.md", "pyproject.toml", "setup.mk"}


def edition_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    """The edition built from this checkout, without the builder's own leak check (the tests search themselves)."""
    out = tmp_path_factory.mktemp("edition") / "module-3.1-student"
    plan = build(out, make_zip=True, check=False)
    return out, out.with_name(out.name + ".zip"), plan


@pytest.fixture(scope="module")
def secrets():
    found = edition_leaks.course_secrets(REPO / "solutions", REPO / "labs")
    for lab in sorted(p.stem for p in (REPO / "solutions").glob("lab-*.ipynb")):
        kinds = {s.kind for s in found if s.lab == lab}
        # A rule that kept nothing would make the search pass vacuously.
        assert {"hidden test", "solution code"} <= kinds, f"{lab}: the rule leaves no {'hidden test' if 'hidden test' not in kinds else 'solution'} line to search for"
    return found


def test_the_edition_holds_what_a_student_needs_and_nothing_else(edition):
    out, _, plan = edition
    files = edition_files(out)
    assert {f.split("/")[0] for f in files} == TOP_LEVEL
    assert {f for f in files if f.startswith("labs/")} == {f"labs/{p.name}" for p in (REPO / "labs").glob("lab-*.ipynb")}
    utils = {p.relative_to(REPO).as_posix() for p in (REPO / "utils").rglob("*") if p.is_file() and not is_junk(p.relative_to(REPO))}
    assert {f for f in files if f.startswith("utils/")} == utils
    assert {f for f in files if f.startswith("tests/")} == {f"tests/{p.relative_to(REPO / 'edition' / 'tests').as_posix()}"
                                                            for p in (REPO / "edition" / "tests").rglob("*.py")}
    for name, source in [("README.md", "edition/README.md"), ("Makefile", "edition/Makefile"), *[(f, f) for f in files if f.split("/")[0] in ("labs", "utils", "tools", "module-3.1")]]:
        assert files[name].read_bytes() == (REPO / source).read_bytes(), f"{name} differs from {source}"
        assert stat.S_IMODE(files[name].stat().st_mode) == stat.S_IMODE((REPO / source).stat().st_mode), f"{name}: mode not kept"
    for relative in files:
        parts = relative.split("/")
        assert not {"solutions", ".git", "__pycache__", ".pytest_cache"} & set(parts) and not relative.endswith(".pyc"), relative
    existing = [m for m in ENTRY_MODULES if module_file(m) is not None]
    assert plan.missing_entries == [m for m in ENTRY_MODULES if m not in existing]
    for module in existing + ["tools.install_torch"]:
        assert f"{module.replace('.', '/')}.py" in files, f"{module} is not in the edition"
    assert "tools/student_edition.py" not in files and "tools/generate_labs.py" not in files, "instructor tools shipped"


def test_the_edition_tools_import_from_the_edition(edition):
    out, _, _ = edition
    roots = sorted((out / "utils").rglob("*.py")) + sorted((out / "labs").glob("*.ipynb"))
    reached, missing, problems = import_closure(ENTRY_MODULES, roots, repo=out)
    assert not problems, problems
    assert {f"tools/{p.relative_to(out / 'tools').as_posix()}" for p in (out / "tools").rglob("*.py")} == \
        {module_file(m, out).relative_to(out).as_posix() for m in reached} | {"tools/install_torch.py"}
    script = ("import importlib, sys; sys.path.insert(0, '.')\n"
              f"for name in {sorted(reached)!r}:\n"
              "    module = importlib.import_module(name)\n"
              "    assert module.__file__.startswith(sys.argv[1]), f'{name} came from {module.__file__}'\n")
    run = subprocess.run([sys.executable, "-c", script, str(out)], cwd=out, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


def test_no_hidden_test_or_solution_line_in_the_edition(edition, secrets):
    out, archive, _ = edition
    paths = edition_leaks.files_under(out) + [archive]
    leaks = edition_leaks.search(paths, secrets, out.parent)
    assert not leaks, f"{len(leaks)} answer line(s) in the student edition:\n" + edition_leaks.report(leaks, 200)


def test_the_search_finds_planted_leaks(edition, secrets, tmp_path):
    out, _, _ = edition
    copy = tmp_path / out.name
    shutil.copytree(out, copy)
    code = next(s for s in secrets if s.kind == "solution code")
    quoted = next(s for s in secrets if s.kind == "hidden test" and '"' in s.line)
    zipped = next(s for s in secrets if s.kind == "hidden test" and s.lab != quoted.lab)
    compiled = next(s for s in secrets if s.kind == "solution code" and s.lab != code.lab)
    with open(copy / "utils" / "course_data.py", "a") as f:  # a solution line copied into a utils file
        f.write(f"\n# {code.line}\n")
    notebook = copy / "labs" / sorted(p.name for p in (copy / "labs").glob("*.ipynb"))[0]
    nb = json.loads(notebook.read_text())
    nb["cells"][0]["source"] = [*nb["cells"][0]["source"], "\n", quoted.line]  # JSON-escaped on disk
    notebook.write_text(json.dumps(nb, indent=1))
    assert quoted.line.encode() not in notebook.read_bytes(), "the plant must be escaped on disk to test the JSON view"
    with zipfile.ZipFile(copy / "utils" / "data" / "extra.zip", "w") as z:  # inside an archive
        z.writestr("inner/notes.txt", f"notes\n    {zipped.line}\n")
    (copy / "utils" / "leak_source.py").write_text(f"ANSWER = {compiled.line!r}\n")  # only in a cache
    py_compile.compile(str(copy / "utils" / "leak_source.py"), cfile=str(copy / "utils" / "__pycache__" / "leak.pyc"))
    (copy / "utils" / "leak_source.py").unlink()
    (copy / "tools" / "stray.py").write_text('X = r"^### BEGIN HIDDEN TESTS.*?$"\n"""\n    ### END HIDDEN TESTS\n"""\n')

    found = {(leak.file, leak.lab, leak.line) for leak in edition_leaks.search(edition_leaks.files_under(copy), secrets, copy)}
    assert ("utils/course_data.py", code.lab, code.line) in found
    assert (f"labs/{notebook.name}", quoted.lab, quoted.line) in found
    assert ("utils/data/extra.zip!inner/notes.txt", zipped.lab, zipped.line) in found
    assert ("utils/__pycache__/leak.pyc", compiled.lab, compiled.line) in found
    assert ("tools/stray.py", "any lab", "### END HIDDEN TESTS") in found, "a marker on a line of its own is a leak"
    assert ("tools/stray.py", "any lab", "### BEGIN HIDDEN TESTS") not in found, "a marker inside a regular expression is not"
    message = edition_leaks.report(edition_leaks.search([copy / "utils" / "course_data.py"], secrets, copy))
    assert "utils/course_data.py" in message and code.lab in message and code.line in message


def _notebook(cells) -> dict:
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _cell(kind, source, **nbgrader):
    meta = {"nbgrader": {"grade_id": nbgrader.pop("grade_id", "c"), **nbgrader}} if nbgrader else {}
    return {"cell_type": kind, "source": source, "metadata": meta, **({"outputs": [], "execution_count": None} if kind == "code" else {})}


def test_secret_lines_follow_the_documented_rule(tmp_path):
    solution = _notebook([
        _cell("code", "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    y = some_long_expression(x) * 2\n"
              "    shown_in_release_line(x)\n    ### END SOLUTION", grade_id="f", solution=True),
        _cell("code", "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(41) == 42, 'hidden case'\n### END HIDDEN TESTS",
              grade_id="t", grade=True, points=1),
        _cell("code", "whole_cell_answer = compute_everything()", grade_id="g", solution=True),
        _cell("markdown", "**Question:** why does it work?\n\nBecause the update is low rank.\nRubric: 2 points for rank.",
              grade_id="w", solution=True, grade=True, points=2),
        _cell("code", "helper_given_to_everyone(x)  # long enough"),
    ])
    release = _notebook([
        _cell("code", "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nshown_in_release_line(x)", grade_id="f", solution=True),
        _cell("code", "assert f(1) == 2", grade_id="t", grade=True, points=1),
        _cell("markdown", "**Question:** why does it work?\n\nYOUR ANSWER HERE", grade_id="w", solution=True),
        _cell("code", "helper_given_to_everyone(x)  # long enough"),
    ])
    (tmp_path / "s.ipynb").write_text(json.dumps(solution))
    (tmp_path / "r.ipynb").write_text(json.dumps(release))
    found = {(s.kind, s.cell, s.line) for s in edition_leaks.lab_secrets(tmp_path / "s.ipynb", tmp_path / "r.ipynb")}
    assert found == {
        ("solution code", "f", "y = some_long_expression(x) * 2"),       # 'return x + 1' is under 16 characters
        ("hidden test", "t", "assert f(41) == 42, 'hidden case'"),
        ("solution code", "g", "whole_cell_answer = compute_everything()"),  # no markers: nbgrader replaces it whole
        ("written answer", "w", "Because the update is low rank."),
        ("written answer", "w", "Rubric: 2 points for rank."),
    }, found  # the question, shown in the release, and the given helper are not secrets
    common = edition_leaks.lab_secrets(tmp_path / "s.ipynb", tmp_path / "r.ipynb", common={"Rubric: 2 points for rank.": "test"})
    assert "Rubric: 2 points for rank." not in {s.line for s in common}


def test_every_common_line_still_matches_a_secret_line():
    unfiltered = set()
    for solution in sorted((REPO / "solutions").glob("lab-*.ipynb")):
        unfiltered |= {s.line for s in edition_leaks.lab_secrets(solution, REPO / "labs" / solution.name, common={})}
    stale = [line for line in edition_leaks.COMMON_LINES if line not in unfiltered]
    assert not stale, f"COMMON_LINES entries that no solution holds any more (remove them): {stale}"
    filtered = {s.line for s in edition_leaks.course_secrets(REPO / "solutions", REPO / "labs", across_labs=False)}
    assert not set(edition_leaks.COMMON_LINES) & filtered


def test_the_zip_is_the_folder_and_is_deterministic(edition, tmp_path):
    out, archive, _ = edition
    again = tmp_path / out.name
    build(again, make_zip=True, check=False)
    assert again.with_name(again.name + ".zip").read_bytes() == archive.read_bytes(), "two builds gave different zips"
    files = edition_files(out)
    with zipfile.ZipFile(archive) as z:
        names = [i.filename for i in z.infolist()]
        assert names == sorted(f"{out.name}/{f}" for f in files), "zip members are not the folder's files in sorted order"
        for info in z.infolist():
            path = files[info.filename.split("/", 1)[1]]
            assert z.read(info) == path.read_bytes(), info.filename
            assert stat.S_IMODE(info.external_attr >> 16) == stat.S_IMODE(path.stat().st_mode), f"{info.filename}: mode"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = "".join(ch for ch in heading.strip().lower() if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def test_links_between_the_edition_documents_resolve(edition):
    import re

    out, _, _ = edition
    broken = []
    for doc in sorted(out.rglob("*.md")):
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(out)}: {target} (no such file in the edition)")
            elif anchor and file.suffix == ".md":
                headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
                if anchor not in headings:
                    broken.append(f"{doc.relative_to(out)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_builder_refuses_a_leak_and_ships_the_import_closure(tmp_path):
    repo = tmp_path / "repo"
    lab = "lab-9.9.9-demo"
    solution = _notebook([_cell("code", "def f():\n    ### BEGIN SOLUTION\n    return secret_formula_of_the_lab(3)\n    ### END SOLUTION",
                                grade_id="f", solution=True)])
    release = _notebook([_cell("code", "def f():\n    raise NotImplementedError()", grade_id="f", solution=True),
                         _cell("code", "!python -m tools.nb_tool --help")])
    sources = {
        f"solutions/{lab}.ipynb": json.dumps(solution), f"labs/{lab}.ipynb": json.dumps(release),
        "utils/__init__.py": "", "tools/__init__.py": "", "tools/install_torch.py": "",
        "tools/quickstart.py": "from tools.sub import helper\nfrom tools import other\n",
        "tools/sub/__init__.py": "def helper():\n    from .deep import x\n",
        "tools/sub/deep.py": "x = 1\n", "tools/other.py": "", "tools/unused.py": "",
        "tools/run_lab.py": "import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'tools.spawned'])\n",
        "tools/spawned.py": "", "tools/model_test.py": "", "tools/nb_tool.py": "", "tools/bench.py": "",
        "edition/README.md": "student readme\n", "edition/Makefile": "all:\n", "edition/tests/test_edition.py": "",
        **{name: "x\n" for name in ("PREREQUISITES.md", "QUICKSTART.md", "LAB_PREP.md", "pyproject.toml", "setup.mk", "module-3.1/README.md")},
    }
    for name, text in sources.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    plan = build(tmp_path / "clean", repo=repo)
    shipped = set(edition_files(tmp_path / "clean"))
    assert {"tools/sub/__init__.py", "tools/sub/deep.py", "tools/other.py", "tools/spawned.py", "tools/nb_tool.py"} <= shipped
    assert "tools/unused.py" not in shipped and not any(f.startswith("solutions/") for f in shipped)
    assert plan.missing_entries == ["tools.self_check"]

    (repo / "utils" / "__init__.py").write_text("# return secret_formula_of_the_lab(3)\n")
    with pytest.raises(RuntimeError, match=r"utils/__init__.py: solution code of lab-9.9.9-demo"):
        build(tmp_path / "leaky", repo=repo)
    assert not (tmp_path / "leaky").exists(), "nothing may be written when the edition leaks"
    (repo / "utils" / "__init__.py").write_text("")
    (repo / "tools" / "other.py").write_text("from tests.mistake_table import run\n")
    with pytest.raises(RuntimeError, match="tests.mistake_table, which the student edition does not ship"):
        build(tmp_path / "broken", repo=repo)


def test_without_compiler_hides_compilers_and_keeps_the_rest(tmp_path):
    for name in ["gcc", "gcc-12", "g++", "c++", "cc", "cpp-12", "clang", "clang++-15", "cmake", "ninja",
                 "x86_64-linux-gnu-gcc-12", "x86_64-linux-gnu-g++", "aarch64-linux-gnu-cpp"]:
        assert is_hidden(name), name
    for name in ["make", "python3", "c++filt", "ld", "ccache", "git", "pip", "x86_64-linux-gnu-c++filt", "cc1plus-helper"]:
        assert not is_hidden(name), name
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    for name in ["gcc", "make", "python3", "x86_64-linux-gnu-gcc-12"]:
        (fake / name).write_text("#!/bin/sh\n")
        (fake / name).chmod(0o755)
    (fake / "mycompiler").symlink_to(fake / "gcc")  # an alias under another name
    new_path, hidden = compiler_free_path(tmp_path / "bin", str(fake))
    assert hidden == ["gcc", "mycompiler", "x86_64-linux-gnu-gcc-12"]
    assert shutil.which("make", path=new_path) and not shutil.which("mycompiler", path=new_path)

    env = environ_without_compiler(tmp_path / "real-bin")
    assert all(shutil.which(c, path=env["PATH"]) is None for c in COMMANDS_TO_CHECK)
    assert shutil.which("make", path=env["PATH"]) and env["CC"] == env["CXX"] == "/bin/false"
    run = subprocess.run([sys.executable, str(REPO / "tools" / "without_compiler.py"), "--", "sh", "-c",
                          'test -z "$(command -v gcc)" && test "$CC" = /bin/false && exit 7'], capture_output=True, text=True)
    assert run.returncode == 7, run.stderr


# ---------------------------------------------------------------- slow: the edition on a clean machine

def _clean_environment(tmp: Path) -> dict:
    """This machine's environment minus this repository's venv, with a fresh model cache and no compiler."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "COURSE_PROFILE", "NBGRADER_EXECUTION")}
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep)
                                  if d and not Path(d).resolve().is_relative_to(REPO) and Path(d).resolve() != Path(sys.prefix).resolve() / "bin")
    env["COURSE_CACHE"] = str(tmp / "course-cache")
    return environ_without_compiler(tmp / "bin-without-compiler", env)


@pytest.fixture(scope="module")
def set_up_edition(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean-machine")
    out = tmp / "module-3.1-student"
    build(out, check=False)
    env = _clean_environment(tmp)
    assert all(shutil.which(c, path=env["PATH"]) is None for c in COMMANDS_TO_CHECK)
    started = time.perf_counter()
    run = subprocess.run(["make", "setup", "prepare-model"], cwd=out, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    print(f"\nstudent edition: make setup prepare-model took {seconds:.0f} s without a compiler (exit {run.returncode})")
    return out, env, run, seconds


def _run(out: Path, env: dict, *command: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=out, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_edition_sets_up_without_a_compiler(set_up_edition):
    out, env, run, _ = set_up_edition
    assert run.returncode == 0, f"make setup prepare-model failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    python = out / ".venv" / "bin" / "python"
    probe = _run(out, env, str(python), "-c", "import importlib.util, tools, utils; "
                 "print(tools.__file__, utils.__file__, importlib.util.find_spec('llama_cpp') is None)")
    tools_file, utils_file, no_llama = probe.stdout.split()
    assert Path(tools_file).is_relative_to(out) and Path(utils_file).is_relative_to(out), probe.stdout
    assert no_llama == "True", "make setup installed llama-cpp-python, which needs a compiler"
    assert (Path(env["COURSE_CACHE"]) / "smollm2-135m-instruct" / "model.safetensors").is_file()


@pytest.mark.slow
def test_the_edition_runs_its_quickstart_and_its_own_fast_tests(set_up_edition):
    out, env, setup, _ = set_up_edition
    assert setup.returncode == 0, "set-up failed (see test_the_edition_sets_up_without_a_compiler)"
    quick = _run(out, {**env, "COURSE_PROFILE": "grade"}, "make", "quickstart")
    assert quick.returncode == 0 and "Held-out score, fine-tuned" in quick.stdout, quick.stdout[-3000:] + quick.stderr[-3000:]
    own = _run(out, env, str(out / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider")
    assert own.returncode == 0, own.stdout[-5000:]


def _total(output: str) -> tuple[float, float]:
    """The self-check's headline, `lab-...: SCORE / MAX autograded points` (tools.grading.engine.GradeResult.table)."""
    import re

    match = re.search(r"^lab-[\w.-]+: (\d+(?:\.\d+)?) / (\d+(?:\.\d+)?) autograded", output, re.M)
    assert match, f"no 'lab-...: score / max autograded' headline in:\n{output}"
    return float(match.group(1)), float(match.group(2))


@pytest.mark.slow
def test_the_edition_self_checks_a_lab_from_its_own_folder(set_up_edition, tmp_path):
    out, env, setup, _ = set_up_edition
    assert setup.returncode == 0, "set-up failed (see test_the_edition_sets_up_without_a_compiler)"
    lab = "lab-3.1.6-dataset-preparation"
    untouched, solved = tmp_path / "untouched" / f"{lab}.ipynb", tmp_path / "solved" / f"{lab}.ipynb"
    for target, source in ((untouched, out / "labs" / f"{lab}.ipynb"), (solved, REPO / "solutions" / f"{lab}.ipynb")):
        target.parent.mkdir()
        shutil.copy(source, target)
    check = _run(out, env, "make", "self-check", "LAB=3.1.6", f"NB={untouched}")
    score, top = _total(check.stdout)
    # The tool exits 1: visible tests failed (2 would be a grader error, not the student's failure); make says which
    # status its recipe ended with and exits 2 itself.
    assert check.returncode == 2 and "] Error 1" in check.stderr, check.stdout[-4000:] + check.stderr[-2000:]
    assert score == 0 < top and "FAILED" in check.stdout, check.stdout[-4000:]
    assert "not your grade" in check.stdout
    check = _run(out, env, "make", "self-check", "LAB=3.1.6", f"NB={solved}")
    score, top = _total(check.stdout)
    assert check.returncode == 0 and score == top > 0 and "FAILED" not in check.stdout, check.stdout[-4000:] + check.stderr[-2000:]


def test_the_editions_documents_speak_to_students(edition):
    """The copied documents lose their instructors-only blocks; every `make X` they tell a student to run exists in the
    edition (its Makefile and setup.mk), and none points at solutions/ or the instructors' commands."""
    out, _, _ = edition
    targets = set()
    for makefile in ("Makefile", "setup.mk"):
        targets |= set(re.findall(r"^([A-Za-z][\w-]*):", (out / makefile).read_text(), re.M))
    for name in ("README.md", "QUICKSTART.md", "PREREQUISITES.md", "LAB_PREP.md"):
        text = (out / name).read_text()
        assert "<!-- instructors -->" not in text and "Instructors and CI" not in text, name
        commands = re.findall(r"(?:`|^[ \t]*)make ([a-z][\w-]*)", text, re.M)  # in backticks, or a code block's line
        missing = sorted(set(commands) - targets)
        assert not missing, f"{name} tells students to run make targets the edition does not have: {missing}"
        if name != "README.md":  # the edition's own README ends with a note to instructors on where grading lives
            assert "solutions/" not in text and "grade-class" not in text, name


@pytest.mark.parametrize("text, problem", [
    ("a\n<!-- instructors -->\nb\n", "never closed"),
    ("a\n<!-- /instructors -->\n", "without an opening"),
    ("<!-- instructors -->\n<!-- instructors -->\n", "inside the block"),
])
def test_unbalanced_instructors_markers_fail_the_build(text, problem):
    from tools.student_edition import for_students

    with pytest.raises(ValueError, match=problem):
        for_students(text, "X.md")
    assert for_students("a\n<!-- instructors -->\nsecret\n<!-- /instructors -->\nb\n") == "a\nb\n"
