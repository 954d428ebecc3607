"""What a submission changed that it should not have: surfaced for a person to review, never silently scored.

nbgrader restores test and locked cells before grading, but a notebook runs top to bottom in one
namespace: a cell the student adds (or a solution cell) can redefine a helper that a later graded cell
calls, or replace a course module's attribute (the shortcut guard `utils.shortcut_guard.out_of_reach`, say) or
a builtin. Such a notebook may still earn points, so the class report flags it for review.
"""

from __future__ import annotations

import ast
import re

from tools.grading.course import LabSignature, text_hash
from tools.notebook_cells import cells, nbgrader_meta, source_text

HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[^\n]*\n?", re.S | re.M)
COURSE_MODULES = ("utils", "tools")
GUARDED_ROOTS = {"builtins", "__builtins__", "sys"}


def edited_cells(nb: dict, sig: LabSignature) -> list[str]:
    """Test and locked cells a student changed or deleted (nbgrader restores them before grading)."""
    found = {}
    for cell in cells(nb):
        gid = nbgrader_meta(cell).get("grade_id")
        if gid:
            found[gid] = HIDDEN.sub("", source_text(cell))  # the instructor's own copy carries them
    notes = []
    for gid, source in sig.locked:
        if gid not in found:
            notes.append(f"cell {gid} deleted (nbgrader put it back)")
        elif text_hash(found[gid]) != text_hash(HIDDEN.sub("", source)):
            notes.append(f"cell {gid} edited (graded with the release's version)")
    return notes


def _parse(text: str) -> ast.Module | None:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(("%", "!"))]  # IPython magics
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _defined(tree: ast.Module) -> set[str]:
    """Names a cell binds at top level (assignments, def, class, imports, for/with targets)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node in tree.body:
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _used(tree: ast.Module) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _course_aliases(tree: ast.Module) -> set[str]:
    """Names that refer to a course module or to the guarded roots in this cell (import utils.shortcut_guard as g, ...)."""
    aliases = set(GUARDED_ROOTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in COURSE_MODULES + tuple(GUARDED_ROOTS):
                    aliases.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in COURSE_MODULES:
            aliases.update(a.asname or a.name for a in node.names)
    return aliases


def _patches(tree: ast.Module, aliases: set[str]) -> list[str]:
    """Assignments to an attribute of a course module, builtins or sys (x.y = ..., setattr(x, ...), del x.y)."""
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") and node.args:
            targets = [ast.Attribute(value=node.args[0], attr="?", ctx=ast.Store())]
        for t in targets:
            if isinstance(t, (ast.Attribute, ast.Subscript)) and _root(t) in aliases:
                found.append(ast.unparse(t) if not isinstance(t, ast.Attribute) or t.attr != "?" else f"setattr({ast.unparse(t.value)}, ...)")
    return found


def _helpers(tree: ast.Module) -> set[str]:
    """Functions, classes and imported names a cell binds at top level: the checkers graded cells call."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def review_flags(nb: dict, release: dict, source: dict | None = None) -> list[str]:
    """Reasons a person should look at this submission: redefined checkers, patched course modules or builtins.

    A checker is what the release's own cells provide for the graded cells: every name a locked or test cell
    binds, and the functions, classes and imports of its other cells. `source` (the solution notebook) tells
    which names the exercises themselves define: those a student is meant to write.
    """
    graded_uses, protected, allowed, release_texts = set(), set(), set(), set()
    for cell in cells(release):
        meta = nbgrader_meta(cell)
        release_texts.add(text_hash(source_text(cell)))
        tree = _parse(source_text(cell)) if cell.get("cell_type") == "code" else None
        if tree is None:
            continue
        if meta.get("grade") and not meta.get("solution"):
            graded_uses |= _used(tree)
        if meta.get("solution"):
            allowed |= _defined(tree)
        elif meta.get("locked") or meta.get("grade"):
            protected |= _defined(tree)
        else:
            protected |= _helpers(tree)
    for cell in cells(source or {}):
        if nbgrader_meta(cell).get("solution") and cell.get("cell_type") == "code":
            tree = _parse(source_text(cell))
            allowed |= _defined(tree) if tree else set()
    flags = []
    for index, cell in enumerate(cells(nb)):
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") != "code" or (meta.get("grade") and not meta.get("solution")) or meta.get("locked"):
            continue  # test and locked cells: nbgrader restores them
        text = source_text(cell)
        tree = _parse(text)
        if tree is None:
            continue
        added = not meta.get("solution") and text_hash(text) not in release_texts
        name = meta.get("grade_id") or f"cell #{index}" + (" (added)" if added else " (edited)")
        redefined = sorted((_defined(tree) & graded_uses & protected) - allowed)
        if redefined and text_hash(text) not in release_texts:
            flags.append(f"{name} redefines {', '.join(redefined)}, which graded cells use")
        patched = _patches(tree, _course_aliases(tree))
        if patched:
            flags.append(f"{name} assigns to {', '.join(sorted(set(patched)))}")
    return flags
