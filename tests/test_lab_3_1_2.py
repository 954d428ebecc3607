"""Lab 3.1.2: the solution's DoRA agrees with PEFT, and the graded tests catch real mistakes.

The PEFT comparisons run the solution cell's own `DoRALinear` (no reference implementation lives
in `utils`). Each mutation in MISTAKES is a plausible student bug applied to that source; the
named graded cell (hidden tests included) must fail on it and pass on the unmodified solution.
"""

import copy

import pytest
import torch
import torch.nn as nn

from mistake_table import mistake_table_tests
from tools.notebook_cells import SOLUTIONS, run_cells, run_cells_past_errors

NOTEBOOK = SOLUTIONS / "lab-3.1.2-dora-comparison.ipynb"
DEFINITIONS = ["setup", "dora_linear", "peft_compare"]


@pytest.fixture(scope="module")
def solution():
    return run_cells(NOTEBOOK, DEFINITIONS)


def _pair(solution, r, alpha, d_in, d_out, bias, seed):
    """The solution's DoRALinear and PEFT's DoRA layer on one nn.Linear, holding identical weights."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    reference = solution["OneLayer"](d_in, d_out, bias)
    ours = solution["DoRALinear"](copy.deepcopy(reference.proj), r=r, alpha=alpha)
    theirs = get_peft_model(copy.deepcopy(reference), LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], use_dora=True))
    layer = theirs.base_model.model.proj
    # PEFT initialises the same way: magnitude = row norms of W0, B = 0, A within the Kaiming bound.
    torch.testing.assert_close(ours.m, layer.lora_magnitude_vector["default"].weight)
    assert torch.all(layer.lora_B["default"].weight == 0) and torch.all(ours.B == 0)
    bound = 1 / d_in**0.5
    assert layer.lora_A["default"].weight.abs().max() <= bound and ours.A.abs().max() <= bound
    with torch.no_grad():
        ours.B.normal_()
        ours.m.mul_(1 + 0.3 * torch.rand_like(ours.m))
        layer.lora_A["default"].weight.copy_(ours.A)
        layer.lora_B["default"].weight.copy_(ours.B)
        layer.lora_magnitude_vector["default"].weight.copy_(ours.m)
    return ours, theirs, layer


@pytest.mark.parametrize("r, alpha, d_in, d_out, bias", [(1, 1, 32, 24, True), (4, 12, 32, 24, True), (8, 16, 24, 24, False), (16, 32, 16, 48, True), (64, 16, 96, 32, True)])
def test_solution_dora_matches_peft(solution, r, alpha, d_in, d_out, bias):
    ours, theirs, layer = _pair(solution, r, alpha, d_in, d_out, bias, seed=r + d_out)
    x, g = torch.randn(5, 3, d_in), torch.randn(5, 3, d_out)
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    # the same gradients: PEFT detaches the row norm exactly as the solution does
    mine = torch.autograd.grad((y_ours * g).sum(), [ours.A, ours.B, ours.m])
    peft = torch.autograd.grad((y_theirs * g).sum(), [layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.lora_magnitude_vector["default"].weight])
    for a, b in zip(mine, peft):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert ours.scaling == pytest.approx(layer.scaling["default"])
    with torch.no_grad():
        merged = ours.merged_weight()
        layer.merge()
    torch.testing.assert_close(merged, layer.base_layer.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)  # PEFT merged vs ours unmerged


def test_solution_dora_matches_peft_after_training_steps(solution):
    """A few optimizer steps on both, from identical weights, stay identical: the whole update rule agrees."""
    ours, theirs, layer = _pair(solution, 4, 8, 32, 24, True, seed=3)
    peft_params = [layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.lora_magnitude_vector["default"].weight]
    opt_ours = torch.optim.AdamW([ours.A, ours.B, ours.m], lr=1e-2)
    opt_peft = torch.optim.AdamW(peft_params, lr=1e-2)
    for step in range(5):
        x, target = torch.randn(8, 32), torch.randn(8, 24)
        for model, opt in ((ours, opt_ours), (theirs, opt_peft)):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), target).backward()
            opt.step()
    for a, b in zip([ours.A, ours.B, ours.m], peft_params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_adapter_config_differs_only_in_use_dora():
    from utils.adapters import adapter_config
    from utils.profiles import get_profile

    P = get_profile("cpu")
    lora, dora = adapter_config(P, False).to_dict(), adapter_config(P, True).to_dict()
    assert dora.pop("use_dora") is True and lora.pop("use_dora") is False
    assert lora == dora
    assert lora["r"] == P.lora_r and lora["lora_alpha"] == P.lora_alpha and lora["lora_dropout"] == 0.0
    assert lora["target_modules"] == "all-linear"  # PEFT finds every linear layer of the blocks, never the head


@pytest.mark.parametrize("profile", ["grade", "cpu", "spark"])
def test_memory_runs_train_with_the_labs_batch_size(monkeypatch, profile):
    """The lab's batch differs from the profile's; its fresh-process memory runs must train that same batch."""
    from types import SimpleNamespace

    from utils.experiments import memory_targets
    from utils.profiles import get_profile

    calls = []
    finished = SimpleNamespace(state=SimpleNamespace(global_step=3, log_history=[{"train_runtime": 6.0}]))
    monkeypatch.setattr(memory_targets.lora_vs_dora, "train_adapter", lambda *args, **kwargs: calls.append((args, kwargs)) or finished)
    result = memory_targets.TARGETS["lora_vs_dora"](profile, True)
    (P, use_dora), kwargs = calls[0]
    lab = get_profile(profile, lab="3.1.2")
    assert use_dora is True and P.batch_size == lab.batch_size and kwargs == {"seed": 0, "steps": lab.memory_steps}
    assert result["seconds_per_step"] == 2.0


def test_seconds_per_step_needs_a_finished_run():
    from types import SimpleNamespace

    from utils.training import seconds_per_step

    done = SimpleNamespace(state=SimpleNamespace(global_step=4, log_history=[{"loss": 1.0}, {"train_runtime": 10.0}]))
    assert seconds_per_step(done) == 2.5
    with pytest.raises(ValueError, match="not finished"):
        seconds_per_step(SimpleNamespace(state=SimpleNamespace(global_step=0, log_history=[])))


# (name, solution cell, [(old, new), ...], graded cell that must fail)
MISTAKES = [
    ("row norm over the wrong dimension (in the weight norm)", "dora_linear",
     [("return self.direction().norm(dim=1).detach()", "return self.direction().norm(dim=0).detach()")], "test_dora_linear"),
    ("row norm over the wrong dimension (in the magnitude init)", "dora_linear",
     [("weight.detach().norm(dim=1)", "weight.detach().norm(dim=0)")], "test_dora_linear"),
    ("norm over the wrong dimension everywhere", "dora_linear",
     [("return self.direction().norm(dim=1).detach()", "return self.direction().norm(dim=0).detach()"),
      ("weight.detach().norm(dim=1)", "weight.detach().norm(dim=0)"),
      ("(self.m / self.weight_norm()).unsqueeze(1)", "(self.m / self.weight_norm()).unsqueeze(0)")], "test_dora_linear"),
    ("magnitude initialised to ones", "dora_linear",
     [("nn.Parameter(weight.detach().norm(dim=1).clone())", "nn.Parameter(torch.ones(base.out_features))")], "test_dora_linear"),
    ("magnitude initialised from a random weight", "dora_linear",
     [("nn.Parameter(weight.detach().norm(dim=1).clone())", "nn.Parameter(torch.randn_like(weight).norm(dim=1))")], "test_dora_linear"),
    ("scaling missing from the direction", "dora_linear",
     [("self.base.weight + self.scaling * (self.B @ self.A)", "self.base.weight + (self.B @ self.A)")], "test_dora_linear"),
    ("scaling missing (caught by the PEFT comparison too)", "dora_linear",
     [("self.base.weight + self.scaling * (self.B @ self.A)", "self.base.weight + (self.B @ self.A)")], "test_dora_matches_peft"),
    ("norm not detached", "dora_linear",
     [("return self.direction().norm(dim=1).detach()", "return self.direction().norm(dim=1)")], "test_dora_linear"),
    ("norm not detached (caught by the PEFT gradients too)", "dora_linear",
     [("return self.direction().norm(dim=1).detach()", "return self.direction().norm(dim=1)")], "test_dora_matches_peft"),
    ("bias scaled with the magnitude", "dora_linear",
     [("return F.linear(x, self.merged_weight().to(x.dtype), self.base.bias)",
       "return (self.m / self.weight_norm()) * F.linear(x, self.direction().to(x.dtype), self.base.bias)")], "test_dora_linear"),
    ("direction not normalised", "dora_linear",
     [("return (self.m / self.weight_norm()).unsqueeze(1) * self.direction()", "return self.m.unsqueeze(1) * self.direction()")], "test_dora_linear"),
    ("B initialised randomly", "dora_linear",
     [("torch.zeros(base.out_features, r", "torch.randn(base.out_features, r")], "test_dora_linear"),
    ("base weight left trainable", "dora_linear",
     [("base.weight.requires_grad_(False)", "pass")], "test_dora_linear"),
]


def _prepare(graded, overrides):
    """The definitions a graded cell needs, executed as the notebook would (a failing cell does not stop nbgrader)."""
    namespace = run_cells(NOTEBOOK, ["setup", "dora_linear"], overrides=overrides)
    if graded == "test_dora_matches_peft":
        run_cells_past_errors(NOTEBOOK, ["peft_compare"], namespace)  # the comparison's helpers, even when it fails
    return namespace


test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(NOTEBOOK, MISTAKES, _prepare)
