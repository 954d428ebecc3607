"""Lab 3.1.7: the solution's `sequence_logprobs` and `dpo_loss` equal TRL's DPOTrainer, and the graded tests catch real mistakes.

The comparisons build TRL 1.16's DPOTrainer on a tiny Llama with the course tokenizer and a LoRA policy
whose adapter starts away from zero (so policy and reference differ), take batches of its own collator,
and compare what the trainer computes (`compute_loss` and the metrics it logs, per pair and per batch, and
the gradients of the loss) with the solution's functions applied to the same model's full logits. The
shared preference code (`utils.experiments.preference`, `utils.evaluation.preference_accuracy`) is
checked against the same trainer.
"""

import contextlib
import os
import tempfile

import pytest
import torch

from trl_reference import tiny_llama
from mistake_table import mistake_table_tests
from tools.notebook_cells import SOLUTIONS, run_cells
from utils.experiments.preference_methods import preference_method

NOTEBOOK = SOLUTIONS / "lab-3.1.7-dpo-training.ipynb"
DPO_METRICS = preference_method("dpo").metrics  # what TRL's DPOTrainer logs (tests/unit/test_preference_methods.py checks it)


@contextlib.contextmanager
def _grade_profile():
    """The notebook's cells read the profile when they run: use the grade profile's small sizes for them."""
    previous = os.environ.get("COURSE_PROFILE")
    os.environ["COURSE_PROFILE"] = "grade"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("COURSE_PROFILE", None)
        else:
            os.environ["COURSE_PROFILE"] = previous


@pytest.fixture(scope="module")
def solution():
    with _grade_profile():
        return run_cells(NOTEBOOK, ["setup", "sequence_logprobs", "dpo_loss"])


def _dpo_trainer(tokenizer, n_pairs: int, out: str, beta: float = 0.1, eval_dataset=None):
    """TRL's DPOTrainer on a tiny model with a LoRA policy whose B starts random (policy != reference)."""
    from peft import LoraConfig

    from utils.preference_data import course_pairs
    from utils.profiles import get_profile

    from trl import DPOTrainer

    P = get_profile("grade").with_(batch_size=n_pairs)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    return DPOTrainer(model=tiny_llama(len(tokenizer)), args=preference_method("dpo").config(P, out, beta=beta),
                      train_dataset=course_pairs("train", n_pairs, as_dataset=True), eval_dataset=eval_dataset, processing_class=tokenizer,
                      peft_config=lora)


def _trl(trainer, batch, grad=False):
    trainer.model.train()
    trainer._metrics["train"].clear()
    with contextlib.nullcontext() if grad else torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    return loss, {k: trainer._metrics["train"][k][-1] for k in DPO_METRICS}


def _ours(solution, model, batch, beta, grad=False):
    inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    with contextlib.nullcontext() if grad else torch.no_grad():
        logps = solution["sequence_logprobs"](model(**inputs).logits, batch["input_ids"], batch["completion_mask"])
    with torch.no_grad(), model.disable_adapter():
        ref = solution["sequence_logprobs"](model(**inputs).logits, batch["input_ids"], batch["completion_mask"])
    (pc, pr), (rc, rr) = logps.chunk(2), ref.chunk(2)
    losses, cr, rj = solution["dpo_loss"](pc, pr, rc, rr, beta)
    return losses, cr, rj, pc, pr


def _reward_atol(beta: float, *logps: torch.Tensor) -> float:
    """A reward is beta x (policy - reference) log-prob: the small difference of two fp32 sums of size |logp|, so two
    correct implementations agree to a few ulps of those sums times beta (a CI run once differed by 3e-6 on a reward
    of 0.0228, 1e-4 relative), not to a relative 1e-4 of the reward. Real mistakes are off by far more."""
    return max(1e-6, beta * 2e-6 * max(t.abs().max().item() for t in logps))


def test_solution_equals_trl_dpo_trainer_per_pair_batched_and_in_gradients(solution, smollm2_tokenizer):
    with tempfile.TemporaryDirectory() as out:
        trainer = _dpo_trainer(smollm2_tokenizer, 4, out)
        model = trainer.model
        assert trainer.ref_model is None, "a PEFT policy and no ref_model: TRL's reference is the adapter switched off"
        rows = [trainer.train_dataset[i] for i in range(4)]
        for beta in (0.1, 0.7):
            trainer.beta = beta
            # every pair alone: TRL's loss and logged metrics are that pair's values
            for row in rows:
                batch = trainer.data_collator([row])
                loss, logged = _trl(trainer, batch)
                losses, cr, rj, pc, pr = _ours(solution, model, batch, beta)
                assert losses.item() == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
                atol = _reward_atol(beta, pc, pr)
                assert cr.item() == pytest.approx(logged["rewards/chosen"], rel=1e-4, abs=atol)
                assert rj.item() == pytest.approx(logged["rewards/rejected"], rel=1e-4, abs=atol)
                assert pc.item() == pytest.approx(logged["logps/chosen"], rel=1e-5)
                assert pr.item() == pytest.approx(logged["logps/rejected"], rel=1e-5)
                assert abs(cr.item() - rj.item()) > 1e-4, "the test needs pairs whose rewards differ"
            # a padded batch of four: the means TRL logs
            batch = trainer.data_collator(rows)
            assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
            loss, logged = _trl(trainer, batch)
            losses, cr, rj, pc, pr = _ours(solution, model, batch, beta)
            ours = {"rewards/chosen": cr.mean(), "rewards/rejected": rj.mean(), "rewards/accuracies": (cr > rj).float().mean(),
                    "rewards/margins": (cr - rj).mean(), "logps/chosen": pc.mean(), "logps/rejected": pr.mean()}
            assert losses.mean().item() == pytest.approx(loss.item(), rel=1e-4)
            for key in DPO_METRICS:
                atol = _reward_atol(beta, pc, pr) if key.startswith("rewards/") else 1e-6
                assert ours[key].item() == pytest.approx(logged[key], rel=1e-4, abs=atol), key
        # the same gradient reaches the adapter: the loss is the same function of the policy
        trainer.beta = 0.1
        grads = []
        for compute in (lambda: _trl(trainer, batch, grad=True)[0], lambda: _ours(solution, model, batch, 0.1, grad=True)[0].mean()):
            model.zero_grad()
            compute().backward()
            grads.append([p.grad.clone() for n, p in model.named_parameters() if "lora_" in n])
        for theirs, ours_grad in zip(*grads):
            torch.testing.assert_close(ours_grad, theirs, rtol=1e-3, atol=1e-6)


def test_solution_average_equals_trl_per_token_average(solution, smollm2_tokenizer):
    """average=True is TRL's per-token average (CPOTrainer.get_batch_logps, used by SimPO), on a padded batch."""
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    with tempfile.TemporaryDirectory() as out:
        trainer = _dpo_trainer(smollm2_tokenizer, 3, out)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
        with torch.no_grad():
            logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    for average in (False, True):
        theirs = CPOTrainer.get_batch_logps(logits, labels, average_log_prob=average)
        ours = solution["sequence_logprobs"](logits, batch["input_ids"], batch["completion_mask"], average=average)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_shared_scoring_uses_trl_tokenization_and_equals_the_trainer(smollm2_tokenizer):
    """utils.evaluation scores pairs as TRL tokenizes, collates and scores them, with the course system turn."""
    from utils.evaluation import completion_logps, pair_logps, preference_accuracy, tokenize_pair
    from utils.preference_data import course_pairs

    pairs = course_pairs("train", 4)
    text = smollm2_tokenizer.apply_chat_template(pairs[0]["prompt"] + pairs[0]["chosen"], tokenize=False)
    assert pairs[0]["prompt"][0]["role"] == "system" and "SmolLM" not in text, "the course system turn, not the template's default"
    with tempfile.TemporaryDirectory() as out:
        trainer = _dpo_trainer(smollm2_tokenizer, 4, out)
        for i, pair in enumerate(pairs):
            row = trainer.train_dataset[i]
            assert tokenize_pair(smollm2_tokenizer, pair) == {k: row[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        _, logged = _trl(trainer, batch)
        model = trainer.model
        chosen, rejected = pair_logps(model, smollm2_tokenizer, pairs, batch_size=3)  # across two batches of another padding
        assert chosen.mean().item() == pytest.approx(logged["logps/chosen"], rel=1e-5)
        assert rejected.mean().item() == pytest.approx(logged["logps/rejected"], rel=1e-5)
        result = preference_accuracy(model, smollm2_tokenizer, pairs, beta=0.1)
        assert result.mean_margin == pytest.approx(logged["rewards/margins"], rel=1e-4, abs=1e-6)
        assert result.reward_accuracy == pytest.approx(logged["rewards/accuracies"])
        assert result.logprob_accuracy == pytest.approx((chosen > rejected).float().mean().item())
        # the starting model's log-probs as the reference give the same result as the adapter switched off
        with model.disable_adapter():
            start = preference_accuracy(model, smollm2_tokenizer, pairs)
        assert start.reward_accuracy == 0 and start.mean_margin == 0, "a model that is its own reference has zero rewards"
        reused = preference_accuracy(model, smollm2_tokenizer, pairs, reference_logps=start.logps())
        assert [r["reward_correct"] for r in reused.rows] == [r["reward_correct"] for r in result.rows]
        assert reused.mean_margin == pytest.approx(result.mean_margin, rel=1e-5)
        with pytest.raises(ValueError, match="reference_logps"):
            preference_accuracy(model, smollm2_tokenizer, pairs, reference_logps=([0.0], [0.0]))
        logits = torch.randn(2, 5, 7)
        ids = torch.randint(0, 7, (2, 5))
        mask = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]])
        manual = [sum(torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item() for t in range(1, 5) if mask[b, t]) for b in range(2)]
        torch.testing.assert_close(completion_logps(logits, ids, mask), torch.tensor(manual))


def test_preference_data_for_training_keeps_the_labels_balanced():
    from utils.preference_data import course_kto_rows, course_pairs, load_preferences

    kto = course_kto_rows("train", 10)
    assert len(kto) == 20 and sum(r["label"] for r in kto) == 10, "a limit counts examples and keeps both rows"
    assert len({r["id"] for r in kto}) == 10 and all(r["prompt"][0]["role"] == "system" for r in kto)
    ids = [p["id"] for p in load_preferences("test")]
    subset = course_pairs("test", 8)
    assert sorted(p["kind"] for p in subset) == ["wrong_fact"] * 4 + ["wrong_format"] * 4, "both kinds, equally"
    assert [ids.index(p["id"]) for p in subset] == sorted(ids.index(p["id"]) for p in subset), "in file order"
    assert len({p["id"].split("/")[0] for p in subset}) >= 6, "spread over the islands"
    with pytest.raises(ValueError, match="row x: the prompt"):
        from utils.preference_data import with_course_system_turn

        with_course_system_turn([{"id": "x", "prompt": "a string"}])


@pytest.mark.parametrize("method", ["dpo", "simpo", "orpo", "kto"])
@pytest.mark.parametrize("precision, bf16", [("fp32", False), ("bf16", True)])
def test_every_preference_config_follows_the_course_precision(monkeypatch, tmp_path, method, precision, bf16):
    """TRL's configs default to bf16 and gradient checkpointing; the course's settings must reach each one."""
    from utils.profiles import get_profile

    monkeypatch.setenv("COURSE_PRECISION", precision)
    P = get_profile("grade", lab="3.1.7")
    config = preference_method(method).config(P, str(tmp_path), beta=0.3)
    assert config.bf16 is bf16 and config.activation_checkpointing is torch.cuda.is_available()
    assert (config.max_steps, config.per_device_train_batch_size, config.learning_rate, config.beta) == (P.max_steps, P.batch_size, P.learning_rate, 0.3)
    with pytest.raises(ValueError, match="unknown preference method"):
        preference_method("ppo")


def test_train_preference_runs_logs_and_resumes_like_the_course_trainer(smollm2_tokenizer, tmp_path):
    """Two DPO steps uninterrupted, or stopped at a checkpoint and resumed, end on the same adapter; logs are read back."""
    from utils.adapters import adapter_config
    from utils.experiments.preference import reward_history, run_summary, train_preference
    from utils.experiments.stop_and_resume import StopAtStep
    from utils.profiles import get_profile
    from utils.training import metric_history

    P = get_profile("grade", lab="3.1.7").with_(max_steps=2, batch_size=2, logging_steps=1)
    data = preference_method("dpo").training_data(8)

    def run(out, **kwargs):
        return train_preference("dpo", tiny_llama(len(smollm2_tokenizer)), smollm2_tokenizer, data, P, str(out),
                                peft_config=adapter_config(P), beta=0.1, disable_tqdm=True, **kwargs)

    whole = run(tmp_path / "whole")
    assert whole.ref_model is None, "the reference is the adapter switched off, no second model"
    history = reward_history(whole, "dpo")
    assert history["rewards/accuracies"][0] == [1, 2] and metric_history(whole, "loss")[1][0] == pytest.approx(0.6931, abs=1e-3)
    assert run_summary(whole, "dpo")["steps"] == 2
    run(tmp_path / "cut", callbacks=[StopAtStep(1)], save_strategy="steps", save_steps=1)
    resumed = run(tmp_path / "cut", resume_from_checkpoint=True, save_strategy="steps", save_steps=1)
    assert resumed.state.global_step == 2
    a = {n: p for n, p in whole.model.named_parameters() if "lora_" in n}
    b = {n: p for n, p in resumed.model.named_parameters() if "lora_" in n}
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6)


def test_out_of_reach_covers_class_attributes_and_restores_them():
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    from utils.shortcut_guard import ShortcutError, out_of_reach

    raw = vars(CPOTrainer)["get_batch_logps"]
    with out_of_reach({}, "trl.experimental.cpo.cpo_trainer.CPOTrainer.get_batch_logps"):
        with pytest.raises(ShortcutError):
            CPOTrainer.get_batch_logps(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long))
    assert vars(CPOTrainer)["get_batch_logps"] is raw and isinstance(raw, staticmethod)


# (name, solution cell, [(old, new), ...], graded cell that must fail)
MISTAKES = [
    ("logits not shifted against the labels", "sequence_logprobs",
     [("logits[:, :-1].float()", "logits.float()"), ("labels[:, 1:].unsqueeze(-1)", "labels.unsqueeze(-1)"),
      ("completion_mask[:, 1:]", "completion_mask")], "test_sequence_logprobs"),
    ("logits not shifted (caught by the TRL comparison too)", "sequence_logprobs",
     [("logits[:, :-1].float()", "logits.float()"), ("labels[:, 1:].unsqueeze(-1)", "labels.unsqueeze(-1)"),
      ("completion_mask[:, 1:]", "completion_mask")], "test_matches_trl"),
    ("mask not shifted with the labels (one token off)", "sequence_logprobs",
     [("completion_mask[:, 1:]", "completion_mask[:, :-1]")], "test_sequence_logprobs"),
    ("prompt tokens counted (the whole sequence scored)", "sequence_logprobs",
     [("mask = completion_mask[:, 1:].to(token_logps.dtype)", "mask = torch.ones_like(token_logps)")], "test_sequence_logprobs"),
    ("padding counted (mask from the first reply token to the end)", "sequence_logprobs",
     [("completion_mask[:, 1:]", "(completion_mask.cumsum(-1) > 0)[:, 1:]")], "test_sequence_logprobs"),
    ("mean where DPO sums", "sequence_logprobs",
     [("    return summed\n", "    return summed / mask.sum(dim=-1)\n")], "test_sequence_logprobs"),
    ("per-token average over the padded length", "sequence_logprobs",
     [("return summed / mask.sum(dim=-1).clamp(min=1)", "return (token_logps * mask).mean(dim=-1)")], "test_sequence_logprobs"),
    ("average ignored", "sequence_logprobs",
     [("    if average:\n        return summed / mask.sum(dim=-1).clamp(min=1)\n", "")], "test_sequence_logprobs"),
    ("raw logits instead of log-probabilities", "sequence_logprobs",
     [("torch.log_softmax(logits[:, :-1].float(), dim=-1)", "logits[:, :-1].float()")], "test_sequence_logprobs"),
    ("log-softmax over the sequence axis", "sequence_logprobs",
     [("torch.log_softmax(logits[:, :-1].float(), dim=-1)", "torch.log_softmax(logits[:, :-1].float(), dim=1)")], "test_sequence_logprobs"),
    ("detached from the graph", "sequence_logprobs",
     [("logits[:, :-1].float(), dim=-1)", "logits[:, :-1].float().detach(), dim=-1)")], "test_sequence_logprobs"),
    ("chosen and rejected swapped", "dpo_loss",
     [("beta * (chosen_logratios - rejected_logratios)", "beta * (rejected_logratios - chosen_logratios)")], "test_dpo_loss"),
    ("chosen and rejected swapped (caught by the TRL comparison too)", "dpo_loss",
     [("beta * (chosen_logratios - rejected_logratios)", "beta * (rejected_logratios - chosen_logratios)")], "test_matches_trl"),
    ("sign of the loss flipped", "dpo_loss", [("losses = -F.logsigmoid(", "losses = F.logsigmoid(")], "test_dpo_loss"),
    ("log-ratios taken the wrong way (reference minus policy)", "dpo_loss",
     [("policy_chosen_logps - ref_chosen_logps", "ref_chosen_logps - policy_chosen_logps"),
      ("policy_rejected_logps - ref_rejected_logps", "ref_rejected_logps - policy_rejected_logps")], "test_dpo_loss"),
    ("beta missing", "dpo_loss", [("-F.logsigmoid(beta * (", "-F.logsigmoid((")], "test_dpo_loss"),
    ("beta applied twice", "dpo_loss", [("-F.logsigmoid(beta * (", "-F.logsigmoid(beta * beta * (")], "test_dpo_loss"),
    ("rewards without beta", "dpo_loss",
     [("chosen_rewards = beta * chosen_logratios", "chosen_rewards = chosen_logratios"),
      ("rejected_rewards = beta * rejected_logratios", "rejected_rewards = rejected_logratios")], "test_dpo_loss"),
    ("reference ignored", "dpo_loss",
     [("policy_chosen_logps - ref_chosen_logps", "policy_chosen_logps"),
      ("policy_rejected_logps - ref_rejected_logps", "policy_rejected_logps")], "test_dpo_loss"),
    ("mean returned instead of per-pair losses", "dpo_loss",
     [("return losses, chosen_rewards", "return losses.mean(), chosen_rewards")], "test_dpo_loss"),
    ("log of sigmoid (inf for large margins)", "dpo_loss",
     [("-F.logsigmoid(beta * (chosen_logratios - rejected_logratios))",
       "-torch.log(torch.sigmoid(beta * (chosen_logratios - rejected_logratios)))")], "test_dpo_loss"),
    ("rewards not detached", "dpo_loss", [(".detach()", "")], "test_dpo_loss"),
]


def _prepare(graded, overrides):
    """The definitions a graded cell needs, executed as the notebook would. The TRL comparison builds everything it
    compares inside its graded cell, so the solution's three cells are all it needs."""
    with _grade_profile():
        return run_cells(NOTEBOOK, ["setup", "sequence_logprobs", "dpo_loss"], overrides=overrides)


test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(NOTEBOOK, MISTAKES, _prepare)
# The shortcuts and tampering kinds, and the guard-off runs that show each is real: tests/test_lab_3_1_7_shortcuts.py


def test_the_trl_eval_of_held_out_pairs_equals_the_course_scoring(smollm2_tokenizer):
    """The plotted held-out curves (TRL's eval_dataset metrics) and the table's numbers (utils.evaluation) score the
    same pairs alike, so the last curve point is the table's "after"."""
    from utils.evaluation import preference_accuracy
    from utils.preference_data import course_pairs

    with tempfile.TemporaryDirectory() as out:
        trainer = _dpo_trainer(smollm2_tokenizer, 4, out, eval_dataset=course_pairs("test", 6, as_dataset=True))
        pairs = course_pairs("test", 6)
        logged = trainer.evaluate()
        ours = preference_accuracy(trainer.model, smollm2_tokenizer, pairs, beta=trainer.beta)
    assert logged["eval_rewards/margins"] == pytest.approx(ours.mean_margin, rel=1e-4, abs=1e-6)
    assert logged["eval_rewards/accuracies"] == pytest.approx(ours.reward_accuracy)
    assert logged["eval_logps/chosen"] == pytest.approx(sum(r["chosen_logp"] for r in ours.rows) / len(pairs), rel=1e-5)
