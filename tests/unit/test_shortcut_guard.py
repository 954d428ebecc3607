"""utils.shortcut_guard.out_of_reach: every way a solution can reach a blocked function refuses, and everything is restored.

The targets live in throwaway modules registered in sys.modules, so the tests need no library; the last
tests run the guard on TRL itself (the aliases of `selective_log_softmax`, `CPOTrainer.cpo_loss`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import types

import pytest

import utils.shortcut_guard as grading
from utils.shortcut_guard import ShortcutError, assert_in_force, out_of_reach


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(source, vars(module))  # noqa: S102
    sys.modules[name] = module
    return module


@pytest.fixture
def lib():
    """`guardlib.core` with a plain function, a decorated one, a closure, a class with static/class/instance methods
    and a callable object; `guardlib.user` imports some of them by name, as TRL's trainers import their helpers."""
    names = ("guardlib", "guardlib.core", "guardlib.user")
    _module("guardlib", "")
    core = _module("guardlib.core", """
import functools

def logps(x):
    return x + 1

def _inner(x):
    return x * 10

@functools.wraps(_inner)
def wrapped(x):
    return _inner(x)

def _make(k):
    def with_closure(x):
        return x + k
    return with_closure

with_closure = _make(5)

class Trainer:
    scale = 3

    @staticmethod
    def get_batch_logps(x):
        return x - 1

    @classmethod
    def build(cls, x):
        return cls.scale * x

    def loss(self, x):
        return 2 * x

class SubTrainer(Trainer):
    pass

class _Scorer:
    def __call__(self, x):
        return -x

score = _Scorer()
""")
    user = _module("guardlib.user", "from guardlib.core import logps, score, Trainer as T\n")
    yield types.SimpleNamespace(core=core, user=user)
    for name in names:
        sys.modules.pop(name, None)


def _refuses(call) -> bool:
    try:
        call()
    except ShortcutError:
        return True
    return False


def test_a_function_refuses_through_every_alias_and_comes_back(lib):
    core = lib.core
    original = core.logps
    namespace = {"mine": core.logps}
    default = eval("lambda x, f=f: f(x)", {"f": core.logps})  # noqa: S307
    closure = (lambda f: lambda x: f(x))(core.logps)
    partial = functools.partial(core.logps, 1)
    copy = types.FunctionType(core.logps.__code__, vars(core), "copy")  # built from its code object
    calls = {
        "its module": lambda: core.logps(1), "a module that imported it by name": lambda: lib.user.logps(1),
        "the namespace": lambda: namespace["mine"](1), "a default argument": lambda: default(1),
        "a closure": lambda: closure(1), "functools.partial": lambda: partial(), "a copy of its code": lambda: copy(1),
    }
    with out_of_reach(namespace, "guardlib.core.logps") as originals:
        refused = {where for where, call in calls.items() if _refuses(call)}
        assert_in_force(originals)
    assert refused == set(calls), f"not refused through: {set(calls) - refused}"
    assert core.logps is original and namespace["mine"] is original and lib.user.logps is original
    assert [call() for call in calls.values()] == [2] * 7, "every alias works again after the block"


def test_the_message_names_the_target(lib):
    with out_of_reach({}, "guardlib.core.logps"), pytest.raises(ShortcutError, match=r"guardlib\.core\.logps is what this exercise"):
        lib.user.logps(1)


def test_static_class_and_instance_methods_refuse_and_are_restored_as_they_were(lib):
    T, Sub = lib.core.Trainer, lib.core.SubTrainer
    raw = {name: vars(T)[name] for name in ("get_batch_logps", "build", "loss")}
    bound = T().loss
    targets = [f"guardlib.core.Trainer.{name}" for name in raw]
    with out_of_reach({}, *targets) as originals:
        assert _refuses(lambda: T.get_batch_logps(1)) and _refuses(lambda: T().get_batch_logps(1))
        assert _refuses(lambda: Sub.get_batch_logps(1)) and _refuses(lambda: lib.user.T.get_batch_logps(1))
        assert _refuses(lambda: T.build(1)) and _refuses(lambda: T.loss(None, 1)) and _refuses(lambda: bound(1))
        assert_in_force(originals)
    assert {name: vars(T)[name] for name in raw} == raw and isinstance(vars(T)["get_batch_logps"], staticmethod)
    assert "get_batch_logps" not in vars(Sub), "an inherited attribute is not copied onto the subclass"
    assert (T.get_batch_logps(1), T.build(1), bound(1)) == (0, 3, 2)


def test_an_inherited_target_is_blocked_on_its_class_only(lib):
    """A trainer's method inherited from a shared base class: the base and its other subclasses keep working."""
    T, Sub = lib.core.Trainer, lib.core.SubTrainer
    with out_of_reach({}, "guardlib.core.SubTrainer.get_batch_logps") as originals:
        assert _refuses(lambda: Sub.get_batch_logps(1)) and _refuses(lambda: Sub().get_batch_logps(1))
        assert T.get_batch_logps(1) == 0, "the base class is not blocked"
        assert_in_force(originals)
    assert "get_batch_logps" not in vars(Sub) and Sub.get_batch_logps(1) == 0


def test_wrapped_functions_and_closures_refuse_too(lib):
    inner = lib.core._inner
    with out_of_reach({}, "guardlib.core.wrapped", "guardlib.core.with_closure"):
        assert _refuses(lambda: lib.core.wrapped(1)) and _refuses(lambda: inner(1)), "the function it wraps is blocked with it"
        assert _refuses(lambda: lib.core.with_closure(1))
    assert (lib.core.wrapped(1), inner(1), lib.core.with_closure(1)) == (10, 10, 6)


def test_a_callable_object_is_replaced_wherever_a_module_or_the_namespace_holds_it(lib):
    score = lib.core.score
    namespace = {"s": score}
    with out_of_reach(namespace, "guardlib.core.score") as originals:
        assert _refuses(lambda: lib.core.score(1)) and _refuses(lambda: lib.user.score(1)) and _refuses(lambda: namespace["s"](1))
        assert_in_force(originals)
    assert lib.core.score is score and lib.user.score is score and namespace["s"] is score


def test_everything_is_restored_when_the_block_raises(lib):
    code = lib.core.logps.__code__
    with pytest.raises(ZeroDivisionError), out_of_reach({}, "guardlib.core.logps", "guardlib.core.score"):
        1 / 0
    assert lib.core.logps.__code__ is code and lib.core.logps(1) == 2 and lib.core.score(1) == -1


def test_an_unknown_target_is_an_import_error():
    with pytest.raises(ImportError, match="no_such_package"), out_of_reach({}, "no_such_package.f"):
        pass


def test_a_replaced_guard_fails_the_in_force_check_and_a_reload_restores_it(lib):
    """What a graded cell does: reload the guard from its file, then check it blocks."""
    try:
        grading.out_of_reach = lambda namespace, *targets: contextlib.nullcontext(())  # what a solution cell could do
        with grading.out_of_reach({}, "guardlib.core.logps") as originals:
            with pytest.raises(AssertionError, match="blocked nothing"):
                assert_in_force(originals)
        # a fake that yields the real originals but blocks nothing: the check calls them
        grading.out_of_reach = lambda namespace, *targets: contextlib.nullcontext(tuple(grading.resolve(t) for t in targets))
        with grading.out_of_reach({}, "guardlib.core.logps") as originals:
            with pytest.raises(AssertionError, match="not out of reach"):
                assert_in_force(originals)
        fresh = importlib.reload(grading)
        assert fresh.out_of_reach.__wrapped__.__code__.co_filename == fresh.__file__, "the guard is the file's again"
        assert fresh.ShortcutError is ShortcutError, "a reload keeps the exception class, so earlier `except ShortcutError` still match"
        with fresh.out_of_reach({}, "guardlib.core.logps") as originals:
            fresh.assert_in_force(originals)
            assert _refuses(lambda: lib.user.logps(1))
    finally:
        importlib.reload(grading)


def test_trl_aliases_of_its_log_softmax_and_the_cpo_loss_refuse():
    """TRL's trainers import `selective_log_softmax` by name; CPOTrainer.cpo_loss computes DPO's sigmoid loss."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    import trl.experimental.cpo.cpo_trainer as cpo
    import trl.experimental.orpo.orpo_trainer as orpo
    from trl.trainer.utils import selective_log_softmax

    logits, index = torch.randn(1, 3, 5), torch.zeros(1, 3, dtype=torch.long)
    self = types.SimpleNamespace(alpha=0.0, beta=0.1, loss_type="sigmoid", label_smoothing=0.0, accelerator=types.SimpleNamespace(device="cpu"))
    with out_of_reach({}, "trl.trainer.utils.selective_log_softmax", "trl.experimental.cpo.cpo_trainer.CPOTrainer.cpo_loss") as originals:
        assert _refuses(lambda: cpo.selective_log_softmax(logits, index)) and _refuses(lambda: orpo.selective_log_softmax(logits, index))
        assert _refuses(lambda: cpo.CPOTrainer.get_batch_logps(logits, index)), "a helper that calls it refuses too"
        assert _refuses(lambda: cpo.CPOTrainer.cpo_loss(self, torch.zeros(2), torch.zeros(2)))
        assert_in_force(originals)
    assert torch.allclose(cpo.selective_log_softmax(logits, index), selective_log_softmax(logits, index))
    losses, _, _ = cpo.CPOTrainer.cpo_loss(self, torch.zeros(2), torch.zeros(2))
    assert torch.allclose(losses, torch.full((2,), 0.6931), atol=1e-4)
