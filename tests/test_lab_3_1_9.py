"""Lab 3.1.9: the solution's KTO loss equals TRL's KTOTrainer on the same batch, and the graded tests catch real mistakes.

The reference is TRL 1.16's `KTOTrainer.compute_loss` on a tiny random Llama with the course
tokenizer and a LoRA adapter (the reference is the adapter switched off, as in the lab), its B
matrices nudged off zero so that policy and reference differ. The solution's `kto_loss` gets the
summed completion log-probs of the same model on the same batch (rows and their mismatched KL
sequences) and must give the same loss, the same logged reference point and the same gradients.
"""

import tempfile

import pytest
import torch

from trl_reference import assert_grads_close, grads, tiny_llama
from mistake_table import mistake_table_tests
from tools.notebook_cells import SOLUTIONS, run_cells, run_cells_past_errors

NOTEBOOK = SOLUTIONS / "lab-3.1.9-kto-binary-feedback.ipynb"


@pytest.fixture(scope="module")
def solution():
    return run_cells(NOTEBOOK, ["setup", "kto_loss"])


def _kto_trainer(tokenizer, **settings):
    from utils.adapters import adapter_config
    from utils.experiments.preference_methods import preference_method
    from utils.preference_data import course_kto_rows
    from utils.profiles import get_profile

    model = tiny_llama(len(tokenizer))
    P = get_profile("grade")
    rows = course_kto_rows("train", 5, as_dataset=True)
    with tempfile.TemporaryDirectory() as out:
        kto = preference_method("kto")
        config = kto.config(P, out, per_device_train_batch_size=len(rows), **settings)
        trainer = kto.trainer_class()(model=model, args=config, train_dataset=rows, processing_class=tokenizer,
                                      peft_config=adapter_config(P))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    return trainer, next(iter(trainer.get_train_dataloader()))


def _logps(model, batch, prefix=""):
    from utils.evaluation import completion_logps

    ids = batch[f"{prefix}input_ids"]
    logits = model(input_ids=ids, attention_mask=batch[f"{prefix}attention_mask"], use_cache=False).logits
    return completion_logps(logits, ids, batch[f"{prefix}completion_mask"])


@pytest.mark.parametrize("beta, desirable_weight, undesirable_weight", [(0.1, 1.0, 1.0), (0.5, 1.33, 1.0), (1.0, 1.0, 2.5)])
def test_solution_kto_equals_trl_kto_trainer(solution, smollm2_tokenizer, beta, desirable_weight, undesirable_weight):
    trainer, batch = _kto_trainer(smollm2_tokenizer, beta=beta, desirable_weight=desirable_weight, undesirable_weight=undesirable_weight)
    model = trainer.model
    model.train()
    trl_loss = trainer.compute_loss(model, batch)
    trl_kl = trainer._metrics["train"]["kl"][-1]
    trl_grads = grads(model, trl_loss)
    assert trl_grads, "the adapter must receive gradients"
    pol, pol_kl = _logps(model, batch), _logps(model, batch, "KL_")
    with torch.no_grad(), model.disable_adapter():
        ref, ref_kl = _logps(model, batch), _logps(model, batch, "KL_")
    losses, z0 = solution["kto_loss"](pol, ref, batch["label"], pol_kl, ref_kl, beta, desirable_weight, undesirable_weight)
    assert float(z0) > 0, "the nudged adapter should give a positive KL estimate here, so the clamp and detach matter"
    ours_grads = grads(model, losses.mean())
    assert abs(losses.mean().item() - trl_loss.item()) <= 1e-4 * max(1.0, abs(trl_loss.item()))
    assert abs(float(z0) - trl_kl) <= 1e-4 * max(1.0, abs(trl_kl))
    assert_grads_close(ours_grads, trl_grads, rtol=1e-3)


def test_imbalanced_rows_keep_every_undesirable_row_and_one_desirable_in_n():
    from utils.experiments.preference_comparison import imbalanced_kto_rows
    from utils.preference_data import course_kto_rows

    rows = course_kto_rows("train", 40, as_dataset=True)
    kept = imbalanced_kto_rows(rows, 4)
    assert sum(kept["label"]) == 10 and len(kept) - sum(kept["label"]) == 40
    assert list(imbalanced_kto_rows(rows, 1)["label"]) == list(rows["label"])
    with pytest.raises(ValueError, match="undesirable_per_desirable"):
        imbalanced_kto_rows(rows, 0)


_Z0 = "    z0 = (policy_kl_logps - reference_kl_logps).mean().clamp(min=0).detach()"
_D = "    desirable = desirable_weight * (1 - torch.sigmoid(beta * (rewards - z0)))"
_U = "    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - rewards)))"
_LAST_COMPARE_LINE = """print("your loss matches TRL's" if KTO_VERIFIED else "your loss does NOT match TRL's yet")"""
_ADDED_CELL = """
_kto_loss_as_written = kto_loss


def kto_loss(policy_logps, reference_logps, labels, policy_kl_logps, reference_kl_logps, beta=0.1, desirable_weight=1.0,
             undesirable_weight=1.0):
    # the reference point ignored: the KL log-probs of the policy replaced by the reference's, so z0 = 0
    return _kto_loss_as_written(policy_logps, reference_logps, labels, reference_kl_logps, reference_kl_logps, beta,
                                desirable_weight, undesirable_weight)


_compare_kto_as_shipped = compare_kto


def compare_kto(trainer, batch):
    return {name: (theirs, theirs) for name, (_, theirs) in _compare_kto_as_shipped(trainer, batch).items()}


agrees = lambda rows, rtol=1e-4: True
checks = compare_kto(kto_trainer, kto_batch)
KTO_VERIFIED = True
"""
# (name, solution cell, [(old, new), ...], graded cell that must fail)
MISTAKES = [
    ("-logsigmoid instead of 1 - sigmoid", "kto_loss",
     [(_D, "    desirable = desirable_weight * -F.logsigmoid(beta * (rewards - z0))"),
      (_U, "    undesirable = undesirable_weight * -F.logsigmoid(beta * (z0 - rewards))")], "test_kto_loss"),
    ("-logsigmoid instead of 1 - sigmoid (caught by the TRL comparison too)", "kto_loss",
     [(_D, "    desirable = desirable_weight * -F.logsigmoid(beta * (rewards - z0))"),
      (_U, "    undesirable = undesirable_weight * -F.logsigmoid(beta * (z0 - rewards))")], "test_kto_matches_trl"),
    ("KL not detached", "kto_loss", [(_Z0, _Z0.replace(".detach()", ""))], "test_kto_loss"),
    ("KL not clamped at 0", "kto_loss", [(_Z0, _Z0.replace(".clamp(min=0)", ""))], "test_kto_loss"),
    ("KL summed instead of averaged", "kto_loss", [(_Z0, _Z0.replace(".mean()", ".sum()"))], "test_kto_loss"),
    ("reference point left out", "kto_loss", [(_Z0, "    z0 = torch.zeros(())")], "test_kto_loss"),
    # the TRL comparison runs on a batch whose z0 > 0, so a loss without the reference point no longer matches TRL there
    ("reference point left out (caught by the TRL comparison too)", "kto_loss", [(_Z0, "    z0 = torch.zeros(())")],
     "test_kto_matches_trl"),
    # a cell added after section 2 (written here as an edit at the end of that locked cell, where it runs): a loss that
    # ignores z0, and section 2's helpers and `checks` redefined to report TRL's numbers as the student's
    ("added cell redefines compare_kto, agrees and checks", "trl_compare", [(_LAST_COMPARE_LINE, _LAST_COMPARE_LINE + _ADDED_CELL)],
     "test_kto_matches_trl"),
    ("weights swapped", "kto_loss", [(_D, _D.replace("desirable_weight *", "undesirable_weight *")),
                                     (_U, _U.replace("undesirable_weight *", "desirable_weight *"))], "test_kto_loss"),
    ("weights swapped (caught by the TRL comparison too)", "kto_loss",
     [(_D, _D.replace("desirable_weight *", "undesirable_weight *")), (_U, _U.replace("undesirable_weight *", "desirable_weight *"))],
     "test_kto_matches_trl"),
    ("desirable and undesirable swapped", "kto_loss",
     [("    losses = torch.where(labels, desirable, undesirable)", "    losses = torch.where(labels, undesirable, desirable)")], "test_kto_loss"),
    ("reward sign flipped", "kto_loss", [("    rewards = policy_logps - reference_logps", "    rewards = reference_logps - policy_logps")],
     "test_kto_loss"),
    ("beta missing", "kto_loss", [(_D, _D.replace("beta * ", "")), (_U, _U.replace("beta * ", ""))], "test_kto_loss"),
    ("losses averaged per kind instead of returned per row", "kto_loss",
     [("    losses = torch.where(labels, desirable, undesirable)",
       "    losses = torch.where(labels, desirable[labels].mean(), undesirable[~labels].mean())")], "test_kto_loss"),
]


def _prepare(graded, overrides):
    """The definitions a graded cell needs, executed as nbgrader would (a failing cell does not stop the ones after it)."""
    cells = {"test_kto_loss": ["setup", "kto_loss"], "test_kto_matches_trl": ["setup", "kto_loss", "trl_compare"]}[graded]
    namespace = run_cells(NOTEBOOK, cells[:1])
    return run_cells_past_errors(NOTEBOOK, cells[1:], namespace, overrides=overrides)


# TRL has no KTO loss function outside its trainer, whose compute_loss the hidden tests keep out of reach; no
# finished utils function computes it either, so the table has no shortcut entry of its own. The graded TRL comparison
# computes what it compares inside itself (section 2's helpers only print the table), which the added-cell entry checks.
test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(NOTEBOOK, MISTAKES, _prepare)
