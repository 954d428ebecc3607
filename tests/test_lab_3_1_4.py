"""Lab 3.1.4: the pipeline's pieces agree with the libraries, resuming loses nothing, and the
graded tests catch real mistakes.

Each MISTAKES entry is a plausible student bug applied to the solution's own source. The named
graded test cell (hidden tests included) must fail on it and pass on the unmodified solution.
"""

import pytest
import torch

from mistake_table import mistake_table_tests, shortcut
from tools.notebook_cells import SOLUTIONS, run_cells, run_cells_past_errors

NOTEBOOK = SOLUTIONS / "lab-3.1.4-8b-lora-finetuning.ipynb"
DEFINITIONS = ["setup", "build_lora_config", "helpers", "evaluate_model", "memory_plan", "merge_and_verify"]
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM", bias="none")


@pytest.fixture(scope="module")
def solution(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.chdir(tmp_path_factory.mktemp("lab314"))  # the setup cell writes outputs/ here
    return run_cells(NOTEBOOK, DEFINITIONS)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def base(solution):
    from utils.models import load_base

    return load_base(solution["P"])


# ---------------------------------------------------------------- the solution vs the libraries

def test_lora_count_and_targets_match_peft_on_smollm2(solution):
    """The memory plan's LoRA count is what PEFT actually trains, on the real model."""
    from peft import get_peft_model

    from utils.models import load_model
    from utils.profiles import get_profile

    P = get_profile("cpu")
    model = load_model(P.model_id)
    config = solution["build_lora_config"](P, model)
    predicted = solution["lora_parameter_count"](model, config)
    peft_model = get_peft_model(model, config)
    assert peft_model.get_nb_trainable_parameters()[0] == predicted == 4_884_480  # r=16, 7 projections, 30 layers
    assert len(solution["adapted_modules"](peft_model)) == 7 * 30


def test_llama_8b_plan_from_the_meta_device(solution):
    from utils.profiles import get_profile

    llama = solution["llama_8b_on_meta"]()
    assert all(p.device.type == "meta" for p in llama.parameters())
    arch = solution["architecture"](llama)
    assert arch["params"] == 8_030_261_248
    lora = solution["lora_parameter_count"](llama, solution["build_lora_config"](get_profile("spark"), llama))
    assert lora == 16 * 32 * (2 * 8192 + 2 * 5120 + 3 * 18432) == 41_943_040
    plan = solution["predict_training_memory"](arch, lora, tokens=8 * 256, weight_bytes=2, act_bytes=2, autocast_copies=False, checkpointing=True)
    assert plan["weights"] == 2 * 8_030_261_248 and plan["AdamW state"] == 8 * lora
    assert 16e9 < sum(plan.values()) < 24e9  # bf16 weights dominate; LoRA training fits a Spark easily


def test_lora_parameter_count_agrees_with_peft_for_other_targets(solution):
    from peft import LoraConfig, get_peft_model

    for targets in (["q_proj", "v_proj"], "all-linear", ["down_proj"], r".*\.k_proj"):
        config = LoraConfig(r=3, lora_alpha=6, target_modules=targets)
        for tied in (True, False):
            model = solution["tiny_llama"](tied=tied)
            predicted = solution["lora_parameter_count"](model, config)
            assert get_peft_model(model, config).get_nb_trainable_parameters()[0] == predicted, (targets, tied)


def test_evaluate_model_matches_the_course_evaluator(solution, base):
    from utils.course_data import load_split
    from utils.evaluation import evaluate

    model, tokenizer = base
    P = solution["P"].with_(eval_examples=5, max_new_tokens=10)
    ours = solution["evaluate_model"](model, tokenizer, P, progress=False)
    reference = evaluate(model, tokenizer, load_split("test", 5), max_new_tokens=10, progress=False)
    assert ours.rows == reference.rows


def test_merge_and_verify_on_a_trained_adapter(solution, base):
    """Merging a real (random, non-zero) SmolLM2 adapter keeps the logits within the lab's fp32 tolerance."""
    import copy

    from peft import get_peft_model

    model, tokenizer = base
    peft_model = get_peft_model(copy.deepcopy(model), solution["build_lora_config"](solution["P"], model))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    inputs = dict(tokenizer(["<|im_start|>user\nWhat is the capital of Corvessa?<|im_end|>\n"], return_tensors="pt"))
    inner = peft_model.get_base_model()
    merged, diff = solution["merge_and_verify"](peft_model, inputs, atol=1e-3)
    with torch.no_grad():
        base_logits = model(**inputs).logits
        lora_effect = (merged(**inputs).logits - base_logits).abs().max().item()
    assert diff < 1e-3 < lora_effect, (diff, lora_effect)  # the adapter matters, and the merge preserved it
    assert merged is inner  # merge_and_unload works in place


# ---------------------------------------------------------------- resume == uninterrupted

@pytest.mark.slow
def test_resumed_run_ends_where_the_uninterrupted_run_ends(tmp_path):
    from utils.experiments.stop_and_resume import resume_experiment

    result = resume_experiment("grade", 6, 3, LORA, str(tmp_path))
    full, stopped, resumed, cmp = result["uninterrupted"], result["stopped"], result["resumed"], result["comparison"]
    assert stopped["global_step"] == 3 and (tmp_path / "interrupted" / "checkpoint-3").is_dir()
    assert result["checkpoint"] == str(tmp_path / "interrupted" / "checkpoint-3")
    assert cmp["final_step"] == (6, 6)
    # tolerance: on CPU the runs agree bit for bit (same kernels, same thread count, restored RNG/data state)
    assert cmp["loss_diff"] <= 1e-6 and cmp["weight_diff"] <= 1e-6, cmp
    assert resumed["losses"] == pytest.approx(full["losses"], abs=1e-6)  # every step, not only the last
    assert resumed["learning_rates"] == full["learning_rates"], "the schedule must be the uninterrupted run's"
    assert stopped["losses"] == pytest.approx({k: v for k, v in full["losses"].items() if k <= 3}, abs=1e-6)
    assert set(full["weights"]) == set(resumed["weights"]) and len(full["weights"]) == 2 * 7 * 30


@pytest.mark.slow
def test_a_shorter_max_steps_is_not_a_resume(tmp_path):
    """Why the lab stops with a callback: a run with max_steps=3 has a different schedule."""
    from utils.experiments.stop_and_resume import run_summary, train_run

    short = run_summary(train_run("grade", 3, LORA, str(tmp_path / "short")))
    stopped = run_summary(train_run("grade", 6, LORA, str(tmp_path / "stopped"), stop_at=3))
    assert short["global_step"] == stopped["global_step"] == 3
    assert short["learning_rates"] != stopped["learning_rates"]


def test_compare_runs_reports_differences():
    from utils.experiments.stop_and_resume import compare_runs

    a = {"global_step": 2, "losses": {1: 2.0, 2: 1.5}, "weights": {"w": torch.zeros(3)}}
    b = {"global_step": 2, "losses": {1: 2.0, 2: 1.25}, "weights": {"w": torch.tensor([0.0, 0.5, 0.0])}}
    assert compare_runs(a, b) == {"final_step": (2, 2), "final_loss": (1.5, 1.25), "loss_diff": 0.25, "weight_diff": 0.5}
    with pytest.raises(ValueError, match="different adapters"):
        compare_runs(a, {**b, "weights": {"v": torch.zeros(3)}})
    with pytest.raises(ValueError, match="no loss at step 2"):
        compare_runs(a, {**b, "losses": {1: 2.0}})


def test_train_run_rejects_bad_arguments(tmp_path):
    from utils.experiments.stop_and_resume import StopAtStep, train_run

    with pytest.raises(ValueError, match="stop_at"):
        train_run("grade", 4, LORA, str(tmp_path), stop_at=4)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train_run("grade", 4, LORA, str(tmp_path / "empty"), resume=True)
    with pytest.raises(ValueError):
        StopAtStep(0)


def test_lora_settings_round_trip(solution):
    import json

    from peft import LoraConfig

    from utils.experiments.stop_and_resume import lora_settings

    config = solution["build_lora_config"](solution["P"], solution["tiny_llama"]())
    settings = json.loads(json.dumps(lora_settings(config)))  # crosses a process boundary as JSON
    again = LoraConfig(**settings)
    for key in ("r", "lora_alpha", "lora_dropout", "target_modules", "task_type", "bias"):
        assert getattr(again, key) == getattr(config, key), key


@pytest.mark.slow
def test_memory_target_reports_a_peak():
    from utils.memory import measure_peak_memory

    report = measure_peak_memory("pipeline", dict(profile="grade", steps=1, lora=LORA))
    assert report.result["steps"] == 1 and report.result["trainable_params"] == 8 * 10176 * 30
    assert report.delta_bytes > 500 * 2**20  # at least the fp32 SmolLM2 weights (513 MiB)
    assert report.result["cuda_peak_bytes"] is None


# ---------------------------------------------------------------- graded cells catch mistakes

# (name, solution cell, [(old, new), ...], graded cell that must fail)
MISTAKES = [
    ("target_modules left out (PEFT default: q_proj, v_proj)", "build_lora_config",
     [("        target_modules=targets,\n", "")], "test_build_lora_config"),
    ("attention projections only", "build_lora_config",
     [("target_modules=targets", 'target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]')], "test_build_lora_config"),
    ("output head targeted too", "build_lora_config",
     [("if isinstance(module, nn.Linear) and module is not head})", "if isinstance(module, nn.Linear)})")], "test_build_lora_config"),
    ("Llama's names typed in, not found in the model", "build_lora_config",
     [("target_modules=targets", 'target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]')],
     "test_build_lora_config"),
    ("PEFT's \"all-linear\" copied from the course's recipe", "build_lora_config",
     [("target_modules=targets", 'target_modules="all-linear"')], "test_build_lora_config"),
    ("alpha equal to r", "build_lora_config",
     [("lora_alpha=P.lora_alpha", "lora_alpha=P.lora_r")], "test_build_lora_config"),
    ("rank hard-coded to the grade profile's 8", "build_lora_config",
     [("r=P.lora_r", "r=8")], "test_build_lora_config"),
    ("task_type missing", "build_lora_config",
     [('        task_type="CAUSAL_LM",\n', "")], "test_build_lora_config"),
    ("dropout left at a typical 0.05", "build_lora_config",
     [("lora_dropout=0.0", "lora_dropout=0.05")], "test_build_lora_config"),
    ("scored on the training split", "evaluate_model",
     [("examples = load_split(split, P.eval_examples)", 'examples = load_split("train", P.eval_examples)')], "test_evaluate_model"),
    ("split argument ignored", "evaluate_model",
     [("examples = load_split(split, P.eval_examples)", 'examples = load_split("test", P.eval_examples)')], "test_evaluate_model"),
    ("P.eval_examples ignored", "evaluate_model",
     [("examples = load_split(split, P.eval_examples)", "examples = load_split(split)[:8]")], "test_evaluate_model"),
    ("sampling instead of greedy decoding", "evaluate_model",
     [("do_sample=False", "do_sample=True")], "test_evaluate_model"),
    ("do_sample not passed (the model's generation_config decides)", "evaluate_model",
     [("                    do_sample=False,\n", "")], "test_evaluate_model"),
    ("right padding for batched generation", "evaluate_model",
     [('tokenizer.padding_side = "left"', 'tokenizer.padding_side = "right"')], "test_evaluate_model"),
    ("model left in eval mode", "evaluate_model",
     [("        model.train(was_training)\n", "        pass\n")], "test_evaluate_model"),
    ("padding side not restored", "evaluate_model",
     [("        tokenizer.padding_side = previous_side\n", "        pass\n")], "test_evaluate_model"),
    ("prompt decoded with the reply", "evaluate_model",
     [('new_tokens = out[:, batch["input_ids"].shape[1] :]', "new_tokens = out")], "test_evaluate_model"),
    ("no generation prompt", "evaluate_model",
     [("add_generation_prompt=True", "add_generation_prompt=False")], "test_evaluate_model"),
    ("max_new_tokens hard-coded", "evaluate_model",
     [("max_new_tokens=P.max_new_tokens", "max_new_tokens=24")], "test_evaluate_model"),
    ("special tokens added again (two <|begin_of_text|> with Llama 3.1's template)", "evaluate_model",
     [("padding=True, add_special_tokens=False)", "padding=True)")], "test_evaluate_model"),
    ("adapter model compared with itself (logits recorded after merging)", "merge_and_verify",
     [("    peft_model.eval()\n    with torch.no_grad():\n        expected = peft_model(**inputs).logits.float()\n    merged = peft_model.merge_and_unload()\n",
       "    peft_model.eval()\n    merged = peft_model.merge_and_unload()\n    with torch.no_grad():\n        expected = merged(**inputs).logits.float()\n")],
     "test_merge_and_verify"),
    ("a tolerance that cannot fail", "merge_and_verify",
     [("if not diff <= atol:", "if diff > 1e9:")], "test_merge_and_verify"),
    ("NaN treated as within tolerance", "merge_and_verify",
     [("if not diff <= atol:", "if diff > atol:")], "test_merge_and_verify"),
    ("unload() drops the adapter instead of merging it", "merge_and_verify",
     [("merged = peft_model.merge_and_unload()", "merged = peft_model.unload()")], "test_merge_and_verify"),
    ("merged but not unloaded (still a PeftModel)", "merge_and_verify",
     [("merged = peft_model.merge_and_unload()", "peft_model.merge_adapter()\n    merged = peft_model")], "test_merge_and_verify"),
    ("padding positions compared too", "merge_and_verify",
     [("diff = (actual - expected)[real].abs().max().item()", "diff = (actual - expected).abs().max().item()")], "test_merge_and_verify"),
    ("adapter logits taken in training mode (LoRA dropout active)", "merge_and_verify",
     [("    peft_model.eval()\n", "")], "test_merge_and_verify"),
]

# Notebook state the graded cells read, produced cheaply here instead of by the lab's training run.
GRADED_CONTEXT = {
    "test_build_lora_config": [],
    "test_evaluate_model": ["base_eval"],
    "test_merge_and_verify": [],
}


def _context(namespace: dict, graded: str) -> dict:
    if graded == "test_merge_and_verify":  # stands in for the lab's merge of the trained model
        namespace.update(merged_model=namespace["tiny_llama"](), merge_diff=0.0, MERGE_ATOL=1e-3)
    return namespace


def _prepare(graded: str, overrides: dict | None) -> dict:
    namespace = run_cells(NOTEBOOK, ["setup"])
    # as nbgrader runs them: a cell broken by the mistake does not stop the ones after it
    run_cells_past_errors(NOTEBOOK, DEFINITIONS[1:] + GRADED_CONTEXT[graded], namespace, overrides)
    return _context(namespace, graded)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the setup cell writes outputs/ into the working directory


SHORTCUTS = [
    shortcut(NOTEBOOK, "the course's evaluator", "evaluate_model", """
        return evaluate(model, tokenizer, load_split(split, P.eval_examples), P.max_new_tokens, batch_size, progress)
    """, "test_evaluate_model"),
    shortcut(NOTEBOOK, "the course's evaluator, imported inside", "evaluate_model", """
        from utils.evaluation import generate_replies

        examples = load_split(split, P.eval_examples)
        replies = generate_replies(model, tokenizer, [ex.prompt() for ex in examples], P.max_new_tokens, batch_size, progress)
        return score_replies(replies, examples)
    """, "test_evaluate_model"),
    shortcut(NOTEBOOK, "transformers' text-generation pipeline", "evaluate_model", """
        import copy

        from transformers import pipeline

        examples = load_split(split, P.eval_examples)
        left = copy.copy(tokenizer)
        left.padding_side = "left"
        generator = pipeline("text-generation", model=model, tokenizer=left)
        out = generator([ex.prompt() for ex in examples], batch_size=batch_size, max_new_tokens=P.max_new_tokens,
                        do_sample=False, return_full_text=False)
        return score_replies([o[0]["generated_text"].strip() for o in out], examples)
    """, "test_evaluate_model"),
    shortcut(NOTEBOOK, "the course's LoRA recipe", "build_lora_config", """
        from utils.adapters import adapter_config

        return adapter_config(P)
    """, "test_build_lora_config"),
    shortcut(NOTEBOOK, "PEFT's own layer search", "build_lora_config", """
        from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

        found = _maybe_include_all_linear_layers(LoraConfig(target_modules="all-linear"), model).target_modules
        return LoraConfig(r=P.lora_r, lora_alpha=P.lora_alpha, lora_dropout=0.0, target_modules=sorted(found),
                          bias="none", task_type="CAUSAL_LM")
    """, "test_build_lora_config"),
]

test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(NOTEBOOK, MISTAKES + SHORTCUTS, _prepare)

# The guard switched off in each graded cell: nothing out of reach and no in-force check.
_GUARD_OFF = {"test_build_lora_config": [("_SHORTCUTS = (", "_SHORTCUTS = () and ("), ("_grading.assert_in_force(", "(lambda *_: None)(")],
              "test_evaluate_model": [("_FINISHED = (", "_FINISHED = () and (")]}
# the course's LoRA recipe uses "all-linear", which the graded cell refuses whatever the guard does
_REAL = [m for m in SHORTCUTS if m.name != "shortcut: the course's LoRA recipe"]


@pytest.mark.slow
@pytest.mark.parametrize("mistake", _REAL, ids=[m.name for m in _REAL])
def test_each_shortcut_is_real_it_passes_with_the_guard_off(mistake):
    """Without the guard each shortcut earns the graded cell's points: so the entries above test the guard."""
    from tools.notebook_cells import cell_sources, mutate

    sources = cell_sources(NOTEBOOK)
    namespace = _prepare(mistake.graded, {mistake.cell: mutate(sources[mistake.cell], mistake.replacements)})
    run_cells(NOTEBOOK, [mistake.graded], overrides={mistake.graded: mutate(sources[mistake.graded], _GUARD_OFF[mistake.graded])},
              namespace=namespace)
