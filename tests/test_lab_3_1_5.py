"""Lab 3.1.5: the solution's NF4 agrees with bitsandbytes, the planner's counts are exact, and the
graded tests catch real mistakes.

Everything that compares with a library runs the solution notebook's own cells (no reference
implementation lives in utils). Each MISTAKES entry is a plausible student bug applied to the
solution's source: the named graded cell must fail on it and pass on the unmodified solution.
"""

from utils.quiet import install as quiet_warnings

quiet_warnings()  # first: silences bitsandbytes' CPU `kernels` warning, which importing torch/bitsandbytes would log

import functools

import pytest
import torch

from mistake_table import mistake_table_tests, shortcut
from tools.notebook_cells import SOLUTIONS, run_cells

NOTEBOOK = SOLUTIONS / "lab-3.1.5-70b-qlora-finetuning.ipynb"
DEFINITIONS = ["setup", "nf4_codebook", "quantize_nf4", "dequantize_nf4", "double_quantize", "estimate_memory"]
LLAMA_8B, LLAMA_70B = "Llama-3.1-8B-Instruct", "Llama-3.1-70B-Instruct"


@functools.cache
def _specs():
    from utils.experiments.qlora_run import load_config, model_spec

    return {name: model_spec(load_config(name), lora_r=16) for name in (LLAMA_8B, LLAMA_70B)}


@pytest.fixture(scope="module")
def specs():
    return _specs()


def definitions(specs, overrides=None):
    namespace = {"SPECS": specs}
    return run_cells(NOTEBOOK, DEFINITIONS, overrides=overrides, namespace=namespace)


@pytest.fixture(scope="module")
def solution(specs):
    return definitions(specs)


def unpack(packed):
    return torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)


# --- the solution against bitsandbytes -------------------------------------------------------


def test_codebook_matches_bitsandbytes(solution):
    import bitsandbytes.functional as F

    ours = solution["nf4_codebook"]()
    assert torch.allclose(ours, F.get_4bit_type("nf4", device="cpu"), atol=1e-6, rtol=0)


def _inputs():
    from utils.profiles import SMOLLM2
    from utils.experiments.qlora_run import sample_linear_weights

    torch.manual_seed(0)
    real = torch.cat(list(sample_linear_weights(SMOLLM2, 3, 2**15).values()))
    return {
        "gaussian": torch.randn(128, 192),
        "real SmolLM2 weights": real,
        "heavy tails": torch.distributions.StudentT(2.0).sample((64 * 100,)),
        "bf16": torch.randn(64 * 33, dtype=torch.bfloat16),
    }


@pytest.mark.parametrize("name", list(_inputs()))
def test_quantize_matches_bitsandbytes_except_at_midpoints(solution, name):
    import bitsandbytes.functional as F

    x = _inputs()[name]
    packed, absmax = solution["quantize_nf4"](x)
    ref_packed, state = F.quantize_4bit(x, blocksize=64, quant_type="nf4")
    assert torch.equal(absmax, state.absmax)
    levels = F.get_4bit_type("nf4", device="cpu")
    mids = (levels[1:] + levels[:-1]) / 2
    scaled = (x.float().reshape(-1, 64) / state.absmax[:, None]).reshape(-1)
    near = (scaled[:, None] - mids[None, :]).abs().min(dim=1).values < 1e-6
    assert torch.equal(unpack(packed)[~near], unpack(ref_packed.reshape(-1))[~near])
    ours = solution["dequantize_nf4"](ref_packed.reshape(-1), state.absmax, x.shape)
    state.dtype = torch.float32  # compare in float32, before any rounding to the input's bf16
    torch.testing.assert_close(ours, F.dequantize_4bit(ref_packed, state).reshape(x.shape), rtol=1e-5, atol=1e-6)


def test_first_element_in_the_high_nibble(solution):
    import bitsandbytes.functional as F

    x = torch.tensor([1.0, -1.0] + [0.0] * 62)
    assert solution["quantize_nf4"](x)[0][0].item() == 0xF0
    assert F.quantize_4bit(x, blocksize=64, quant_type="nf4")[0].reshape(-1)[0].item() == 0xF0


def test_double_quantize_matches_compress_statistics(solution):
    """Offset and second-level absmax bit for bit; codes the exact nearest level, so at least as
    close as bitsandbytes' CPU kernel (its approximate binary search misses ~0.2% of values)."""
    import bitsandbytes.functional as F

    torch.manual_seed(1)
    x = torch.randn(700, 64 * 9) * torch.rand(700, 1)
    _, state = F.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)
    absmax = F.quantize_4bit(x, blocksize=64, quant_type="nf4")[1].absmax
    codes, absmax2, offset = solution["double_quantize"](absmax)
    assert torch.equal(offset, state.offset) and torch.equal(absmax2, state.state2.absmax)
    assert torch.equal(state.state2.code, solution["DYNAMIC_MAP"])
    scaled = (absmax - offset) / absmax2.repeat_interleave(256)[: absmax.numel()]
    code = solution["DYNAMIC_MAP"]
    differ = codes != state.absmax
    assert differ.float().mean() < 0.01
    assert torch.all((scaled - code[codes.long()]).abs() <= (scaled - code[state.absmax.long()]).abs() + 1e-7)
    back = solution["double_dequantize"](codes, absmax2, offset)
    ref_back = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    torch.testing.assert_close(back[~differ], ref_back[~differ], rtol=1e-6, atol=1e-7)
    assert solution["constant_bits_per_parameter"](64, True) == pytest.approx(0.127, abs=1e-3)


# --- the planner ----------------------------------------------------------------------------


def test_exact_parameter_counts(specs):
    assert specs[LLAMA_8B]["params_total"] == 8_030_261_248
    assert specs[LLAMA_70B]["params_total"] == 70_553_706_496
    # r * (d_in + d_out) summed over the 7 projections of every layer
    for name, (h, i, layers) in {LLAMA_8B: (4096, 14336, 32), LLAMA_70B: (8192, 28672, 80)}.items():
        per_layer = 16 * ((h + h) * 2 + (h + 1024) * 2 + (h + i) * 3)
        assert specs[name]["params_lora"] == layers * per_layer
        assert specs[name]["params_total"] - specs[name]["params_linear"] == 2 * 128256 * h + (2 * layers + 1) * h


def test_70b_qlora_lands_within_10_percent_of_45_gb(solution, specs):
    plan = solution["estimate_memory"](specs[LLAMA_70B], "qlora", batch_size=1, seq_len=512, checkpointing=True, optimizer="adamw_8bit")
    assert abs(sum(plan.values()) / 45e9 - 1) <= 0.10


def test_smollm2_spec_matches_the_course_model():
    from utils.profiles import SMOLLM2
    from utils.experiments.qlora_run import config_for, model_spec

    spec = model_spec(config_for(SMOLLM2), lora_r=16)
    assert spec["params_total"] == 134_515_008
    assert spec["params_lora"] == 4_884_480  # Lab 3.1.1's number for r=16 on all linear layers


# --- utils.experiments.qlora_run ----------------------------------------------------------------------------


def test_unknown_config_names_the_file_and_the_choices():
    from utils.experiments.qlora_run import load_config

    with pytest.raises(FileNotFoundError, match="Llama-3.1-8B-Instruct"):
        load_config("meta-llama/Llama-9-1T")


def test_run_settings_cover_every_profile():
    from utils.profiles import PROFILES, get_profile

    for name in PROFILES:
        P = get_profile(name, lab="3.1.5")
        assert P.max_steps >= 1 and P.batch_size >= 1 and P.timeout_s > 0
        assert P.optimizer in {"adamw_torch", "paged_adamw_8bit"}
    spark = get_profile("spark", lab="3.1.5")
    assert spark.checkpointing and spark.optimizer == "paged_adamw_8bit" and spark.large_model_id.endswith("70B-Instruct")
    assert not get_profile("cpu", lab="3.1.5").checkpointing and get_profile("cpu", lab="3.1.5").max_steps == 60


def test_nf4_config_is_the_qlora_recipe():
    from utils.experiments.qlora_run import nf4_config

    cfg = nf4_config(torch.bfloat16)
    assert cfg.load_in_4bit and cfg.bnb_4bit_quant_type == "nf4" and cfg.bnb_4bit_use_double_quant
    assert cfg.bnb_4bit_compute_dtype == torch.bfloat16


def test_sample_linear_weights_reads_single_tensors():
    from utils.profiles import SMOLLM2
    from utils.experiments.qlora_run import sample_linear_weights

    weights = sample_linear_weights(SMOLLM2, 5, max_elements=1000)
    assert len(weights) == 5
    assert all(w.dtype == torch.float32 and w.numel() == 960 for w in weights.values())
    assert any("layers.0." in k for k in weights) and any("layers.29." in k for k in weights)


# --- the graded cells catch real mistakes -------------------------------------------------------

# (name, solution cell, [(old, new), ...], graded cell that must fail)
MISTAKES = [
    ("offset argument ignored", "nf4_codebook",
     [("torch.linspace(offset, 0.5, 9,", "torch.linspace(0.9677083, 0.5, 9,"),
      ("torch.linspace(offset, 0.5, 8,", "torch.linspace(0.9677083, 0.5, 8,")], "test_nf4_codebook"),
    ("quantize ignores its code argument (always NF4)", "quantize_nf4",
     [("    code = nf4_codebook() if code is None else code\n", "    code = nf4_codebook()\n")], "test_quantize_nf4"),
    ("dequantize ignores its code argument (always NF4)", "dequantize_nf4",
     [("    code = nf4_codebook() if code is None else code\n", "    code = nf4_codebook()\n")], "test_dequantize_nf4"),
    ("uniform levels instead of normal quantiles", "nf4_codebook",
     [("positive = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])",
       "positive = torch.linspace(1, 0, 9, dtype=torch.float64)[:-1]"),
      ("negative = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])",
       "negative = -torch.linspace(1, 0, 8, dtype=torch.float64)[:-1]")], "test_nf4_codebook"),
    ("symmetric codebook without an exact zero", "nf4_codebook",
     [("torch.zeros(1, dtype=torch.float64), ", "")], "test_nf4_codebook"),
    ("per-tensor instead of per-block scaling", "quantize_nf4",
     [("absmax = blocks.abs().amax(dim=1)", "absmax = blocks.abs().amax().expand(blocks.shape[0])")], "test_quantize_nf4"),
    ("absmax of the signed value", "quantize_nf4",
     [("absmax = blocks.abs().amax(dim=1)", "absmax = blocks.amax(dim=1)")], "test_quantize_nf4"),
    ("wrong nibble order when packing", "quantize_nf4",
     [("packed = (codes[0::2] << 4) | codes[1::2]", "packed = (codes[1::2] << 4) | codes[0::2]")], "test_quantize_nf4"),
    ("wrong nibble order when unpacking", "dequantize_nf4",
     [("torch.stack([packed >> 4, packed & 0x0F], dim=1)", "torch.stack([packed & 0x0F, packed >> 4], dim=1)")], "test_dequantize_nf4"),
    ("double quantization without subtracting the mean", "double_quantize",
     [("offset = absmax.mean()", "offset = absmax.mean() * 0")], "test_double_quantize"),
    ("double quantization in blocks of 64", "double_quantize",
     [("def double_quantize(absmax: torch.Tensor, blocksize: int = 256", "def double_quantize(absmax: torch.Tensor, blocksize: int = 64")],
     "test_double_quantize"),
    ("8 bytes per parameter for 8-bit Adam", "estimate_memory",
     [('"adamw_8bit": 2, "paged_adamw_8bit": 2', '"adamw_8bit": 8, "paged_adamw_8bit": 8')], "test_estimate_memory"),
    ("paged 8-bit Adam counted as 32-bit", "estimate_memory",
     [('"paged_adamw_8bit": 2', '"paged_adamw_8bit": 8')], "test_estimate_memory"),
    ("embeddings and head quantized too", "estimate_memory",
     [('plan["weights"] = n_lin // 2 + n_emb * weight_bytes', 'plan["weights"] = n // 2')], "test_estimate_memory"),
    ("constants without double quantization counted at 1 byte", "estimate_memory",
     [("if double_quant else 4 * blocks", "if double_quant else blocks")], "test_estimate_memory"),
    ("gradient checkpointing ignored", "estimate_memory",
     [("    if checkpointing:\n", "    if False:\n")], "test_estimate_memory"),
    ("LoRA gradients counted for every parameter", "estimate_memory",
     [("plan.update(adapter=4 * n_lora, gradients=4 * n_lora", "plan.update(adapter=4 * n_lora, gradients=n * weight_bytes")],
     "test_estimate_memory"),
]


SHORTCUTS = [
    shortcut(NOTEBOOK, "bitsandbytes' NF4 table", "nf4_codebook", """
        return bnbF.get_4bit_type("nf4", device="cpu")
    """, "test_nf4_codebook"),
    shortcut(NOTEBOOK, "bitsandbytes' quantize_4bit", "quantize_nf4", """
        packed, state = bnbF.quantize_4bit(x.detach().float().reshape(-1, blocksize), blocksize=blocksize, quant_type="nf4")
        return packed.reshape(-1), state.absmax
    """, "test_quantize_nf4"),
    shortcut(NOTEBOOK, "bitsandbytes' dequantize_4bit", "dequantize_nf4", """
        state = bnbF.QuantState(absmax=absmax, shape=torch.Size(shape), code=code, blocksize=blocksize, quant_type="nf4",
                                dtype=torch.float32)
        return bnbF.dequantize_4bit(packed.reshape(-1, 1), state)
    """, "test_dequantize_nf4"),
    shortcut(NOTEBOOK, "bitsandbytes' quantize_blockwise", "double_quantize", """
        offset = absmax.mean()
        codes, state = bnbF.quantize_blockwise(absmax.float() - offset, code=code, blocksize=blocksize)
        return codes, state.absmax, offset
    """, "test_double_quantize"),
]

# --- the QLoRA-run cell holds the planner to the real 4-bit model ------------------------------------------


@functools.cache
def _qlora_run() -> dict:
    """The solution's measured run under the grade profile (a fresh training process) and the model it saved, once."""
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, {"COURSE_PROFILE": "grade"}):
        namespace = definitions(_specs())
        return run_cells(NOTEBOOK, ["qlora-run", "footprint"], namespace=namespace)


PLANNER_MISTAKES = {  # each returns positive numbers, which is all the QLoRA-run cell used to ask of a planner
    "adapter counted in bf16": [("plan.update(adapter=4 * n_lora,", "plan.update(adapter=2 * n_lora,")],
    "constants without double quantization": [("if double_quant else 4 * blocks", "if False else 4 * blocks")],
    "embeddings and head quantized too": [('plan["weights"] = n_lin // 2 + n_emb * weight_bytes', 'plan["weights"] = n // 2')],
}


@pytest.mark.slow
def test_qlora_run_cell_passes_on_the_solution():
    run_cells(NOTEBOOK, ["test_qlora_run"], namespace=dict(_qlora_run()))


@pytest.mark.slow
@pytest.mark.parametrize("mistake", sorted(PLANNER_MISTAKES))
def test_qlora_run_cell_catches_a_wrong_planner(mistake):
    from tools.notebook_cells import cell_sources, mutate

    wrong = {"estimate_memory": mutate(cell_sources(NOTEBOOK)["estimate_memory"], PLANNER_MISTAKES[mistake])}
    namespace = run_cells(NOTEBOOK, ["estimate_memory", "footprint"], overrides=wrong, namespace=dict(_qlora_run()))
    with pytest.raises(AssertionError):
        run_cells(NOTEBOOK, ["test_qlora_run"], namespace=namespace)


test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(
    NOTEBOOK, MISTAKES + SHORTCUTS, lambda graded, overrides: definitions(_specs(), overrides))
