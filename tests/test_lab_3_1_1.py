"""Lab 3.1.1: the solution's LoRA agrees with PEFT, and the graded tests catch real mistakes.

Each mutation below is a plausible student bug applied to the solution's own source. The lab's
graded test cell (hidden tests included) must fail on it, and must pass on the unmodified
solution, so the grading can neither miss the bug nor fail a correct answer.
"""

import copy

import pytest
import torch
import torch.nn as nn

from mistake_table import mistake_table_tests
from tools.notebook_cells import SOLUTIONS, run_cells

NOTEBOOK = SOLUTIONS / "lab-3.1.1-lora-theory.ipynb"
DEFINITIONS = ["setup", "lora_linear", "peft_compare", "inject_lora", "count_parameters", "tiny_llama"]


@pytest.fixture(scope="module")
def solution():
    return run_cells(NOTEBOOK, DEFINITIONS)


@pytest.mark.parametrize("r, alpha, rslora", [(1, 1, False), (4, 12, False), (8, 16, True), (64, 16, True), (16, 32, False)])
def test_solution_lora_matches_peft(solution, r, alpha, rslora):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(r)
    reference = solution["OneLayer"]()
    ours = solution["LoRALinear"](copy.deepcopy(reference.proj), r=r, alpha=alpha, rslora=rslora)
    theirs = get_peft_model(copy.deepcopy(reference), LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], use_rslora=rslora))
    layer = theirs.base_model.model.proj
    # PEFT's own initialisation is Kaiming-uniform too: same bound for A, zeros for B.
    assert torch.all(layer.lora_B["default"].weight == 0) and torch.all(ours.B == 0)
    bound = 1 / 32**0.5
    assert layer.lora_A["default"].weight.abs().max() <= bound and ours.A.abs().max() <= bound
    with torch.no_grad():
        ours.B.normal_()
        layer.lora_A["default"].weight.copy_(ours.A)
        layer.lora_B["default"].weight.copy_(ours.B)
    x = torch.randn(4, 32)
    theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert ours.scaling == pytest.approx(layer.scaling["default"])
    ours.merge()
    layer.merge()
    torch.testing.assert_close(ours.base.weight, layer.base_layer.weight, rtol=1e-5, atol=1e-6)


def test_solution_injection_matches_peft_on_a_llama(solution):
    """Same targets, same trainable count, same function once the adapters hold the same weights."""
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "v_proj", "down_proj"]
    ours = solution["inject_lora"](solution["tiny_llama"](), targets, r=4, alpha=8)
    theirs = get_peft_model(solution["tiny_llama"](), LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    assert solution["count_parameters"](ours)[0] == theirs.get_nb_trainable_parameters()[0]
    peft_layers = {n.removeprefix("base_model.model."): m for n, m in theirs.named_modules() if hasattr(m, "lora_A")}
    ours_layers = {n: m for n, m in ours.named_modules() if isinstance(m, solution["LoRALinear"])}
    assert set(peft_layers) == set(ours_layers)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, mine in ours_layers.items():
            mine.B.normal_()
            peft_layers[name].lora_A["default"].weight.copy_(mine.A)
            peft_layers[name].lora_B["default"].weight.copy_(mine.B)
    ids = torch.randint(0, 64, (2, 9))
    torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, rtol=1e-4, atol=1e-5)


# (name, solution cell, [(old, new), ...], graded cell that must fail)
MISTAKES = [
    ("scaling by alpha instead of alpha/r", "lora_linear",
     [("if rslora else alpha / r", "if rslora else alpha")], "test_lora_linear"),
    ("rsLoRA scaled by alpha/r", "lora_linear",
     [("alpha / math.sqrt(r) if rslora", "alpha / r if rslora")], "test_lora_linear"),
    ("rsLoRA scaled by alpha/r (caught by the PEFT comparison too)", "lora_linear",
     [("alpha / math.sqrt(r) if rslora", "alpha / r if rslora")], "test_lora_matches_peft"),
    ("B initialised randomly", "lora_linear",
     [("torch.zeros(base.out_features, r", "torch.randn(base.out_features, r")], "test_lora_linear"),
    ("A initialised with a unit normal", "lora_linear",
     [("nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))", "nn.init.normal_(self.A)")], "test_lora_linear"),
    ("base weight left trainable", "lora_linear",
     [("base.weight.requires_grad_(False)", "pass")], "test_lora_linear"),
    ("scaling missing from forward", "lora_linear",
     [("result + (self.scaling * update)", "result + (update)")], "test_lora_linear"),
    ("merge applied twice", "lora_linear",
     [("        if self.merged:\n            return\n        self.base.weight +=", "        self.base.weight +=")], "test_lora_linear"),
    ("unmerge does not restore the weight", "lora_linear",
     [("        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)\n", "")], "test_lora_linear"),
    ("dropout applied to the whole output", "lora_linear",
     [("result = self.base(x)", "result = self.dropout(self.base(x))")], "test_lora_linear"),
    ("everything else left trainable after injection", "inject_lora",
     [("        p.requires_grad_(False)\n", "        pass\n")], "test_inject_lora"),
    ("substring instead of suffix matching", "inject_lora",
     [('name == t or name.endswith("." + t)', "t in name")], "test_inject_lora"),
    ("tied lm_head wrapped", "inject_lora",
     [("and module.weight is not tied", "")], "test_inject_lora"),
    ("head skipped by the name lm_head instead of by its tied tensor", "inject_lora",
     [("and module.weight is not tied", 'and name.split(".")[-1] != "lm_head"')], "test_inject_lora"),
    ("targets matched on the last name component only (dotted targets never match)", "inject_lora",
     [('any(name == t or name.endswith("." + t) for t in target_modules)', 'name.split(".")[-1] in target_modules')], "test_inject_lora"),
    ("dropout and rslora not passed on", "inject_lora",
     [("LoRALinear(getattr(parent, child), r=r, alpha=alpha, dropout=dropout, rslora=rslora)", "LoRALinear(getattr(parent, child), r=r, alpha=alpha)")],
     "test_inject_lora"),
    ("tied weight counted twice", "count_parameters",
     [("for p in model.parameters():", "for _, p in model.named_parameters(remove_duplicate=False):"),
      ("if key in seen:", "if False:")], "test_count_parameters"),
]


def _prepare(graded, overrides):
    return run_cells(NOTEBOOK, DEFINITIONS, overrides=overrides)


test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(NOTEBOOK, MISTAKES, _prepare)
