"""README's table of environment variables against the code that reads them, both ways.

The scan finds every read of a named variable in utils/, tools/, the solution notebooks' code cells and
tests/conftest.py (the suite's own switch): os.environ[...] / .get(...) / `in os.environ`, os.getenv(...),
and environ.get(...) on an `environ` parameter. A variable's name may be written out or held in a module
constant (PROFILE_ENV = "COURSE_PROFILE", also when imported from another course module). The README row
names the files that read it ("Read by"); a row read only by a library names the library instead, and then
no course file may read it.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCANNED = ["utils", "tools"]
EXTRA_FILES = ["tests/conftest.py", "tests/browser/conftest.py", "tests/browser/test_student.py"]
TABLE_HEADING = "## Profiles: one switch for model size and run length"
# Reads whose key is not a variable the course is steered by; each names why.
NOT_SETTINGS: dict[str, str] = {}  # file -> why (none today: the dry run hands its variables to the kernel, tools.headless)


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "string" assignments."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


def _module_file(module: str) -> Path | None:
    path = REPO / Path(*module.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").exists() else (path / "__init__.py" if (path / "__init__.py").exists() else None)


def _names_in_scope(tree: ast.Module) -> dict[str, str]:
    """Constants defined here and those imported by name from course modules."""
    names = _constants(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("utils", "tools"):
            source = _module_file(node.module)
            if source is None:
                continue
            theirs = _constants(ast.parse(source.read_text(encoding="utf-8")))
            for alias in node.names:
                if alias.name in theirs:
                    names[alias.asname or alias.name] = theirs[alias.name]
    return names


def _loop_names(tree: ast.Module) -> dict[str, set[str]]:
    """Names bound by a loop or comprehension over a literal tuple or list of strings: `for k in ("A", "B")`."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name) and isinstance(node.iter, (ast.Tuple, ast.List)):
            values = [e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if values and len(values) == len(node.iter.elts):
                out.setdefault(node.target.id, set()).update(values)
    return out


def _is_environ(node: ast.AST) -> bool:
    """os.environ, or a name `environ` (the course's functions take one to be testable)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name) and node.id == "environ")


def _reads(tree: ast.Module):
    """(key expression, line) of every read of one named variable."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr == "get" and _is_environ(node.func.value):
                yield node.args[0], node.lineno
            elif node.func.attr == "getenv":
                yield node.args[0], node.lineno
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            yield node.slice, node.lineno
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            if any(_is_environ(c) for c in node.comparators):
                yield node.left, node.lineno


def _sources():
    """(relative path, python source) of every scanned file and solution notebook."""
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8")
    for name in EXTRA_FILES:
        yield name, (REPO / name).read_text(encoding="utf-8")
    for path in sorted((REPO / "solutions").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))  # magics
        yield path.relative_to(REPO).as_posix(), code


@functools.cache
def code_reads() -> tuple[dict[str, set[str]], list[str]]:
    """variable -> files that read it, and the reads whose variable cannot be told (each a problem)."""
    found: dict[str, set[str]] = {}
    unknown = []
    for rel, source in _sources():
        tree = ast.parse(source)
        names, loops = _names_in_scope(tree), _loop_names(tree)
        for key, line in _reads(tree):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                variables = {key.value}
            elif isinstance(key, ast.Name) and key.id in names:
                variables = {names[key.id]}
            elif isinstance(key, ast.Name) and key.id in loops:
                variables = loops[key.id]
            elif rel in NOT_SETTINGS:
                continue
            else:
                unknown.append(f"{rel}:{line}: reads an environment variable whose name is not a string, a module constant "
                               "or a loop over literal names")
                continue
            for variable in variables:
                found.setdefault(variable, set()).add(rel)
    return found, unknown


def readme_table() -> dict[str, dict[str, str]]:
    """The environment-variable table in README's Profiles section: variable -> its columns."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert TABLE_HEADING in text, f"README.md has no section {TABLE_HEADING!r}"
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| Variable |")), None)
    assert start is not None, "README's Profiles section has no table starting '| Variable |'"
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = dict(zip(header, (c.strip() for c in line.strip().strip("|").split("|"))))
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells["Variable"])
        assert names, f"README env table row without a `VARIABLE`: {line}"
        for name in names:
            assert name not in rows, f"README env table lists {name} twice"
            rows[name] = cells
    return rows


def _read_by(cell: str) -> set[str]:
    return set(re.findall(r"`([\w./-]+\.(?:py|ipynb))`", cell))


def test_the_table_has_its_columns():
    row = next(iter(readme_table().values()))
    assert {"Variable", "Effect", "Default", "Read by"} <= set(row)


def test_every_read_names_its_variable():
    _, unknown = code_reads()
    assert not unknown, "\n".join(unknown)


def test_every_variable_the_code_reads_is_in_the_table_with_its_files():
    found, _ = code_reads()
    table = readme_table()
    missing = sorted(set(found) - set(table))
    assert not missing, f"read by the code but not in README's environment table: {missing} ({ {v: sorted(found[v]) for v in missing} })"
    for variable, files in found.items():
        listed = _read_by(table[variable]["Read by"])
        assert files <= listed, f"README's row for {variable} does not name {sorted(files - listed)}, which read it"


def test_every_row_of_the_table_is_read_where_it_says():
    found, _ = code_reads()
    for variable, row in readme_table().items():
        listed = _read_by(row["Read by"])
        if not listed:  # a library's variable (the row names the library): no course file reads it
            assert variable not in found, f"README says only a library reads {variable}, but {sorted(found[variable])} do"
            assert row["Read by"].strip(), f"README's row for {variable} names no reader"
            continue
        stale = sorted(listed - found.get(variable, set()))
        assert not stale, f"README says {stale} read {variable}, but the code there does not"
        assert row["Effect"] and row["Default"], f"README's row for {variable} needs an effect and a default"


@pytest.mark.parametrize("source, expected", [
    ('import os\nos.environ.get("A_B")', {"A_B"}),
    ('import os\nX = "C_D"\nos.environ[X]', {"C_D"}),
    ('import os\nif "E" not in os.environ: pass', {"E"}),
    ('import os\nos.getenv("F", "1")', {"F"}),
    ('def f(environ):\n    return environ.get("G")', {"G"}),
    ('import os\n[os.environ[k] for k in ("H", "I") if os.environ.get(k)]', {"H", "I"}),
])
def test_the_scan_finds_each_kind_of_read(source, expected):
    tree = ast.parse(source)
    names, loops = _names_in_scope(tree), _loop_names(tree)
    got = set()
    for key, _ in _reads(tree):
        got |= {key.value} if isinstance(key, ast.Constant) else {names[key.id]} if key.id in names else loops[key.id]
    assert got == expected
