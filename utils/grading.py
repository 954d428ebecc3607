"""What a hidden test needs to hold a graded point to its exercise: the library it is checked against, out of reach.

An exercise that is verified against PEFT, transformers, bitsandbytes or a finished `utils`
function could be "solved" by calling that very function. `out_of_reach(namespace, *targets)`
makes each target raise `ShortcutError` for the duration of a block, wherever the student's code
reaches it from: through its module (`bnbF.quantize_4bit`, `from ... import` inside the function)
or through a name in the notebook's namespace bound to it (`from utils.evaluation import evaluate`
in a setup cell). The hidden test computes its reference before the block and calls the student's
function inside it. A target may also be a class attribute ("package.module.Class.method", e.g. a
trainer's static helper); it is restored exactly as it was (a staticmethod stays one).
"""

from __future__ import annotations

import contextlib
import importlib


class ShortcutError(RuntimeError):
    """The graded code called the function it is graded against."""


def _stand_in(target: str):
    def refuse(*args, **kwargs):
        raise ShortcutError(f"{target} is what this exercise is checked against: write it yourself, without calling it")

    return refuse


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


_MISSING = object()


@contextlib.contextmanager
def out_of_reach(namespace: dict, *targets: str):
    """Inside the block each "package.module.attribute" (or "package.module.Class.attribute") target raises ShortcutError when called."""
    restore = []
    try:
        for target in targets:
            owner, attribute = _owner(target)
            original = getattr(owner, attribute)  # what a call reaches (for a staticmethod: its function)
            stored = vars(owner).get(attribute, _MISSING) if isinstance(owner, type) else original
            stand_in = _stand_in(target)
            restore.append((owner, attribute, stored))
            setattr(owner, attribute, stand_in)
            for name, value in list(namespace.items()):
                if value is original:
                    restore.append((namespace, name, original))
                    namespace[name] = stand_in
        yield
    finally:
        for holder, name, original in reversed(restore):
            if isinstance(holder, dict):
                holder[name] = original
            elif original is _MISSING:  # inherited: take the stand-in off the subclass again
                delattr(holder, name)
            else:
                setattr(holder, name, original)
