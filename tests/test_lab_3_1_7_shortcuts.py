"""Lab 3.1.7's points without the exercise: each shortcut and each tampering kind loses them, and each is real.

A shortcut replaces a solution with a call to what it is checked against (TRL's log-prob helpers and CPO's sigmoid
loss, through any alias); a tampering kind replaces the guard itself (`utils.shortcut_guard.out_of_reach`, even with
`importlib.reload`) or redefines in an added cell the checkers the TRL comparison once called. Each must make its
graded cell fail (the mistake-table harness), and, with the guard switched off in the graded cell, pass: so the
entries test the guard, not a shortcut that is broken anyway.
"""

import pytest

from mistake_table import Mistake, mistake_table_tests, shortcut
from test_lab_3_1_7 import NOTEBOOK, _grade_profile, _prepare
from tools.notebook_cells import cell_sources, mutate, run_cells


@pytest.fixture(autouse=True)
def _fresh_guard_after_each_test():
    """A tampering entry replaces utils.shortcut_guard.out_of_reach in this process: put the real guard back after every test."""
    yield
    import importlib

    import utils.shortcut_guard

    importlib.reload(utils.shortcut_guard)


# Points earned without writing the exercise: each must lose them as a bug does.
SHORTCUTS = [
    shortcut(NOTEBOOK, "the course's finished log-prob function (utils.evaluation)", "sequence_logprobs", """
        from utils.evaluation import completion_logps

        return completion_logps(logits, labels, completion_mask, average)
    """, "test_sequence_logprobs"),
    shortcut(NOTEBOOK, "TRL's CPOTrainer.get_batch_logps", "sequence_logprobs", """
        from trl.experimental.cpo.cpo_trainer import CPOTrainer

        return CPOTrainer.get_batch_logps(logits, labels.masked_fill(completion_mask == 0, -100), average_log_prob=average)
    """, "test_sequence_logprobs"),
    shortcut(NOTEBOOK, "TRL's selective_log_softmax", "sequence_logprobs", """
        from trl.trainer.utils import selective_log_softmax

        token_logps = selective_log_softmax(logits[:, :-1].float(), labels[:, 1:])
        mask = completion_mask[:, 1:].to(token_logps.dtype)
        summed = (token_logps * mask).sum(dim=-1)
        return summed / mask.sum(dim=-1).clamp(min=1) if average else summed
    """, "test_sequence_logprobs"),
]


# The DPO loss from TRL: CPOTrainer.cpo_loss with loss_type="sigmoid", given the log-ratios, is DPO's loss exactly.
_CPO_LOSS = """
    from types import SimpleNamespace

    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    me = SimpleNamespace(alpha=0.0, beta=beta, loss_type="sigmoid", label_smoothing=0.0, accelerator=SimpleNamespace(device="cpu"))
    return CPOTrainer.cpo_loss(me, policy_chosen_logps - ref_chosen_logps, policy_rejected_logps - ref_rejected_logps)
"""
_CPO_LOGPS = """
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    return CPOTrainer.get_batch_logps(logits, labels.masked_fill(completion_mask == 0, -100), average_log_prob=average)
"""
# What an added cell (or a solution cell) can do to the guard: replace it with one that blocks nothing.
_NO_GUARD = """import contextlib

import utils.shortcut_guard

utils.shortcut_guard.out_of_reach = lambda namespace, *targets: contextlib.nullcontext(())


"""
# ... and keep it from being reloaded, with a fake that hands the real functions to the in-force check
_NO_GUARD_NO_RELOAD = """import contextlib
import importlib

import utils.shortcut_guard

importlib.reload = lambda module: module
utils.shortcut_guard.out_of_reach = lambda namespace, *targets: contextlib.nullcontext(tuple(utils.shortcut_guard.resolve(t) for t in targets))


"""


def _tampered(name: str, base: Mistake, header: str) -> Mistake:
    """`base`'s shortcut, with `header` run before the function is defined (at the top of the solution cell)."""
    definition = "def sequence_logprobs(" if base.cell == "sequence_logprobs" else "def dpo_loss("
    return Mistake(f"tampering: {name}", base.cell, [(definition, header + definition), *base.replacements], base.graded)


SHORTCUTS += [
    shortcut(NOTEBOOK, "TRL's CPOTrainer.cpo_loss (sigmoid) on the log-ratios", "dpo_loss", _CPO_LOSS, "test_dpo_loss"),
    shortcut(NOTEBOOK, "TRL's CPOTrainer.cpo_loss (caught by the TRL comparison too)", "dpo_loss", _CPO_LOSS, "test_matches_trl"),
    shortcut(NOTEBOOK, "TRL's ORPOTrainer.get_batch_logps", "sequence_logprobs", """
        from trl.experimental.orpo.orpo_trainer import ORPOTrainer

        return ORPOTrainer.get_batch_logps(logits, labels.masked_fill(completion_mask == 0, -100), average_log_prob=average)
    """, "test_sequence_logprobs"),
    shortcut(NOTEBOOK, "selective_log_softmax imported by name from a trainer module (an alias)", "sequence_logprobs", """
        from trl.experimental.orpo.orpo_trainer import selective_log_softmax

        token_logps = selective_log_softmax(logits[:, :-1].float(), labels[:, 1:])
        mask = completion_mask[:, 1:].to(token_logps.dtype)
        summed = (token_logps * mask).sum(dim=-1)
        return summed / mask.sum(dim=-1).clamp(min=1) if average else summed
    """, "test_sequence_logprobs"),
    shortcut(NOTEBOOK, "a copy of CPOTrainer.get_batch_logps built from its code object", "sequence_logprobs", """
        import types

        from trl.experimental.cpo import cpo_trainer

        original = cpo_trainer.CPOTrainer.get_batch_logps
        copy = types.FunctionType(original.__code__, vars(cpo_trainer), "copy", original.__defaults__)
        return copy(logits, labels.masked_fill(completion_mask == 0, -100), average_log_prob=average)
    """, "test_sequence_logprobs"),
    shortcut(NOTEBOOK, "TRL's CPOTrainer.get_batch_logps (caught by the TRL comparison too)", "sequence_logprobs", _CPO_LOGPS,
             "test_matches_trl"),
]
_CPO_LOGPS_SHORTCUT = shortcut(NOTEBOOK, "", "sequence_logprobs", _CPO_LOGPS, "test_sequence_logprobs")
_CPO_LOSS_SHORTCUT = shortcut(NOTEBOOK, "", "dpo_loss", _CPO_LOSS, "test_dpo_loss")
TAMPERING = [
    _tampered("out_of_reach replaced, then TRL's get_batch_logps", _CPO_LOGPS_SHORTCUT, _NO_GUARD),
    _tampered("out_of_reach replaced, then TRL's cpo_loss", _CPO_LOSS_SHORTCUT, _NO_GUARD),
    _tampered("out_of_reach and importlib.reload replaced, then TRL's get_batch_logps", _CPO_LOGPS_SHORTCUT, _NO_GUARD_NO_RELOAD),
    _tampered("out_of_reach replaced, then TRL's get_batch_logps (the TRL comparison)",
              shortcut(NOTEBOOK, "", "sequence_logprobs", _CPO_LOGPS, "test_matches_trl"), _NO_GUARD),
    # a cell added after dpo_loss that redefines what the comparison used to call, next to a wrong loss
    Mistake("tampering: checkers redefined by an added cell, next to swapped chosen and rejected", "dpo_loss",
            [("beta * (chosen_logratios - rejected_logratios)", "beta * (rejected_logratios - chosen_logratios)"),
             ("    ### END SOLUTION", "    ### END SOLUTION\n\n\n"
              "def agree(ours, theirs):\n    return True\n\n\n_agree = agree\nyour_numbers = trl_numbers = _your_numbers = _trl_numbers = "
              "lambda *args: {}\nDPO_VERIFIED = True")], "test_matches_trl"),
]

_, test_graded_cell_catches_shortcut = mistake_table_tests(NOTEBOOK, SHORTCUTS + TAMPERING, _prepare)

# The guard switched off in the graded cell: no target blocked and no in-force check; for tampering, no reload either.
_GUARD_OFF = [("_SHORTCUTS = (", "_SHORTCUTS = () and ("), ("_grading.assert_in_force(", "(lambda *_: None)(")]
_RELOAD_OFF = [("_grading = importlib.reload(utils.shortcut_guard)", "_grading = utils.shortcut_guard"), ("_grading.assert_in_force(", "(lambda *_: None)(")]
_REAL = [(m, _GUARD_OFF) for m in SHORTCUTS] + [(m, _RELOAD_OFF) for m in TAMPERING if "replaced" in m.name]


@pytest.mark.parametrize("mistake, guard_off", _REAL, ids=[m.name for m, _ in _REAL])
def test_each_shortcut_is_real_it_passes_with_the_guard_off(mistake, guard_off):
    """Without the guard (or without the reload that undoes a replaced guard) each shortcut earns the graded cell's
    points: so the entries above test the guard, not a broken shortcut."""
    sources = cell_sources(NOTEBOOK)
    namespace = _prepare(mistake.graded, {mistake.cell: mutate(sources[mistake.cell], mistake.replacements)})
    with _grade_profile():
        run_cells(NOTEBOOK, [mistake.graded], overrides={mistake.graded: mutate(sources[mistake.graded], guard_off)}, namespace=namespace)
