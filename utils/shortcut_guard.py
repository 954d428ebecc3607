"""What a hidden test needs to hold a graded point to its exercise: the library it is checked against, out of reach.

An exercise that is verified against PEFT, transformers, TRL, bitsandbytes or a finished `utils`
function could be "solved" by calling that very function. `out_of_reach(namespace, *targets)`
makes each target raise `ShortcutError` for the duration of a block, however the student's code
reaches it. A target is "package.module.attribute" or "package.module.Class.attribute" (a
trainer's static helper, a loss method); the hidden test computes its reference before the block
and calls the student's function inside it.

Every alias, not a list of paths. A Python function target is blocked in the function object
itself: its code is swapped for one that refuses, so every reference to it refuses too, however it
was obtained: through its module, a `from ... import` in another module (TRL's trainers import
`selective_log_softmax` by name), a name in the notebook, a default argument, a closure, a bound
method, `functools.partial`, a static or class method, or a copy built from its code object
(`types.FunctionType(f.__code__, ...)`; found through the garbage collector). Functions it wraps
(`__wrapped__`) are blocked with it. A method a class inherits is blocked on that class only (its
base class, which other classes share, keeps working). A target that is not a Python function (a builtin, a callable
object) is replaced by a stand-in wherever a loaded module, a class or `namespace` holds it. Everything
is restored exactly on leaving the block (a staticmethod stays one). What it cannot catch: a copy
of the library's source text, re-executed, which is copying, not calling.

Tampering. A solution cell can replace the guard (`utils.shortcut_guard.out_of_reach = ...`). A graded
cell therefore takes it fresh from this file, `importlib.reload(utils.shortcut_guard)`, and checks that
it is in force: the block yields the original callables, each of which must raise
`ShortcutError` inside it (`assert_in_force`). `ShortcutError` survives a reload unchanged, so an
`except ShortcutError` written before the reload still matches.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import sys
import types

try:  # a reload keeps the class (see the module docstring)
    ShortcutError  # noqa: B018
    if not (isinstance(ShortcutError, type) and issubclass(ShortcutError, RuntimeError)
            and ShortcutError.__module__ == __name__ and ShortcutError.__qualname__ == "ShortcutError"):
        raise NameError("ShortcutError was replaced")
except NameError:
    class ShortcutError(RuntimeError):
        """The graded code called the function it is graded against."""


def _message(target: str) -> str:
    return f"{target} is what this exercise is checked against: write it yourself, without calling it"


def _stand_in(target: str):
    def refuse(*args, **kwargs):
        raise ShortcutError(_message(target))

    return refuse


def _refusal(target: str, free: int) -> types.CodeType:
    """Code that raises ShortcutError, with `free` free variables so that it can replace any function's code."""
    cells = [f"_cell{i}" for i in range(free)]
    lines = ["def _outer():", *(f"    {c} = None" for c in cells), "    def refuse(*args, **kwargs):"]
    if cells:
        lines.append(f"        ({', '.join(cells)},)")
    lines += ["        import utils.shortcut_guard", f"        raise utils.shortcut_guard.ShortcutError({_message(target)!r})", "    return refuse"]
    namespace: dict = {}
    exec(compile("\n".join(lines), f"<out_of_reach: {target}>", "exec"), namespace)  # noqa: S102
    return namespace["_outer"]().__code__


def _owner(target: str):
    """(the module or class holding the attribute, its name) for "package.module[.Class].attribute"."""
    path, _, attribute = target.rpartition(".")
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            owner = getattr(owner, name)
        return owner, attribute
    raise ImportError(f"cannot import any module of {target!r}")


def resolve(target: str):
    """What a call of `target` reaches (for a static or class method: its function)."""
    owner, attribute = _owner(target)
    value = getattr(owner, attribute)
    return getattr(value, "__func__", value)


def _functions(value) -> list[types.FunctionType]:
    """The Python functions behind a target: itself (a static, class or bound method's function) and what it wraps."""
    out: list[types.FunctionType] = []
    while True:
        if isinstance(value, (staticmethod, classmethod, types.MethodType)):
            value = value.__func__
        if not isinstance(value, types.FunctionType) or any(value is f for f in out):
            return out
        out.append(value)
        value = getattr(value, "__wrapped__", None)


def _sharing_code(functions: list[types.FunctionType]) -> list[types.FunctionType]:
    """The functions, and every other live function built on one of their code objects."""
    codes = {id(f.__code__) for f in functions}
    found = {id(f): f for f in functions}
    for ref in gc.get_referrers(*(f.__code__ for f in functions)):
        if isinstance(ref, types.FunctionType) and id(ref.__code__) in codes:
            found.setdefault(id(ref), ref)
    return list(found.values())


def _holders(original, namespace: dict):
    """(holder, name) of every attribute that IS `original`: in the namespace, a loaded module, or a class of one."""
    classes: dict[int, type] = {}
    for holder in [namespace, *(vars(m) for m in list(sys.modules.values()) if isinstance(m, types.ModuleType))]:
        for name, value in list(holder.items()):
            if value is original:
                yield holder, name
            elif isinstance(value, type):
                classes.setdefault(id(value), value)
    for cls in classes.values():
        for name, member in list(vars(cls).items()):
            try:
                wrapped = getattr(member, "__func__", None)
            except Exception:  # a lazy attribute (six's moves) that imports on access: not a function we block
                wrapped = None
            if member is original or wrapped is original:
                yield cls, name


_MISSING = object()


def _call_fresh(target: str):
    return resolve(target)()


@contextlib.contextmanager
def out_of_reach(namespace: dict, *targets: str):
    """Inside the block every call that reaches a target raises ShortcutError; yields one callable per target that
    reaches it as it was before the block (for `assert_in_force`)."""
    swapped: list[tuple[types.FunctionType, types.CodeType]] = []
    replaced: list[tuple[object, str, object]] = []
    originals = []
    try:
        blocked: dict[int, tuple[types.FunctionType, str]] = {}  # the functions whose code is swapped, and their target
        for target in targets:
            owner, attribute = _owner(target)
            stored = getattr(owner, attribute)
            inherited = isinstance(owner, type) and attribute not in vars(owner)
            if isinstance(owner, type) and not inherited:  # the raw class attribute: a staticmethod stays one
                stored = vars(owner)[attribute]
            functions = [] if inherited else _functions(stored)
            if functions:
                originals.append(functions[0])
                for f in functions:
                    blocked.setdefault(id(f), (f, target))
                continue
            # Not a Python function of its own (a builtin, a callable object, or inherited from a base class that
            # other classes share): a stand-in wherever it is held, the base class itself left alone.
            originals.append(functools.partial(_call_fresh, target))
            stand_in = _stand_in(target)
            holders = [(owner, attribute)] if inherited else [(owner, attribute), *_holders(stored, namespace)]
            for holder, name in holders:
                if isinstance(holder, dict):
                    replaced.append((holder, name, holder[name]))
                    holder[name] = stand_in
                else:
                    replaced.append((holder, name, vars(holder).get(name, _MISSING)))
                    setattr(holder, name, stand_in)
        if blocked:
            by_code = {id(f.__code__): target for f, target in blocked.values()}
            for f in _sharing_code([f for f, _ in blocked.values()]):
                swapped.append((f, f.__code__))
                f.__code__ = _refusal(by_code[id(f.__code__)], len(f.__code__.co_freevars))
        yield tuple(originals)
    finally:
        for f, code in reversed(swapped):
            f.__code__ = code
        for holder, name, value in reversed(replaced):
            if isinstance(holder, dict):
                holder[name] = value
            elif value is _MISSING:  # inherited: take the stand-in off the subclass again
                delattr(holder, name)
            else:
                setattr(holder, name, value)


def assert_in_force(originals, where: str = "this graded cell") -> None:
    """Inside an `out_of_reach` block: each original callable must refuse. A replaced or broken guard fails here."""
    if not originals:
        raise AssertionError(f"{where}: the shortcut guard blocked nothing (was utils.shortcut_guard replaced?)")
    for original in originals:
        try:
            original()
        except ShortcutError:
            continue
        except Exception as error:  # noqa: BLE001
            raise AssertionError(f"{where}: {getattr(original, '__qualname__', original)!r} is not out of reach "
                                 f"(it raised {type(error).__name__}, not ShortcutError): the shortcut guard is not in force") from None
        raise AssertionError(f"{where}: {getattr(original, '__qualname__', original)!r} is not out of reach: the shortcut guard is not in force")
