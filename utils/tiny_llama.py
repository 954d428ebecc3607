"""A toy-sized stand-in for Llama 3.1 Instruct, built offline: what the `spark` profile's code meets.

No GPU and no hub are available where the course is built and graded, yet the `spark` profile
loads Llama 3.1, whose tokenizer and template differ from SmolLM2's in ways code can get wrong:
its chat template starts with `{{- bos_token }}` (tokenize the rendered text with special tokens
added and the prompt holds two `<|begin_of_text|>`), turns end in `<|eot_id|>`, there is no pad
token, and its generation config samples. This module rebuilds those parts exactly and the rest
at toy size:

- `llama31_tokenizer()`: a byte-level BPE of a few hundred merges learned from the course's shipped
  data, with Llama 3's pre-tokenizer (its split rule, then bytes) and BPE setting (a word found whole
  in the vocabulary is not merged piece by piece), so llama.cpp's `llama-bpe` pre-tokenizer splits text
  as it does; Llama 3.1's special tokens in Meta's order, its BOS post-processor, and the real chat
  template (`utils/data/llama-3.1-instruct-chat-template.jinja`, source named in the .md next to it).
  Cheap enough to build inside a graded notebook cell.
- `tiny_llama31(...)`: a randomly initialised `LlamaForCausalLM` with Llama 3.1's configuration
  choices (grouped-query attention, `llama3` rope scaling, untied head, three stop tokens) and
  4 layers of width 256 (about 3.6 million parameters), every matrix's rows a multiple of 256 as in
  the 8B model, so llama.cpp's k-quants (Q4_K, Q6_K) apply to it as they do there. It learns nothing
  useful; it runs every code path the 8B model runs.
- `save_tiny_llama31(directory)`: model, tokenizer and generation config as a hub snapshot holds them.

Nothing here is Meta's model or weights.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

TEMPLATE_FILE = "llama-3.1-instruct-chat-template.jinja"
# The first eleven of Llama 3.1's 256 special tokens, in Meta's order (ids 128000-128010 there).
SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
)
BOS, EOS = "<|begin_of_text|>", "<|eot_id|>"  # the Instruct tokenizer_config's bos_token and eos_token
STOP_TOKENS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")  # generation_config.json's eos_token_id list
BPE_VOCAB = 768  # byte alphabet (256) + merges; the special tokens come after
# Llama 3's split rule (tokenizer.json's pre_tokenizer, the rule llama.cpp implements as `llama-bpe`): contractions,
# letters with one leading non-letter, numbers in groups of at most three digits, punctuation runs, line breaks, spaces.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                r"|\s+(?!\S)|\s+")
LLAMA_CPP_PRE = "llama-bpe"  # llama.cpp's name for that pre-tokenizer (GGUF tokenizer.ggml.pre)


def chat_template() -> str:
    return resources.files("utils.data").joinpath(TEMPLATE_FILE).read_text()


def _training_text():
    """Every line of the course's shipped JSONL files: the vocabulary fits the course task."""
    for entry in sorted(resources.files("utils.data").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".jsonl"):
            yield from entry.read_text().splitlines()


@functools.lru_cache(maxsize=None)
def _tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))  # as Llama 3's tokenizer.json, and llama.cpp for llama-bpe
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_training_text(), trainer=trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    return tok.to_str()


def llama31_tokenizer(vocab_size: int = BPE_VOCAB):
    """A fresh `PreTrainedTokenizerFast` configured as Llama-3.1-Instruct's (no pad token, as shipped)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size)),
        bos_token=BOS, eos_token=EOS, chat_template=chat_template(), model_max_length=131072,
    )


def tiny_llama31_config(tokenizer):
    """Llama 3.1's architecture choices at toy size, ids taken from `tokenizer`."""
    from transformers import LlamaConfig

    return LlamaConfig(
        # 4 layers of width 256, MLP 3x wide (Llama's is 3.5x, 14336 / 4096; 3x keeps its rows a multiple of 256, as
        # 14336 is, so llama.cpp's k-quants with their 256-weight super-blocks apply): the decoder's linear layers hold
        # most weights, as in the real model, so 4-bit quantization shrinks the model as it does the 8B and 70B
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64,  # grouped-query attention, 2 queries per key/value head
        max_position_embeddings=131072, rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS],
    )


def tiny_llama31(tokenizer, seed: int = 0, dtype=None):
    """A randomly initialised LlamaForCausalLM (bf16, as Meta ships the weights, unless `dtype` says otherwise)."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    config = tiny_llama31_config(tokenizer)
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.bfloat16 if dtype is None else dtype)
    # Llama-3.1-Instruct's generation_config.json samples: greedy code must ask for greedy decoding.
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               do_sample=True, temperature=0.6, top_p=0.9)
    return model


def save_tiny_llama31(directory, seed: int = 0) -> None:
    """config.json, generation_config.json, model.safetensors and the tokenizer files, as a snapshot holds them."""
    tokenizer = llama31_tokenizer()
    model = tiny_llama31(tokenizer, seed=seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    with open(f"{directory}/tiny_llama.json", "w") as f:  # says what this snapshot is, for anyone who finds it
        json.dump({"built_by": "utils.tiny_llama", "not": "Meta's weights", "seed": seed}, f)


def vocab_fingerprint(tokenizer) -> str:
    """sha256 of a tokenizer's vocabulary (special tokens included): tells the toy's tokenizer from any other."""
    import hashlib

    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
