"""What this machine can do, and how much of it the course's LoRA training uses (`make bench`).

    python -m tools.bench            # about 2 minutes on a 2-core CPU
    python -m tools.bench --fast     # seconds: tiny sizes, for the test suite (numbers not meaningful)
    COURSE_PRECISION=fp32 python -m tools.bench   # what a laptop without native bf16 sees

It prints, for the CPU (or GPU) it runs on:
1. the measured matrix-multiply rate in fp32 and in bf16 (square matmuls, best of several);
2. the course's LoRA training step (SmolLM2, r and alpha of the cpu profile, all linear layers,
   8 course examples, the course's precision) in three forms on the same batch: a plain PyTorch
   loop, the course trainer (`utils.training.train_sft`), and TRL's SFTTrainer with its default
   fused-head loss, as seconds per step, tokens per second and model FLOPs per second;
3. Lab 3.1.1's from-scratch LoRA (the solution's `LoRALinear` and `inject_lora`) next to PEFT's on
   the same batch and loop (goal: at most 1.1x PEFT's step time).

Model FLOPs per token for LoRA are 4 x parameters: 2 for the forward pass and 2 for the gradient
with respect to the activations in the backward pass; the frozen weights need no weight gradient
(PaLM's 6N counts that third term, which LoRA skips but for its small adapters). The share of the
measured fp32 (or bf16) matmul rate says how close training comes to what the hardware does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

BENCH_PROFILE = "cpu"  # fixed, not a default: the benchmark always times the cpu profile's LoRA step, on any machine
STEP_KEYS = {"plain loop, PEFT LoRA": "plain_peft", "plain loop, Lab 3.1.1 LoRALinear": "plain_scratch",  # run-report names
             "course trainer (utils.training)": "course_trainer", "TRL SFTTrainer, default loss": "trl_default_loss"}
SIZES = {"full": dict(matmul=1024, matmul_repeats=5, batch=8, steps=5, warmup=1),
         "fast": dict(matmul=128, matmul_repeats=2, batch=2, steps=1, warmup=1)}


@dataclass
class StepTiming:
    name: str
    seconds_per_step: float
    tokens_per_step: int  # padded tokens: what the matrix multiplies actually process
    real_tokens_per_step: int
    model_flops_per_step: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.seconds_per_step

    @property
    def flops_per_second(self) -> float:
        return self.model_flops_per_step / self.seconds_per_step


@dataclass
class Report:
    device: str
    precision: str
    matmul_gflops: dict[str, float]
    steps: list[StepTiming] = field(default_factory=list)

    def step(self, name: str) -> StepTiming:
        return next(s for s in self.steps if s.name == name)

    def to_dict(self) -> dict:
        out = asdict(self)
        for s, d in zip(self.steps, out["steps"]):
            d.update(tokens_per_second=s.tokens_per_second, gflops_per_second=s.flops_per_second / 1e9)
        return out


def matmul_gflops(dtype, n: int, repeats: int) -> float:
    """Best-of-`repeats` rate of an n x n x n matrix multiply, in GFLOP/s (2 n^3 flops each)."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = torch.randn(n, n, device=dev).to(dtype), torch.randn(n, n, device=dev).to(dtype)
    torch.mm(a, b)  # warm-up: thread pool, kernels
    best = float("inf")
    for _ in range(repeats):
        if dev == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        torch.mm(a, b)
        if dev == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def course_batch(model, tokenizer, profile, size: int):
    """`size` training examples exactly as the course trainer batches them (its own collator, completion-only labels)."""
    from utils.course_data import load_split
    from utils.training import course_dataset, course_sft_trainer_class, sft_config

    examples = load_split("train")[:size]
    with tempfile.TemporaryDirectory(prefix="bench-") as out:
        trainer = course_sft_trainer_class()(model=model, args=sft_config(profile.with_(batch_size=size), out),
                                             train_dataset=course_dataset(examples), processing_class=tokenizer)
        batch = next(iter(trainer.get_train_dataloader()))
    return examples, {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}


def time_plain_loop(model, batch, steps: int, warmup: int, bf16: bool) -> float:
    """Seconds per optimizer step of forward, backward and AdamW, on the same batch every step."""
    import contextlib

    import torch

    model.train()
    dev = next(model.parameters()).device
    batch = {k: v.to(dev) for k, v in batch.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_trainer(model, tokenizer, examples, profile, steps: int, warmup: int, default_trl_loss: bool) -> float:
    """Seconds per step of the course trainer (or TRL's own SFTTrainer) on `examples`, batch = all of them."""
    from transformers import TrainerCallback

    from utils.training import course_dataset, course_sft_trainer_class, sft_config

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.started)

    if default_trl_loss:
        from trl import SFTTrainer as trainer_class
    else:
        trainer_class = course_sft_trainer_class()
    clock = StepClock()
    run = profile.with_(max_steps=warmup + steps, batch_size=len(examples), logging_steps=warmup + steps)
    with tempfile.TemporaryDirectory(prefix="bench-") as out:
        trainer = trainer_class(model=model, args=sft_config(run, out), train_dataset=course_dataset(examples * (warmup + steps)),
                                processing_class=tokenizer, callbacks=[clock])
        trainer.train()
    return statistics.median(clock.times[warmup:])


def lora_model(kind: str, profile):
    """SmolLM2 with LoRA on all linear layers: PEFT's, or Lab 3.1.1's from the solution notebook."""
    from utils.models import load_model

    model = load_model(profile.model_id)
    if kind == "peft":
        from peft import LoraConfig, get_peft_model

        return get_peft_model(model, LoraConfig(r=profile.lora_r, lora_alpha=profile.lora_alpha, lora_dropout=0.0,
                                                target_modules="all-linear", task_type="CAUSAL_LM"))
    import math

    import torch

    from tools.notebook_cells import SOLUTIONS, run_cells

    lab = run_cells(SOLUTIONS / "lab-3.1.1-lora-theory.ipynb", ["lora_linear", "inject_lora"],
                    namespace={"nn": torch.nn, "math": math, "torch": torch})
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return lab["inject_lora"](model, targets, r=profile.lora_r, alpha=profile.lora_alpha)


def run(fast: bool = False) -> Report:
    import torch

    from utils.device import describe, use_bf16
    from utils.models import load_base
    from utils.profiles import get_profile

    sizes = SIZES["fast" if fast else "full"]
    profile = get_profile(BENCH_PROFILE)
    bf16 = use_bf16()
    report = Report(device=describe(), precision="bf16" if bf16 else "fp32",
                    matmul_gflops={name: matmul_gflops(dtype, sizes["matmul"], sizes["matmul_repeats"])
                                   for name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16)]})
    model, tokenizer = load_base(profile)
    params = sum(p.numel() for p in model.parameters())  # parameters() lists the tied embedding/head once
    examples, batch = course_batch(model, tokenizer, profile, sizes["batch"])
    del model
    padded, real = batch["attention_mask"].numel(), int(batch["attention_mask"].sum())

    def timing(name: str, seconds: float) -> StepTiming:
        return StepTiming(name, seconds, padded, real, 4.0 * params * padded)

    for kind, name in [("peft", "plain loop, PEFT LoRA"), ("scratch", "plain loop, Lab 3.1.1 LoRALinear")]:
        torch.manual_seed(0)
        report.steps.append(timing(name, time_plain_loop(lora_model(kind, profile), batch, sizes["steps"], sizes["warmup"], bf16)))
    for default_loss, name in [(False, "course trainer (utils.training)"), (True, "TRL SFTTrainer, default loss")]:
        torch.manual_seed(0)
        model = lora_model("peft", profile)
        report.steps.append(timing(name, time_trainer(model, tokenizer, examples, profile, sizes["steps"], sizes["warmup"], default_loss)))
    return report


def render(report: Report) -> str:
    peak = report.matmul_gflops[report.precision]
    lines = [
        f"device: {report.device}",
        f"matrix multiply: fp32 {report.matmul_gflops['fp32']:.1f} GFLOP/s, bf16 {report.matmul_gflops['bf16']:.1f} GFLOP/s",
        f"LoRA training step, SmolLM2-135M, batch of {report.steps[0].real_tokens_per_step} real / "
        f"{report.steps[0].tokens_per_step} padded tokens, {report.precision}:",
        f"  {'':34s} {'s/step':>7s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'of matmul':>9s}",
    ]
    for s in report.steps:
        lines.append(f"  {s.name:34s} {s.seconds_per_step:7.2f} {s.tokens_per_second:9.0f} {s.flops_per_second / 1e9:8.1f} "
                     f"{s.flops_per_second / 1e9 / peak:9.0%}")
    ratio = report.step("plain loop, Lab 3.1.1 LoRALinear").seconds_per_step / report.step("plain loop, PEFT LoRA").seconds_per_step
    lines.append(f"from-scratch LoRA / PEFT step time: {ratio:.2f}x (goal <= 1.1x)")
    extra = report.step("TRL SFTTrainer, default loss").seconds_per_step / report.step("course trainer (utils.training)").seconds_per_step
    lines.append(f"TRL's default fused-head loss / course trainer: {extra:.2f}x")
    return "\n".join(lines)


def record_figures(report: Report, fast: bool) -> None:
    """The measurements as run-report figures (utils.run_report), under stable names."""
    from utils.run_report import record

    for precision, rate in report.matmul_gflops.items():
        record(f"matmul_gflops.{precision}", rate, repeats=SIZES["fast" if fast else "full"]["matmul_repeats"], note="best of repeats")
    for s in report.steps:
        key = STEP_KEYS[s.name]
        record(f"step_seconds.{key}", s.seconds_per_step, unit="s", repeats=SIZES["fast" if fast else "full"]["steps"], note="median")
        record(f"tokens_per_second.{key}", s.tokens_per_second)
        record(f"model_gflops_per_second.{key}", s.flops_per_second / 1e9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="tiny sizes: checks the command in seconds, numbers not meaningful")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--report", metavar="PATH", help="the run report (default runs/cpu/bench.report.json, bench-fast with --fast)")
    args = parser.parse_args(argv)
    from tools.paths import RUNS
    from utils import run_report
    from utils.profiles import get_profile

    path = args.report or RUNS / BENCH_PROFILE / f"bench{'-fast' if args.fast else ''}.report.json"
    with run_report.session("bench", "bench-fast" if args.fast else "bench", get_profile(BENCH_PROFILE), path) as extra:
        report = run(fast=args.fast)
        record_figures(report, args.fast)
        extra.update(device=report.device)
    print(render(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_dict(), f, indent=2)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
