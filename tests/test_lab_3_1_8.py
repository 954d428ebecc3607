"""Lab 3.1.8: the solution's SimPO and ORPO losses equal TRL's trainers on the same batch, and the graded tests catch real mistakes.

The references are TRL 1.16's own trainers: `CPOTrainer(loss_type="simpo", cpo_alpha=0)` and
`ORPOTrainer`, built on a tiny random Llama with the course tokenizer and a few course pairs;
`get_batch_loss_metrics` returns the loss and the logged metrics of one batch. The solution's
functions get the reply log-probs of the same model on the same batch, and must give the same
loss, the same metrics and the same gradients.
"""

import tempfile

import pytest
import torch
import torch.nn.functional as F

from trl_reference import assert_grads_close, grads, tiny_llama
from mistake_table import Mistake, mistake_table_tests, shortcut
from tools.notebook_cells import SOLUTIONS, run_cells, run_cells_past_errors

NOTEBOOK = SOLUTIONS / "lab-3.1.8-simpo-vs-orpo.ipynb"


@pytest.fixture(scope="module")
def solution():
    return run_cells(NOTEBOOK, ["setup", "simpo_loss", "orpo_loss"])


def _trainer(method, tokenizer, model, **settings):
    """TRL's trainer for `method` on six course pairs (two of each kind at least), and its first batch."""
    from utils.experiments.preference_methods import preference_method
    from utils.preference_data import course_pairs
    from utils.profiles import get_profile

    pairs = course_pairs("train", 6, as_dataset=True)
    record = preference_method(method)
    with tempfile.TemporaryDirectory() as out:
        config = record.config(get_profile("grade"), out, per_device_train_batch_size=6, **settings)
        trainer = record.trainer_class()(model=model, args=config, train_dataset=pairs, processing_class=tokenizer)
    return trainer, next(iter(trainer.get_train_dataloader()))


def _replies(model, batch, side):
    from utils.evaluation import completion_logps

    ids, mask, labels = batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"], batch[f"{side}_labels"]
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    reply = labels != -100
    return completion_logps(logits, ids, reply), reply[:, 1:].sum(-1), logits


def _close(ours, theirs, rtol=1e-4):
    return abs(ours - theirs) <= rtol * max(1.0, abs(theirs))


@pytest.mark.parametrize("beta, gamma", [(2.0, 1.0), (2.5, 1.375), (10.0, 0.3)])
def test_solution_simpo_equals_trl_cpo_trainer(solution, smollm2_tokenizer, beta, gamma):
    model = tiny_llama(len(smollm2_tokenizer))
    trainer, batch = _trainer("simpo", smollm2_tokenizer, model, beta=beta, simpo_gamma=gamma)  # the record sets loss_type and cpo_alpha
    assert trainer.cpo_alpha == 0 and trainer.loss_type == "simpo"
    trl_loss, logged = trainer.get_batch_loss_metrics(model, batch)
    trl_grads = grads(model, trl_loss)
    c, cn, _ = _replies(model, batch, "chosen")
    r, rn, _ = _replies(model, batch, "rejected")
    assert not torch.equal(cn, rn), "the batch should hold replies of different lengths (the wrong-format kind)"
    losses, cw, rw = solution["simpo_loss"](c, r, cn, rn, beta, gamma)
    ours_grads = grads(model, losses.mean())
    assert _close(losses.mean().item(), trl_loss.item())
    for key, ours in [("rewards/chosen", cw.mean()), ("rewards/rejected", rw.mean()), ("rewards/margins", (cw - rw).mean()),
                      ("rewards/accuracies", (cw > rw).float().mean()), ("logps/chosen", (c / cn).mean())]:
        assert _close(ours.item(), logged[key]), key
    assert_grads_close(ours_grads, trl_grads, rtol=1e-4)


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_solution_orpo_equals_trl_orpo_trainer(solution, smollm2_tokenizer, lam):
    model = tiny_llama(len(smollm2_tokenizer))
    trainer, batch = _trainer("orpo", smollm2_tokenizer, model, beta=lam)
    trl_loss, logged = trainer.get_batch_loss_metrics(model, batch)
    trl_grads = grads(model, trl_loss)
    c, cn, logits = _replies(model, batch, "chosen")
    r, rn, _ = _replies(model, batch, "rejected")
    # TRL's NLL: every non-padding token of the chosen sequence, prompt included, averaged over the batch
    targets = batch["chosen_input_ids"].masked_fill(batch["chosen_attention_mask"] == 0, -100)
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets[:, 1:].flatten())
    assert _close(nll.item(), logged["nll_loss"])
    loss, log_odds = solution["orpo_loss"](c, r, cn, rn, nll, lam)
    ours_grads = grads(model, loss)
    assert _close(loss.item(), trl_loss.item())
    assert _close(log_odds.mean().item(), logged["log_odds_chosen"])
    assert _close(F.logsigmoid(log_odds).mean().item(), logged["log_odds_ratio"])
    assert_grads_close(ours_grads, trl_grads, rtol=1e-4)


def test_solution_log_one_minus_p_matches_trl_where_trl_is_finite(solution):
    """TRL's log1mexp and the solution's -expm1 form agree; for x near 0 only the stable forms are finite."""
    from trl.experimental.orpo.orpo_trainer import log1mexp

    x = torch.tensor([-1e-8, -1e-6, -1e-3, -0.5, -0.7, -2.0, -30.0])
    ones = torch.ones_like(x)
    # with rejected fixed, the log odds ratio isolates log(1 - p) of the chosen side
    _, ours = solution["orpo_loss"](x, torch.full_like(x, -3.0), ones, ones, torch.tensor(0.0), 0.1)
    theirs = (x + 3.0) - (log1mexp(x) - log1mexp(torch.full_like(x, -3.0)))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert torch.isinf(torch.log(1 - torch.exp(x[:1]))).all(), "the naive form is -inf there: the mistake the tests catch"


# (name, solution cell, [(old, new), ...], graded cell that must fail)
_SIMPO_LOSS = "    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)"
_AVG_C, _AVG_R = "    chosen = chosen_logps / chosen_tokens\n", "    rejected = rejected_logps / rejected_tokens\n"
_LOG1M = [("torch.log(-torch.expm1(chosen))", "torch.log(1 - torch.exp(chosen))"),
          ("torch.log(-torch.expm1(rejected))", "torch.log(1 - torch.exp(rejected))")]
MISTAKES = [
    ("SimPO: chosen and rejected swapped", "simpo_loss",
     [(_SIMPO_LOSS, "    losses = -F.logsigmoid(rejected_rewards - chosen_rewards - gamma)")], "test_simpo_loss"),
    ("SimPO: margin added instead of subtracted", "simpo_loss",
     [(_SIMPO_LOSS, "    losses = -F.logsigmoid(chosen_rewards - rejected_rewards + gamma)")], "test_simpo_loss"),
    ("SimPO: margin multiplied by beta (not divided by beta as TRL does)", "simpo_loss",
     [(_SIMPO_LOSS, "    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - beta * gamma)")], "test_simpo_loss"),
    ("SimPO: margin multiplied by beta (caught by the TRL comparison too)", "simpo_loss",
     [(_SIMPO_LOSS, "    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - beta * gamma)")], "test_losses_match_trl"),
    ("SimPO: summed instead of averaged log-probs", "simpo_loss",
     [("beta * chosen_logps / chosen_tokens", "beta * chosen_logps"), ("beta * rejected_logps / rejected_tokens", "beta * rejected_logps")],
     "test_simpo_loss"),
    ("SimPO: beta missing", "simpo_loss",
     [("beta * chosen_logps / chosen_tokens", "chosen_logps / chosen_tokens"), ("beta * rejected_logps / rejected_tokens", "rejected_logps / rejected_tokens")],
     "test_simpo_loss"),
    ("SimPO: beta applied twice", "simpo_loss",
     [(_SIMPO_LOSS, "    losses = -F.logsigmoid(beta * (chosen_rewards - rejected_rewards) - gamma)")], "test_simpo_loss"),
    ("SimPO: log of a sigmoid (inf for large margins)", "simpo_loss",
     [(_SIMPO_LOSS, "    losses = -torch.log(torch.sigmoid(chosen_rewards - rejected_rewards - gamma))")], "test_simpo_loss"),
    ("ORPO: odds from summed instead of averaged log-probs", "orpo_loss",
     [(_AVG_C, "    chosen = chosen_logps\n"), (_AVG_R, "    rejected = rejected_logps\n")], "test_orpo_loss"),
    ("ORPO: odds from summed log-probs (caught by the TRL comparison too)", "orpo_loss",
     [(_AVG_C, "    chosen = chosen_logps\n"), (_AVG_R, "    rejected = rejected_logps\n")], "test_losses_match_trl"),
    ("ORPO: log(1 - p) as log(1 - exp(x)) (-inf for confident replies)", "orpo_loss", _LOG1M, "test_orpo_loss"),
    ("ORPO: log(1 - p) as log1p(-exp(x)) (-inf for very confident replies)", "orpo_loss",
     [(old, new.replace("torch.log(1 - torch.exp(", "torch.log1p(-torch.exp(")) for old, new in _LOG1M], "test_orpo_loss"),
    ("ORPO: NLL missing", "orpo_loss",
     [("    loss = chosen_nll - lam * F.logsigmoid(log_odds).mean()", "    loss = -lam * F.logsigmoid(log_odds).mean()")], "test_orpo_loss"),
    ("ORPO: NLL missing (caught by the TRL comparison too)", "orpo_loss",
     [("    loss = chosen_nll - lam * F.logsigmoid(log_odds).mean()", "    loss = -lam * F.logsigmoid(log_odds).mean()")], "test_losses_match_trl"),
    ("ORPO: lambda on the NLL instead of the odds-ratio term", "orpo_loss",
     [("    loss = chosen_nll - lam * F.logsigmoid(log_odds).mean()", "    loss = lam * chosen_nll - F.logsigmoid(log_odds).mean()")], "test_orpo_loss"),
    ("ORPO: odds-ratio term added with the wrong sign", "orpo_loss",
     [("    loss = chosen_nll - lam * F.logsigmoid(log_odds).mean()", "    loss = chosen_nll + lam * F.logsigmoid(log_odds).mean()")], "test_orpo_loss"),
    ("ORPO: chosen and rejected swapped", "orpo_loss",
     [("    log_odds = (chosen - rejected) - (log_one_minus_p_chosen - log_one_minus_p_rejected)",
       "    log_odds = (rejected - chosen) - (log_one_minus_p_rejected - log_one_minus_p_chosen)")], "test_orpo_loss"),
    ("ORPO: log probabilities instead of log odds", "orpo_loss",
     [("    log_odds = (chosen - rejected) - (log_one_minus_p_chosen - log_one_minus_p_rejected)", "    log_odds = chosen - rejected")],
     "test_orpo_loss"),
]


def _prepare(graded, overrides):
    """The definitions a graded cell needs, executed as nbgrader would (a failing cell does not stop the ones after it)."""
    cells = {"test_simpo_loss": ["setup", "simpo_loss"], "test_orpo_loss": ["setup", "orpo_loss"],
             "test_losses_match_trl": ["setup", "simpo_loss", "orpo_loss", "trl_compare"]}[graded]
    namespace = run_cells(NOTEBOOK, cells[:1])
    return run_cells_past_errors(NOTEBOOK, cells[1:], namespace, overrides=overrides)


# Points earned without writing the exercise: each must lose them as a bug does.
SHORTCUTS = [
    shortcut(NOTEBOOK, "TRL's CPOTrainer.cpo_loss on a stand-in trainer", "simpo_loss", """
        from types import SimpleNamespace

        from trl.experimental.cpo import CPOTrainer

        fake = SimpleNamespace(alpha=0.0, loss_type="simpo", simpo_gamma=gamma, beta=beta, label_smoothing=0.0,
                               accelerator=SimpleNamespace(device=chosen_logps.device))
        losses, chosen_rewards, rejected_rewards = CPOTrainer.cpo_loss(fake, chosen_logps / chosen_tokens, rejected_logps / rejected_tokens)
    """, "test_simpo_loss"),
    shortcut(NOTEBOOK, "TRL's log1mexp", "orpo_loss", """
        from trl.experimental.orpo.orpo_trainer import log1mexp

        chosen, rejected = chosen_logps / chosen_tokens, rejected_logps / rejected_tokens
        log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
        loss = chosen_nll - lam * F.logsigmoid(log_odds).mean()
    """, "test_orpo_loss"),
]

SHORTCUTS += [  # the graded TRL comparison calls your functions with TRL's loss code out of reach, as the loss cells do
    Mistake(f"{m.name} (caught by the TRL comparison too)", m.cell, m.replacements, "test_losses_match_trl") for m in SHORTCUTS
]

# A cell the student adds after the TRL comparison runs in the graded cell's namespace (nbgrader restores only the
# locked and test cells). Each entry below is such a cell, planted as code run right after `trl_compare`: a wrong
# loss, plus a redefinition that made the earlier graded cell (which read `checks`, `compare_simpo`, `simpo_trainer`
# and `model` from the cells above) pass with it. The graded cell must recompute everything itself and fail.
_AFTER_TRL_COMPARE = 'print("your losses match TRL\'s" if LOSSES_VERIFIED else "your losses do NOT match TRL\'s yet")'
_SWAPPED_SIMPO = """
def simpo_loss(chosen_logps, rejected_logps, chosen_tokens, rejected_tokens, beta=2.0, gamma=1.0):
    chosen_rewards, rejected_rewards = beta * chosen_logps / chosen_tokens, beta * rejected_logps / rejected_tokens
    return -F.logsigmoid(rejected_rewards - chosen_rewards - gamma), chosen_rewards, rejected_rewards
"""
_SUMMED_ORPO = """
def orpo_loss(chosen_logps, rejected_logps, chosen_tokens, rejected_tokens, chosen_nll, lam=0.1):
    log_odds = (chosen_logps - rejected_logps) - (torch.log(-torch.expm1(chosen_logps)) - torch.log(-torch.expm1(rejected_logps)))
    return chosen_nll - lam * F.logsigmoid(log_odds).mean(), log_odds
"""
_ECHO_TRAINER = """
class EchoTrainer:
    "Stands in for TRL's trainer: its 'TRL numbers' are the student's own."
    def __init__(self, simpo, beta, gamma=None):
        self.simpo, self.beta, self.simpo_gamma = simpo, beta, gamma
    def get_batch_loss_metrics(self, model, batch):
        c, c_n, logits = reply_logps(batch, "chosen")
        r, r_n, _ = reply_logps(batch, "rejected")
        if self.simpo:
            losses, cw, rw = simpo_loss(c, r, c_n, r_n, self.beta, self.simpo_gamma)
            return losses.mean(), {"rewards/chosen": cw.mean().item(), "rewards/margins": (cw - rw).mean().item()}
        loss, log_odds = orpo_loss(c, r, c_n, r_n, trl_nll(logits, batch), self.beta)
        return loss, {"log_odds_chosen": log_odds.mean().item(), "log_odds_ratio": F.logsigmoid(log_odds).mean().item()}
simpo_trainer = EchoTrainer(True, simpo_trainer.beta, simpo_trainer.simpo_gamma)
orpo_trainer = EchoTrainer(False, orpo_trainer.beta)
checks = {**compare_simpo(simpo_trainer, simpo_batch), **compare_orpo(orpo_trainer, orpo_batch)}
"""
_FLAT_MODEL = """
class FlatModel(torch.nn.Module):
    "Every token equally likely: chosen and rejected score the same, so a swapped loss equals the right one."
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
    def forward(self, input_ids, attention_mask=None, **kwargs):
        from types import SimpleNamespace
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))
model = FlatModel(model.config.vocab_size)
checks = {**compare_simpo(simpo_trainer, simpo_batch), **compare_orpo(orpo_trainer, orpo_batch)}
"""
TAMPERING = [
    Mistake("tampering: an added cell sets checks to TRL's numbers and redefines compare_simpo / compare_orpo (SimPO swapped)",
            "trl_compare", [(_AFTER_TRL_COMPARE, _AFTER_TRL_COMPARE + _SWAPPED_SIMPO + """
checks = {name: (theirs, theirs) for name, (_, theirs) in checks.items()}
compare_simpo = compare_orpo = lambda trainer, batch: {"loss": (1.0, 1.0)}
""")], "test_losses_match_trl"),
    Mistake("tampering: an added cell replaces simpo_trainer / orpo_trainer by stand-ins that echo your numbers (ORPO summed)",
            "trl_compare", [(_AFTER_TRL_COMPARE, _AFTER_TRL_COMPARE + _SUMMED_ORPO + _ECHO_TRAINER)], "test_losses_match_trl"),
    Mistake("tampering: an added cell replaces model by one that scores every reply alike (SimPO swapped)",
            "trl_compare", [(_AFTER_TRL_COMPARE, _AFTER_TRL_COMPARE + _SWAPPED_SIMPO + _FLAT_MODEL)], "test_losses_match_trl"),
]

test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(
    NOTEBOOK, MISTAKES + SHORTCUTS + TAMPERING, _prepare)


def names_from_outside(source: str) -> set[str]:
    """Names a cell reads that it neither binds itself nor gets from Python's builtins: what earlier cells hand it."""
    import ast
    import builtins

    tree = ast.parse(source)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    bound |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    bound |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loaded - bound - set(dir(builtins))


def test_graded_trl_comparison_takes_only_the_exercises_from_earlier_cells():
    """An added cell can redefine any name an earlier cell bound; the graded comparison must read none but the two losses."""
    from tools.notebook_cells import cell_sources

    outside = names_from_outside(cell_sources(NOTEBOOK)["test_losses_match_trl"])
    assert outside == {"simpo_loss", "orpo_loss"}, f"test_losses_match_trl reads {sorted(outside - {'simpo_loss', 'orpo_loss'})} from earlier cells"


def test_names_from_outside_sees_helpers_of_earlier_cells():
    """The check above would catch the comparison cell as it was (reading `checks`, `compare_simpo`, ... of trl_compare)."""
    old = """for _name, (_ours, _theirs) in checks.items():
    assert math.isfinite(_ours), _name
for _k, _v in compare_simpo(simpo_trainer, simpo_batch).items():
    pass
"""
    assert names_from_outside(old) == {"checks", "math", "compare_simpo", "simpo_trainer", "simpo_batch"}


def test_sft_control_rows_are_the_pairs_prompts_and_chosen_replies_in_order():
    """The control trains on exactly what ORPO's NLL sees of each pair, the chosen reply, in the same order (same sampler)."""
    from utils.experiments.preference_comparison import chosen_as_sft_rows
    from utils.experiments.preference_methods import preference_method

    pairs = preference_method("orpo").training_data(12)
    rows = chosen_as_sft_rows(pairs)
    assert len(rows) == len(pairs) and rows.column_names == ["prompt", "completion"]
    for row, pair in zip(rows, pairs):
        assert row["prompt"] == pair["prompt"] and row["completion"] == pair["chosen"] != pair["rejected"]


def test_step_timer_keeps_each_step():
    """One wall time per step, not their mean: what the lab's spread of step times is made of."""
    import time
    from types import SimpleNamespace

    from utils.experiments.preference_comparison import StepTimer, step_seconds

    timer = StepTimer()
    for pause in (0.0, 0.02):
        timer.on_step_begin(None, None, None)
        time.sleep(pause)
        timer.on_step_end(None, None, None)
    assert len(timer.seconds) == 2 and timer.seconds[1] >= 0.02 > timer.seconds[0]
    trainer = SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[object(), timer]))
    assert step_seconds(trainer) == timer.seconds
    assert step_seconds(SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[]))) is None
