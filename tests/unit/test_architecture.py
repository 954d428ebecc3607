"""ARCHITECTURE.md stays true: its layer table is the rule every import in utils/, tools/, tests/ and the solution
notebooks must follow, and every module under utils/ and tools/ has tests found from its name.

The note is the one source: this file reads its tables (layers, known breaks), computes the real import graph with
`ast` (lazy imports inside functions count too), and fails on an import from a layer the importer may not use,
naming the file, the line and the rule. `python tests/unit/test_architecture.py` prints the graph by layer.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTE = "ARCHITECTURE.md"
CODE_DIRS = ("utils", "tools")  # the modules the layers order; tests/ and notebooks are checked as importers


# ---------------------------------------------------------------- the import graph, from the source


def module_name(rel: str) -> str:
    """utils/experiments/preference.py -> utils.experiments.preference; utils/__init__.py -> utils."""
    parts = rel[: -len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def code_modules(root: Path) -> dict[str, str]:
    """Dotted name -> path relative to root, for every .py file under utils/ and tools/."""
    found = {}
    for top in CODE_DIRS:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            found[module_name(rel)] = rel
    return found


def _resolve(name: str, known) -> str | None:
    """The repository module an imported name lands in (`utils.shortcut_guard.out_of_reach` -> `utils.shortcut_guard`), or None."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@functools.lru_cache(maxsize=None)
def _import_statements(source: str) -> tuple:
    """(names, module, level, line) of every import statement at any depth; parsed once per distinct text."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [((alias.name,), None, 0, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((tuple(alias.name for alias in node.names), node.module or "", node.level, node.lineno))
    return tuple(found)


def imports_of(source: str, importer: str, is_package: bool, known) -> list[tuple[str, int]]:
    """(repository module, line) for every import statement in `source`, at any depth; relative imports resolved."""
    found = []
    for names, base, level, line in _import_statements(source):
        if base is None:  # `import a.b`
            found.append((_resolve(names[0], known), line))
            continue
        if level:
            package = importer.split(".") if is_package else importer.split(".")[:-1]
            package = package[: len(package) - level + 1]
            base = ".".join(package + ([base] if base else []))
        for name in names:
            whole = f"{base}.{name}"  # `from tools.grading import pool` imports a module
            found.append((_resolve(whole if whole in known else base, known), line))
    return [(module, line) for module, line in found if module and module != importer]


def notebook_sources(path: Path) -> list[str]:
    """The code cells of a notebook, IPython magics and shell lines blanked (they are not Python; lines keep their numbers)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = []
    for cell in cells:
        if cell["cell_type"] == "code":
            lines = "".join(cell["source"]).splitlines()
            sources.append("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines))
    return sources


def importers(root: Path, known) -> list[tuple[str, str, int]]:
    """(importer's path, imported module, line) over utils/, tools/, tests/ and solutions/*.ipynb."""
    edges = []
    for name, rel in code_modules(root).items():
        edges += [(rel, module, line) for module, line in imports_of((root / rel).read_text(), name, rel.endswith("__init__.py"), known)]
    for path in sorted((root / "tests").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        edges += [(rel, module, line) for module, line in imports_of(path.read_text(), "tests", False, known)]
    for path in sorted((root / "solutions").glob("*.ipynb")):
        rel = path.relative_to(root).as_posix()
        for number, source in enumerate(notebook_sources(path), 1):
            edges += [(f"{rel} (code cell {number})", module, line) for module, line in imports_of(source, "notebook", False, known)]
    return edges


# ---------------------------------------------------------------- the note's tables


@dataclass(frozen=True)
class Layer:
    number: int
    name: str
    patterns: tuple[str, ...]
    may_import: frozenset[int]

    def matches(self, rel: str) -> int:
        """How specifically a pattern names `rel`: 3 its exact path, 2 `dir/*` (files in dir), 1 `dir/**`; 0 not."""
        best = 0
        for pattern in self.patterns:
            if pattern == rel:
                best = max(best, 3)
            elif pattern.endswith("/*") and rel.rpartition("/")[0] == pattern[:-2]:
                best = max(best, 2)
            elif pattern.endswith("/**") and rel.startswith(pattern[:-2]):
                best = max(best, 1)
        return best


def _table(note: str, heading: str) -> list[list[str]]:
    """The body rows of the first markdown table under `## heading`, as lists of stripped cells."""
    section = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", note, re.M | re.S)
    assert section, f"{NOTE} has no section '## {heading}'"
    rows = [line.strip().strip("|").split("|") for line in section.group(1).splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]  # skip the header and the |---| line


def read_layers(note: str) -> list[Layer]:
    """Rows `| number | name | `path` `dir/*` ... | may import: 1-4, own |` of the section '## Layers'."""
    layers = []
    for row in _table(note, "Layers"):
        assert len(row) >= 4 and row[0].isdigit(), f"{NOTE}, Layers: a row must be | number | name | modules | may import |: {row}"
        allowed = set()
        for part in re.findall(r"\d+(?:-\d+)?", row[3]):
            low, _, high = part.partition("-")
            allowed |= set(range(int(low), int(high or low) + 1))
        number = int(row[0])
        if "own" in row[3]:
            allowed.add(number)
        assert number not in allowed or "own" in row[3], f"{NOTE}, layer {number}: say `own` to let a layer import itself"
        layers.append(Layer(number, row[1].strip("*"), tuple(re.findall(r"`([^`]+)`", row[2])), frozenset(allowed)))
    return layers


def read_known_breaks(note: str) -> dict[tuple[str, str], str]:
    """(importer's path, imported path or `dir/*`) -> reason, from the section '## Known breaks'."""
    breaks = {}
    for row in _table(note, "Known breaks"):
        paths = re.findall(r"`([^`]+)`", row[0] + " " + row[1]) if len(row) >= 3 else []
        assert len(paths) == 2 and row[2], f"{NOTE}, Known breaks: a row must be | `importer` | `imported` | reason |: {row}"
        breaks[(paths[0], paths[1])] = row[2]
    return breaks


def layer_of(rel: str, layers: list[Layer]) -> Layer | None:
    """The layer whose pattern names `rel` most specifically (an exact path beats `dir/*`, which beats `dir/**`)."""
    scored = sorted(((layer.matches(rel.split(" (")[0]), layer.number, layer) for layer in layers), key=lambda t: t[:2])
    best = [layer for score, _, layer in scored if score and score == scored[-1][0]]
    assert len(best) <= 1, f"{rel} is named equally by layers {[layer.number for layer in best]} of {NOTE}"
    return best[0] if best else None


# ---------------------------------------------------------------- the rule


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5", as the note writes them."""
    runs = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs) or "none"


def check(root: Path) -> list[str]:
    """Every way the tree at `root` disagrees with its ARCHITECTURE.md: imports against the layers, modules in no
    layer, known breaks that no longer happen. Empty when the note is true."""
    note = (root / NOTE).read_text(encoding="utf-8")
    layers, known_breaks = read_layers(note), read_known_breaks(note)
    modules = code_modules(root)
    problems = [f"{rel} is in no layer of {NOTE}: add it to the Layers table" for rel in modules.values() if not layer_of(rel, layers)]
    seen = set()
    for importer, module, line in importers(root, modules):
        source, target = layer_of(importer, layers), layer_of(modules[module], layers)
        if source is None or target is None or target.number in source.may_import:
            continue
        known = [key for key in known_breaks if key[0] == importer.split(" (")[0] and Layer(0, "", (key[1],), frozenset()).matches(modules[module])]
        if known:
            seen.update(known)
            continue
        allowed = _ranges(sorted(source.may_import))
        problems.append(f"{importer}:{line} imports {module} (layer {target.number} {target.name}) but layer "
                        f"{source.number} {source.name} may import layers {allowed} only ({NOTE}, Layers)")
    problems += [f"{NOTE} lists {a} -> {b} as a known break, but {a} no longer imports it: delete the row"
                 for a, b in sorted(set(known_breaks) - seen)]
    return problems


def cycles(root: Path) -> list[list[str]]:
    """Import cycles among utils/ and tools/ modules (strongly connected components of more than one module)."""
    modules = code_modules(root)
    graph = {name: {m for m, _ in imports_of((root / rel).read_text(), name, rel.endswith("__init__.py"), modules)}
             for name, rel in modules.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_follows_the_layers_of_the_note():
    problems = check(REPO)
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    assert not cycles(REPO), f"import cycles: {cycles(REPO)}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of the code, tests, notebooks and note (never the repository itself), and its problems before a change."""
    root = tmp_path_factory.mktemp("tree")
    for name in (*CODE_DIRS, "tests", "solutions"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl", "*.json", "*.md"))
    shutil.copy(REPO / NOTE, root / NOTE)
    return root, set(check(root))


def _with(root: Path, rel: str, text: str | None):
    """Write `text` to root/rel (None deletes it); returns a function that puts the file back."""
    path = root / rel
    before = path.read_text() if path.exists() else None
    path.unlink(missing_ok=True) if text is None else path.write_text(text)
    return lambda: path.unlink(missing_ok=True) if before is None else path.write_text(before)


@pytest.mark.parametrize("where, planted, expected", [
    ("utils/seeding.py", "from tools.paths import REPO", "utils/seeding.py:{line} imports tools.paths (layer 7 tool library) but layer 2"),
    ("utils/gguf_files.py", "from utils.evaluation import evaluate\nfrom utils.modelfile_check import check_modelfile",
     "utils/gguf_files.py:{line} imports utils.modelfile_check (layer 5 checks) but layer 4"),
    ("utils/service_errors.py", "def _later():\n    from utils.served_model_client import chat", "utils/service_errors.py:{line} imports utils.served_model_client (layer 5"),
    ("tools/run_lab.py", "def _planted():\n    from tools.self_check import main", "tools/run_lab.py:{line} imports tools.self_check (layer 9"),
    ("utils/profiles.py", "import utils.experiments.preference", "utils/profiles.py:{line} imports utils.experiments.preference (layer 6"),
    ("utils/training.py", "from utils.experiments import qlora_run", "utils/training.py:{line} imports utils.experiments.qlora_run (layer 6"),
    ("tools/grading/pool.py", "from ..bench import bench", "tools/grading/pool.py:{line} imports tools.bench (layer 9"),
])
def test_a_planted_bad_import_fails_naming_file_line_and_rule(tree, where, planted, expected):
    """One new upward import (at the top or lazy inside a function, absolute or relative) is reported with its file,
    line and rule, and nothing else is: the known breaks stay allowed."""
    root, before = tree
    lines = (root / where).read_text().splitlines() + planted.splitlines()
    restore = _with(root, where, "\n".join(lines) + "\n")
    try:
        new = sorted(set(check(root)) - before)
    finally:
        restore()
    assert len(new) == 1 and new[0].startswith(expected.format(line=len(lines))), new
    assert new[0].endswith(f"only ({NOTE}, Layers)")


def test_a_notebook_that_imports_a_tool_fails(tree):
    root, before = tree
    rel = "solutions/lab-3.1.1-lora-theory.ipynb"
    notebook = json.loads((root / rel).read_text())
    notebook["cells"].append({"cell_type": "code", "metadata": {}, "source": ["%matplotlib inline\n", "from tools.paths import REPO"],
                              "outputs": [], "execution_count": None})
    restore = _with(root, rel, json.dumps(notebook))
    try:
        new = sorted(set(check(root)) - before)
    finally:
        restore()
    assert len(new) == 1 and new[0].startswith(f"{rel} (code cell {sum(c['cell_type'] == 'code' for c in notebook['cells'])}):2 "
                                               "imports tools.paths (layer 7 tool library) but layer 10 notebooks"), new


def _with_known_break(root: Path, importer: str, imported: str):
    """The note with one more row under '## Known breaks'; returns a function that puts the note back."""
    note = (root / NOTE).read_text()
    header = "| importer | imported | why it is here, and the fix |\n|---|---|---|\n"
    assert note.count(header) == 1, f"{NOTE}: the Known breaks table's header changed"
    return _with(root, NOTE, note.replace(header, f"{header}| `{importer}` | `{imported}` | planted by a test |\n"))


def test_a_known_break_is_allowed_and_a_fixed_one_must_leave_the_note(tree):
    """A row lets exactly its import through (by path or `dir/*`); once the import is gone the row itself is reported."""
    root, before = tree
    restore_note = _with_known_break(root, "utils/seeding.py", "utils/experiments/*")
    source = (root / "utils" / "seeding.py").read_text()
    restore = _with(root, "utils/seeding.py", source + "\nfrom utils.experiments import lora_vs_dora\n")
    try:
        allowed = sorted(set(check(root)) - before)
        restore()
        fixed = sorted(set(check(root)) - before)
    finally:
        restore(), restore_note()
    assert allowed == []
    assert fixed == [f"{NOTE} lists utils/seeding.py -> utils/experiments/* as a known break, but "
                     "utils/seeding.py no longer imports it: delete the row"]


def test_a_new_module_must_be_placed_in_a_layer(tree):
    root, before = tree
    restore = _with(root, "utils/new_helper.py", '"""A helper nobody placed yet."""\n')
    try:
        new = sorted(set(check(root)) - before)
    finally:
        restore()
    assert new == [f"utils/new_helper.py is in no layer of {NOTE}: add it to the Layers table"]


def test_a_cycle_is_found(tree):
    root, _ = tree
    source = (root / "utils" / "seeding.py").read_text()
    restore = _with(root, "utils/seeding.py", source + "\n\ndef _late():\n    from utils import plotting\n")
    restore_too = _with(root, "utils/plotting.py", (root / "utils" / "plotting.py").read_text() + "\nfrom utils.seeding import seed_everything\n")
    try:
        found = cycles(root)
    finally:
        restore(), restore_too()
    assert ["utils.plotting", "utils.seeding"] in found


if __name__ == "__main__":  # the graph by layer, for ARCHITECTURE.md
    LAYERS = read_layers((REPO / NOTE).read_text(encoding="utf-8"))
    MODULES = code_modules(REPO)
    EDGES = {(i.split(" (")[0], m) for i, m, _ in importers(REPO, MODULES)}
    for layer in LAYERS:
        files = sorted({i for i, _ in EDGES if layer_of(i, LAYERS) is layer} | {r for r in MODULES.values() if layer_of(r, LAYERS) is layer})
        uses = sorted({getattr(layer_of(MODULES[m], LAYERS), "number", "?") for i, m in EDGES if layer_of(i, LAYERS) is layer})
        names = [module_name(f) if f.endswith(".py") and f.startswith(CODE_DIRS) else f for f in files]
        print(f"{layer.number} {layer.name}: {len(files)} files, import layers {uses}: {', '.join(names) if len(names) < 20 else '...'}")
    print(f"{len(MODULES)} modules in utils/ and tools/, {sum(i.startswith(CODE_DIRS) for i, _ in EDGES)} import edges among them, "
          f"cycles: {cycles(REPO) or 'none'}")
