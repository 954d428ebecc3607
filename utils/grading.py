"""What a hidden test needs to hold a graded point to its exercise: the library it is checked against, out of reach.

An exercise that is verified against PEFT, transformers, bitsandbytes or a finished `utils`
function could be "solved" by calling that very function. `out_of_reach(namespace, *targets)`
makes each target raise `ShortcutError` for the duration of a block, wherever the student's code
reaches it from: through its module (`bnbF.quantize_4bit`, `from ... import` inside the function)
or through a name in the notebook's namespace bound to it (`from utils.evaluation import evaluate`
in a setup cell). The hidden test computes its reference before the block and calls the student's
function inside it.
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


@contextlib.contextmanager
def out_of_reach(namespace: dict, *targets: str):
    """Inside the block each "package.module.attribute" target raises ShortcutError when called."""
    restore = []
    try:
        for target in targets:
            module_name, _, attribute = target.rpartition(".")
            module = importlib.import_module(module_name)
            original = getattr(module, attribute)
            stand_in = _stand_in(target)
            restore.append((module, attribute, original))
            setattr(module, attribute, stand_in)
            for name, value in list(namespace.items()):
                if value is original:
                    restore.append((namespace, name, original))
                    namespace[name] = stand_in
        yield
    finally:
        for holder, name, original in reversed(restore):
            if isinstance(holder, dict):
                holder[name] = original
            else:
                setattr(holder, name, original)
