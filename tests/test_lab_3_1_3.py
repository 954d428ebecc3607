"""Lab 3.1.3: the solution's NEFTune hook agrees with transformers', and the graded tests catch real mistakes.

The comparisons run the solution cell's own `add_neftune_hook` against transformers'
`neftune_post_forward_hook` (what `TrainingArguments(neftune_noise_alpha=...)` installs). Seeds
are fixed, so every statistic below is deterministic; the tolerances are many standard errors
wide, so a correct implementation with a different random-number consumption passes too.
"""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from mistake_table import mistake_table_tests, shortcut
from tools.notebook_cells import SOLUTIONS, run_cells, run_cells_past_errors

NOTEBOOK = SOLUTIONS / "lab-3.1.3-neftune-magic.ipynb"


@pytest.fixture(scope="module")
def solution():
    return run_cells(NOTEBOOK, ["setup", "neftune_hook"])


def _noise(attach, batch, length, dim, seed, train=True):
    torch.manual_seed(0)
    emb = nn.Embedding(100, dim)
    ids = torch.randint(0, 100, (batch, length))
    emb.train(train)
    with torch.no_grad():
        clean = emb(ids)
        handle = attach(emb)
        torch.manual_seed(seed)
        noisy = emb(ids)
    handle.remove()
    assert not emb._forward_hooks
    return noisy - clean


def _transformers(alpha):
    from transformers.integrations.neftune import neftune_post_forward_hook

    def attach(emb):
        emb.neftune_noise_alpha = alpha
        return emb.register_forward_hook(neftune_post_forward_hook)

    return attach


def _ks(x, y):
    x, y = x.flatten().double().sort().values, y.flatten().double().sort().values
    grid = torch.cat([x, y])
    return (torch.searchsorted(x, grid, right=True) / len(x) - torch.searchsorted(y, grid, right=True) / len(y)).abs().max().item()


@pytest.mark.parametrize("batch, length, dim, alpha", [(64, 16, 32, 5.0), (8, 37, 576, 10.0), (128, 3, 64, 15.0), (2, 200, 48, 1.0)])
def test_solution_noise_matches_transformers(solution, batch, length, dim, alpha):
    ours_attach = lambda emb: solution["add_neftune_hook"](emb, alpha)  # noqa: E731
    ours = _noise(ours_attach, batch, length, dim, seed=1)
    theirs = _noise(_transformers(alpha), batch, length, dim, seed=2)
    a = alpha / math.sqrt(length * dim)
    for noise in (ours, theirs):
        assert noise.abs().max() <= a * (1 + 1e-5)
        assert noise.abs().max() >= 0.99 * a
        assert abs(noise.mean()) < 0.02 * a
        assert abs(noise.var() / (a**2 / 3) - 1) < 0.03
    assert _ks(ours, theirs) < 5 / math.sqrt(ours.numel())
    # the solution draws its noise exactly as transformers does: same seed, same noise
    torch.testing.assert_close(_noise(ours_attach, batch, length, dim, seed=3), _noise(_transformers(alpha), batch, length, dim, seed=3))
    # and neither adds any in eval mode
    assert torch.all(_noise(ours_attach, batch, length, dim, seed=1, train=False) == 0)
    assert torch.all(_noise(_transformers(alpha), batch, length, dim, seed=1, train=False) == 0)


def test_ks_separates_uniform_from_gaussian_at_the_sizes_used():
    """The distribution check has power: a Gaussian with the uniform's variance is far outside the tolerance."""
    torch.manual_seed(0)
    n = 64 * 16 * 32  # the smallest sample the notebook compares
    uniform_a, uniform_b = torch.empty(n).uniform_(-1, 1), torch.empty(n).uniform_(-1, 1)
    gaussian = torch.randn(n) / math.sqrt(3)
    assert _ks(uniform_a, uniform_b) < 5 / math.sqrt(n) / 2
    assert _ks(uniform_a, gaussian) > 2 * 5 / math.sqrt(n)


def test_trainer_neftune_alpha_installs_transformers_hook_only_while_training():
    """TrainingArguments(neftune_noise_alpha) = activate_neftune at the start, removed at the end: the notebook's reference."""
    from transformers import TrainerCallback
    from transformers.integrations.neftune import neftune_post_forward_hook

    from utils.adapters import adapter_config
    from utils.course_data import load_split
    from utils.models import load_base
    from utils.profiles import get_profile
    from utils.training import train_sft

    P = get_profile("grade").with_(max_steps=1)
    model, tokenizer = load_base(P)
    emb = model.get_input_embeddings()
    seen = []

    class Spy(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            seen.append(([h for h in emb._forward_hooks.values()], getattr(emb, "neftune_noise_alpha", None)))

    import tempfile

    with tempfile.TemporaryDirectory() as out:
        train_sft(model, tokenizer, load_split("train", 8), P, out, peft_config=adapter_config(P, False), callbacks=[Spy()], neftune_noise_alpha=5.0, packing=False)
    hooks, alpha = seen[0]
    assert neftune_post_forward_hook in hooks and alpha == 5.0
    assert neftune_post_forward_hook not in emb._forward_hooks.values() and not hasattr(emb, "neftune_noise_alpha")


def test_training_set_loss_chooses_the_mode_and_weights_by_tokens():
    from utils.experiments.neftune_loss import training_set_loss
    from utils.training import logged_training_loss

    modes = []

    class Model(nn.Module):
        """Every scored position gets logits whose cross-entropy against token 5 is the batch's mean input id."""

        device = torch.device("cpu")

        def forward(self, input_ids, attention_mask, use_cache, logits_to_keep):
            modes.append(self.training)
            per_token = input_ids.float().mean()
            other = torch.log((torch.exp(per_token) - 1) / 5)  # CE = log(1 + 5 e^other) with the target's logit 0
            logits = torch.full((int(logits_to_keep.sum()), 6), other.item())
            logits[:, 5] = 0.0
            return SimpleNamespace(logits=logits)

    batches = [  # loss 1.0 over 2 target tokens, loss 4.0 over 1 target token (labels are shifted by one)
        {"input_ids": torch.ones(1, 3), "attention_mask": torch.ones(1, 3), "labels": torch.tensor([[-100, 5, 5]])},
        {"input_ids": torch.full((1, 3), 4.0), "attention_mask": torch.ones(1, 3), "labels": torch.tensor([[-100, -100, 5]]), "extra": None},
    ]
    model = Model().train()
    trainer = SimpleNamespace(model=model, get_train_dataloader=lambda: batches,
                              state=SimpleNamespace(log_history=[{"loss": 3.0}, {"loss": 2.0}, {"eval_loss": 9.0}, {"loss": 1.0}]))
    assert training_set_loss(trainer) == pytest.approx((1.0 * 2 + 4.0 * 1) / 3)
    assert modes == [False, False], "the clean loss is measured in eval mode"
    assert model.training, "the model's mode is restored"
    model.eval()
    assert training_set_loss(trainer, max_batches=1, train_mode=True) == pytest.approx(1.0)
    assert modes[2:] == [True] and not model.training
    assert logged_training_loss(trainer, last=2) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="no training loss"):
        logged_training_loss(SimpleNamespace(state=SimpleNamespace(log_history=[])))

    # the held-out loss: the eval batches, always in eval mode (noise off), the model's mode restored
    from utils.experiments.neftune_loss import held_out_loss

    modes.clear()
    model.train()
    trainer.eval_dataset, trainer.get_eval_dataloader = object(), lambda: batches[1:]
    assert held_out_loss(trainer) == pytest.approx(4.0)
    assert modes == [False] and model.training
    trainer.eval_dataset = None
    with pytest.raises(ValueError, match="eval_examples"):
        held_out_loss(trainer)


def test_train_sft_tokenizes_held_out_examples_like_training_ones_without_scoring_them():
    import tempfile

    from utils.adapters import adapter_config
    from utils.course_data import load_split
    from utils.models import load_base
    from utils.profiles import get_profile
    from utils.training import train_sft

    P = get_profile("grade").with_(max_steps=1)
    model, tokenizer = load_base(P)
    with tempfile.TemporaryDirectory() as out:
        trainer = train_sft(model, tokenizer, load_split("train", 4), P, out, peft_config=adapter_config(P, False),
                            eval_examples=load_split("validation", 3))
    assert not [e for e in trainer.state.log_history if "eval_loss" in e], "held-out examples are not scored while training"
    batch = next(iter(trainer.get_eval_dataloader()))
    assert batch["input_ids"].shape[0] == 3 and (batch["labels"] != -100).any() and (batch["labels"] == -100).any()


# (name, solution cell, [(old, new), ...], graded cell that must fail)
MISTAKES = [
    ("noise in eval mode too", "neftune_hook",
     [("        if not module.training:\n            return output\n", "")], "test_neftune_hook"),
    ("noise in eval mode (caught by the transformers comparison too)", "neftune_hook",
     [("        if not module.training:\n            return output\n", "")], "test_neftune_matches_transformers"),
    ("scale 1/sqrt(L) only", "neftune_hook",
     [("math.sqrt(length * dim)", "math.sqrt(length)")], "test_neftune_hook"),
    ("scale 1/sqrt(d) only", "neftune_hook",
     [("math.sqrt(length * dim)", "math.sqrt(dim)")], "test_neftune_hook"),
    ("scale 1/sqrt(d) only (caught by the transformers comparison too)", "neftune_hook",
     [("math.sqrt(length * dim)", "math.sqrt(dim)")], "test_neftune_matches_transformers"),
    ("L taken from the batch axis", "neftune_hook",
     [("output.size(1), output.size(2)", "output.size(0), output.size(2)")], "test_neftune_hook"),
    ("Gaussian noise with std a", "neftune_hook",
     [("torch.zeros_like(output).uniform_(-bound, bound)", "torch.randn_like(output) * bound")], "test_neftune_hook"),
    ("Gaussian noise with the uniform's variance", "neftune_hook",
     [("torch.zeros_like(output).uniform_(-bound, bound)", "torch.randn_like(output) * bound / math.sqrt(3)")], "test_neftune_hook"),
    ("Gaussian noise with the uniform's variance (caught by the transformers comparison too)", "neftune_hook",
     [("torch.zeros_like(output).uniform_(-bound, bound)", "torch.randn_like(output) * bound / math.sqrt(3)")], "test_neftune_matches_transformers"),
    ("uniform on [0, a] instead of [-a, a]", "neftune_hook",
     [("uniform_(-bound, bound)", "uniform_(0, bound)")], "test_neftune_hook"),
    ("hook never removed", "neftune_hook",
     [("        handle.remove()\n", "        pass\n")], "test_neftune_hook"),
    ("hook not removed when training raises", "neftune_hook",
     [("    try:\n        yield handle\n    finally:\n        handle.remove()", "    yield handle\n    handle.remove()")], "test_neftune_hook"),
    ("handle not returned", "neftune_hook",
     [("    return embedding.register_forward_hook(hook)", "    embedding.register_forward_hook(hook)")], "test_neftune_hook"),
    ("noise drawn in fp32 (a bf16 embedding's output turns fp32)", "neftune_hook",
     [("torch.zeros_like(output).uniform_(-bound, bound)", "(torch.rand(output.shape) * 2 - 1) * bound")], "test_neftune_hook"),
    ("same noise on every call", "neftune_hook",
     [("        return output + torch.zeros_like(output).uniform_(-bound, bound)",
       "        gen = torch.Generator().manual_seed(0)\n        return output + (torch.rand(output.shape, generator=gen) * 2 - 1) * bound")], "test_neftune_hook"),
]


def _prepare(graded, overrides):
    """The definitions a graded cell needs, executed as the notebook would (a failing cell does not stop nbgrader)."""
    namespace = run_cells(NOTEBOOK, ["setup", "neftune_hook"], overrides=overrides)
    if graded == "test_neftune_matches_transformers":
        run_cells_past_errors(NOTEBOOK, ["transformers_compare"], namespace)  # the comparison's helpers, even when it fails
    return namespace


# Points earned without writing the exercise: each must lose them as a bug does.
SHORTCUTS = [
    shortcut(NOTEBOOK, "transformers' own NEFTune hook", "neftune_hook", """
        from transformers.integrations.neftune import neftune_post_forward_hook

        embedding.neftune_noise_alpha = alpha
        return embedding.register_forward_hook(neftune_post_forward_hook)
    """, "test_neftune_hook"),
]

test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(NOTEBOOK, MISTAKES + SHORTCUTS, _prepare)
