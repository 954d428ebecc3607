"""Build the student edition: the course a class receives, without solutions/ or any hidden test.

    python -m tools.student_edition OUT [--zip] [--force]      # make student-edition OUT=dir (with --zip)

Writes the folder OUT (and OUT.zip beside it with --zip) holding: the student notebooks labs/*.ipynb as
committed, utils/ with its data, the study guide module-3.1/README.md, PREREQUISITES.md, QUICKSTART.md,
LAB_PREP.md, pyproject.toml, tools/install_torch.py, and the tools a student runs, found by import
closure from ENTRY_MODULES (so a refactored tools/ needs no list kept here); then the templates in
edition/ in place of the instructor versions: README.md, Makefile and tests/ (the edition's own test).
Nothing else: no solutions/, no repository tests, no .git, no caches. File modes are kept and the zip
lists its files in sorted order with fixed timestamps, so the same sources give the same bytes.

Before anything is published, every file is searched for each lab's hidden tests and solution lines
(tools.edition_leaks); on a hit nothing is written and the command exits 1 naming file, lab and line.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import stat
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tools import edition_leaks
from tools.notebook_cells import cells, load, source_text
from tools.paths import REPO
from utils.staged_dir import staged_directory
ENTRY_MODULES = ("tools.quickstart", "tools.run_lab", "tools.self_check", "tools.model_test", "tools.bench")
COPIED_FILES = ("PREREQUISITES.md", "QUICKSTART.md", "LAB_PREP.md", "pyproject.toml", "setup.mk", "module-3.1/README.md",
                "tools/install_torch.py")
COPIED_TREES = ("utils", "module-3.1/results")  # results: the study guide links its measured runs
TEMPLATES = "edition"  # edition/<path> becomes <path> in the edition
# Never shipped, wherever they turn up: caches, build and editor debris.
JUNK_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git"}
JUNK_SUFFIXES = (".pyc", ".pyo", ".egg-info", "~", ".swp", ".orig", ".rej")
JUNK_NAMES = {".DS_Store", "Thumbs.db"}
NOT_SHIPPED_PACKAGES = ("tests", "solutions")  # a shipped tool importing these would break in the edition
# Markdown between these lines (each on a line of its own) is for instructors: the edition's copy leaves it out.
INSTRUCTORS_ONLY = ("<!-- instructors -->", "<!-- /instructors -->")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: no build time in the bytes
_MODULE_NAME = re.compile(r"tools(?:\.[A-Za-z_]\w*)+")


@dataclass
class Plan:
    """What the edition holds: (source, path in the edition), and what the import closure found."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)  # modules of the closure, e.g. tools.grading.engine
    missing_entries: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # imports the edition could not satisfy


def is_junk(relative: Path) -> bool:
    return (any(part in JUNK_DIRS or part.endswith(".egg-info") for part in relative.parts)
            or relative.name in JUNK_NAMES or relative.name.endswith(JUNK_SUFFIXES))


def module_file(module: str, root: Path = REPO) -> Path | None:
    """tools.a.b -> root/tools/a/b.py or root/tools/a/b/__init__.py, if it exists."""
    base = Path(root, *module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_of(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted module name, is a package) of a .py file under root."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imported_tools(source: str, filename: str, module: str = "", is_package: bool = False) -> list[tuple[str, int, bool]]:
    """(module, line, must exist) of every tools module this source imports or names, found statically.

    Covers `import tools.x`, `from tools.x import y` (y itself when it is a submodule), `from tools
    import x`, relative imports inside tools/, imports inside functions, and string constants that
    name a tools module (`python -m tools.x` in a subprocess call). Also reports imports of
    NOT_SHIPPED_PACKAGES, which the caller treats as errors. `from a import b` gives a (must exist) and
    a.b (only if it is a module: b may be a name defined in a); a string constant counts only if it resolves.
    """
    tree = ast.parse(source, filename=filename)
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append((base, node.lineno, True))
            found += [(f"{base}.{alias.name}", node.lineno, False) for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.fullmatch(node.value):
            found.append((node.value, node.lineno, False))
    return [item for item in found if item[0].split(".")[0] in ("tools", *NOT_SHIPPED_PACKAGES)]


def _code_of_notebook(path: Path) -> str:
    """The code cells of a notebook as one Python source. An IPython magic or shell line (`!python -m tools.x`)
    becomes the string constants of the tools modules it names, so they count as references too."""
    lines = []
    for cell in cells(load(path)):
        if cell["cell_type"] == "code":
            for line in source_text(cell).splitlines():
                if line.lstrip().startswith(("%", "!")):
                    line = "; ".join(repr(m.group(0)) for m in re.finditer(r"\btools(?:\.[A-Za-z_]\w*)+", line))
                lines.append(line)
    return "\n".join(lines)


def import_closure(entries, roots: list[Path], repo: Path = REPO) -> tuple[list[str], list[str], list[str]]:
    """(tools modules reached, entry modules missing, problems) from `entries` and the tools imports of `roots`.

    `roots` are other shipped files (utils/*.py, the lab notebooks): whatever tools they need ships too.
    A parent package's __init__.py always comes with its module.
    """
    reached: set[str] = set()
    problems: list[str] = []
    missing = [m for m in entries if module_file(m, repo) is None]
    todo: list[tuple[str, str, bool]] = [(m, "entry point", True) for m in entries if m not in missing]
    for root in roots:
        source = _code_of_notebook(root) if root.suffix == ".ipynb" else root.read_text(encoding="utf-8")
        try:
            todo += [(name, f"{root.relative_to(repo)}:{line}", must) for name, line, must in imported_tools(source, str(root))]
        except SyntaxError as err:
            problems.append(f"{root.relative_to(repo)}: cannot be parsed for imports ({err.msg}, line {err.lineno})")
    while todo:
        name, where, must_exist = todo.pop()
        if name.split(".")[0] in NOT_SHIPPED_PACKAGES:
            if must_exist:
                problems.append(f"{where} imports {name}, which the student edition does not ship")
            continue
        parts = name.split(".")
        chain = [".".join(parts[: i + 1]) for i in range(len(parts))]
        for mod in chain:
            if mod in reached:
                continue
            path = module_file(mod, repo)
            if path is None:
                if must_exist:  # not `from tools.x import NAME`, where NAME may be a function or class
                    problems.append(f"{where} imports {name}, which does not exist")
                break
            reached.add(mod)
            module, is_package = _module_of(path, repo)
            found = imported_tools(path.read_text(encoding="utf-8"), str(path), module, is_package)
            todo += [(n, f"{path.relative_to(repo)}:{line}", must) for n, line, must in found]
    return sorted(reached), missing, problems


def for_students(text: str, name: str = "document") -> str:
    """The text without its instructors-only blocks (INSTRUCTORS_ONLY markers); unbalanced markers are an error."""
    begin, end = INSTRUCTORS_ONLY
    kept, inside = [], None
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        marker = line.strip()
        if marker == begin:
            if inside:
                raise ValueError(f"{name}:{number}: {begin} inside the block opened on line {inside}")
            inside = number
        elif marker == end:
            if not inside:
                raise ValueError(f"{name}:{number}: {end} without an opening {begin}")
            inside = None
        elif not inside:
            kept.append(line)
    if inside:
        raise ValueError(f"{name}:{inside}: {begin} is never closed")
    return "".join(kept)


def plan(repo: Path = REPO) -> Plan:
    """Every file of the edition with its source, in sorted order; raises if two sources claim one path."""
    result = Plan()
    labs = sorted((repo / "labs").glob("lab-*.ipynb"))
    if not labs:
        raise FileNotFoundError(f"{repo / 'labs'}: no lab notebooks to ship")
    shipped_trees = [p for tree in COPIED_TREES for p in sorted((repo / tree).rglob("*"))
                     if p.is_file() and not is_junk(p.relative_to(repo))]
    roots = [p for p in shipped_trees if p.suffix == ".py"] + labs
    result.tools, result.missing_entries, result.problems = import_closure(ENTRY_MODULES, roots, repo)
    sources = [(p, p.relative_to(repo).as_posix()) for p in labs + shipped_trees]
    sources += [(repo / name, name) for name in COPIED_FILES]
    sources += [(module_file(m, repo), module_file(m, repo).relative_to(repo).as_posix()) for m in result.tools]
    templates = repo / TEMPLATES
    sources += [(p, p.relative_to(templates).as_posix()) for p in sorted(templates.rglob("*"))
                if p.is_file() and not is_junk(p.relative_to(templates))]
    seen: dict[str, Path] = {}
    for source, relative in sources:
        if not source.is_file():
            raise FileNotFoundError(f"{source}: the student edition needs this file")
        if relative in seen and seen[relative] != source:
            raise ValueError(f"{relative} would come from both {seen[relative]} and {source}")
        seen[relative] = source
    result.files = sorted(((s, r) for r, s in seen.items()), key=lambda item: item[1])
    return result


def write_zip(folder: Path, target: Path) -> None:
    """Zip `folder` as <folder name>/..., files in sorted order, fixed dates, Unix modes kept; atomic."""
    members = sorted(p for p in folder.rglob("*") if p.is_file())
    staging = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in members:
            info = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}", date_time=ZIP_TIME)
            info.create_system = 3  # Unix, so unzip restores the modes below
            info.external_attr = (stat.S_IFREG | stat.S_IMODE(path.stat().st_mode)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    os.replace(staging, target)


def build(out: Path, make_zip: bool = False, force: bool = False, check: bool = True, repo: Path = REPO) -> Plan:
    """Write the edition to `out` (and `out`.zip); with `check`, refuse to publish one that leaks."""
    out = Path(out).resolve()
    for tree in (*COPIED_TREES, "labs", "tools", TEMPLATES, "module-3.1", "solutions"):
        if out == repo / tree or (repo / tree) in out.parents:
            raise ValueError(f"{out}: the edition cannot be built inside {repo / tree}, which it copies from")
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty; remove it or pass --force to replace it")
    result = plan(repo)
    if result.problems:
        raise RuntimeError("the edition's tools would not import:\n  " + "\n  ".join(result.problems))
    with staged_directory(out) as staging:
        os.chmod(staging, 0o777 & ~_umask())
        for source, relative in result.files:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            if target.suffix == ".md":
                target.write_text(for_students(target.read_text(encoding="utf-8"), relative), encoding="utf-8")
        if check:
            secrets = edition_leaks.course_secrets(repo / "solutions", repo / "labs")
            leaks = edition_leaks.search(edition_leaks.files_under(staging), secrets, staging)
            if leaks:
                raise LeakError(f"the edition would hand out {len(leaks)} answer line(s); nothing was written:\n"
                                + edition_leaks.report(leaks))
    if make_zip:
        write_zip(out, out.with_name(out.name + ".zip"))
    return result


class LeakError(RuntimeError):
    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _describe(out: Path, result: Plan, make_zip: bool) -> str:
    groups: dict[str, int] = {}
    for _, relative in result.files:
        top = relative.split("/")[0] if "/" in relative else "."
        groups[top] = groups.get(top, 0) + 1
    size = sum((out / r).stat().st_size for _, r in result.files)
    lines = [f"wrote {out}: {len(result.files)} files, {size / 1024:.0f} KiB"]
    lines += [f"  {top + '/':<14} {n} files" for top, n in sorted(groups.items()) if top != "."]
    lines.append(f"  {'(top level)':<14} " + " ".join(r for _, r in result.files if "/" not in r))
    lines.append("  tools found by import closure: " + " ".join(result.tools))
    if make_zip:
        archive = out.with_name(out.name + ".zip")
        lines.append(f"wrote {archive}: {archive.stat().st_size / 1024:.0f} KiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the folder to write (OUT.zip goes beside it with --zip)")
    parser.add_argument("--zip", action="store_true", help="also write OUT.zip")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    try:
        result = build(args.out, make_zip=args.zip, force=args.force)
    except (LeakError, FileExistsError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"student_edition: error: {err}", file=sys.stderr)
        return 1
    print(_describe(args.out.resolve(), result, args.zip))
    for module in result.missing_entries:
        print(f"student_edition: warning: entry module {module} does not exist yet; the edition lacks it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
