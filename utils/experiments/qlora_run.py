"""Lab 3.1.5's QLoRA run: model specs for the memory planner, 4-bit loading, one measured training run.

The run happens in a fresh process (`utils.experiments.memory_targets` measures peak minus baseline there),
so the code that loads, adapts and trains the model must be importable; the notebook calls the
same functions, so what it measures is what it runs. Sizes come from `get_profile(lab="3.1.5")`.

- `load_config(name)` reads the architecture numbers shipped in `utils/configs/` (the `config.json`
  of Llama-3.1-8B/70B-Instruct on the Hugging Face hub, copied verbatim: no weights).
- `model_spec(...)` builds a model on the meta device (no memory, no download) and counts its
  parameters exactly, with PEFT's own LoRA wrapping for the trainable count.
- `load_4bit`, `add_qlora_adapter`, `train_qlora`: the real run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from utils.course_data import load_split
from utils.course_paths import CONFIGS
from utils.device import use_bf16
from utils.memory_worker import peak_rss_bytes
from utils.models import load_model, load_tokenizer, model_source
from utils.profiles import get_profile
from utils.training import loss_history, train_sft

LORA_TARGETS = "all-linear"  # PEFT: every nn.Linear / Linear4bit except the output head


def load_config(name: str) -> dict:
    """The config.json numbers of a shipped architecture, e.g. "Llama-3.1-70B-Instruct"."""
    path = CONFIGS / f"{name.split('/')[-1]}.json"
    if not path.is_file():
        shipped = sorted(p.stem for p in CONFIGS.glob("*.json"))
        raise FileNotFoundError(f"no architecture config {path.name} in {CONFIGS}; shipped: {shipped}")
    return json.loads(path.read_text())


def config_for(model_id: str) -> dict:
    """Architecture numbers of the checkpoint a run loads: its own config.json (the prepared SmolLM2, or the
    Llama snapshot in the local Hugging Face cache), so a plan describes the model actually trained. Plans
    made before any download use the shipped copies (`load_config`)."""
    return json.loads((Path(model_source(model_id)[0]) / "config.json").read_text())


def build_on_meta(config: dict, dtype=torch.bfloat16):
    """The model's modules with parameters on the meta device: shapes and dtypes, no storage."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**{k: v for k, v in config.items() if k not in ("quantization_config", "_name_or_path")})
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg, dtype=dtype)


def model_spec(config: dict, lora_r: int = 16) -> dict:
    """The numbers the memory planner needs, with parameter counts taken from a meta-device build.

    params_total: every parameter, a tied embedding/head counted once.
    params_linear: weights of the decoder layers' nn.Linear modules (what bitsandbytes quantizes;
        the output head is never quantized and counts as an embedding here).
    params_lora: trainable parameters PEFT creates for LoRA rank `lora_r` on all linear layers.
    """
    from peft import LoraConfig, get_peft_model

    model = build_on_meta(config)
    total = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings()
    linear = sum(
        m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m is not head
    )
    with torch.device("meta"):
        peft_model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    keys = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size", "tie_word_embeddings"]
    spec = {k: config.get(k) for k in keys}
    spec["head_dim"] = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    spec.update(params_total=total, params_linear=linear, params_lora=trainable, lora_r=lora_r)
    return spec


def nf4_config(compute_dtype=None):
    """The QLoRA paper's recipe: NF4 storage, double quantization, 16-bit compute where fast."""
    from transformers import BitsAndBytesConfig

    if compute_dtype is None:
        compute_dtype = torch.bfloat16 if use_bf16() else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_4bit(model_id: str):
    """The model with every decoder linear layer quantized to NF4 while loading (embeddings stay 16/32-bit)."""
    return load_model(model_id, quantization_config=nf4_config())


def add_qlora_adapter(model, r: int, alpha: int, checkpointing: bool):
    """prepare_model_for_kbit_training (freeze, fp32 norms, input grads) + LoRA on all linear layers."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def train_qlora(profile: str, output_dir: str, seed: int = 0) -> dict:
    """Load in 4 bits, add LoRA, train with TRL, save the adapter to output_dir; return what happened.

    Meant to run in its own process (`utils.experiments.memory_targets`), so the process's peak is this run's
    peak. The result is JSON: losses, footprint, trainable count, timings, the settings it ran with.
    """
    P = get_profile(profile, lab="3.1.5")
    started = time.perf_counter()
    model = load_4bit(P.large_model_id)
    tokenizer = load_tokenizer(P.large_model_id)
    load_seconds = time.perf_counter() - started
    peak_after_load = peak_rss_bytes()  # loading (reading and quantizing the checkpoint) vs training, told apart
    footprint = model.get_memory_footprint()
    model = add_qlora_adapter(model, P.lora_r, P.lora_alpha, P.checkpointing)
    trainable, total = model.get_nb_trainable_parameters()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer = train_sft(model, tokenizer, load_split("train", P.train_examples), P, output_dir, seed=seed,
                        optim=P.optimizer, disable_tqdm=True)
    train_seconds = time.perf_counter() - started
    trainer.model.save_pretrained(output_dir)
    steps, losses = loss_history(trainer)
    return {
        "steps": steps,
        "losses": losses,
        "footprint_4bit_bytes": footprint,
        "peak_after_load_bytes": peak_after_load,
        "trainable": trainable,
        "total": total,
        "load_seconds": load_seconds,
        "train_seconds": train_seconds,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
        "settings": {k: getattr(P, k) for k in ("large_model_id", "max_steps", "batch_size", "grad_accum", "optimizer", "checkpointing")},
    }


def load_adapter(model_id: str, adapter_dir: str):
    """The 4-bit base with a saved QLoRA adapter on top (`with model.disable_adapter():` gives the base)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(load_4bit(model_id), adapter_dir)


def sample_linear_weights(model_id: str, count: int, max_elements: int | None = None) -> dict[str, "torch.Tensor"]:
    """`count` decoder linear weights, evenly spaced through the checkpoint, read straight from safetensors.

    Reading single tensors avoids loading the model: on the Spark this samples Llama-3.1-70B's
    bf16 weights without materialising 141 GB. Each tensor is returned flattened as float32,
    cut to its first `max_elements` values (rounded down to whole blocks of 64).
    """
    import re

    from safetensors import safe_open

    directory = Path(model_source(model_id)[0])
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {directory} for {model_id}")
    pattern = re.compile(r"layers\.(\d+)\.(self_attn|mlp)\.\w+_proj\.weight$")
    located = []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            located += [(int(pattern.search(k).group(1)), k, file) for k in handle.keys() if pattern.search(k)]
    if not located:
        raise ValueError(f"{model_id}: no decoder linear weights (layers.N.*_proj.weight) found in {directory}")
    located.sort()
    picks = [located[round(i * (len(located) - 1) / max(count - 1, 1))] for i in range(min(count, len(located)))]
    out = {}
    for _, key, file in picks:
        with safe_open(str(file), framework="pt") as handle:
            tensor = handle.get_tensor(key).float().reshape(-1)
        if max_elements is not None:
            tensor = tensor[: max(64, max_elements // 64 * 64)]
        out[key] = tensor.clone()
    return out
