"""Decoding speed with repeats, and the two ratios a deployment speed-up is made of (Lab 3.1.10, tools.quant_bench).

"llama.cpp's Q4_K_M decodes Nx as fast as transformers" mixes two changes: the **engine** (transformers in
fp32 against llama.cpp on the same weights in f16) and the **quantization** (llama.cpp f16 against Q4_K_M
on the same engine). One timing of each says neither. Here every engine is timed `repeats` times,
interleaved (repeat r times every engine once, in an order that rotates), so slow phases of a shared
machine fall on all of them alike; a ratio is taken within each repeat and summarised by its median,
min-max and quartiles.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Spread:
    """A median with its spread over repeats (min, max, quartiles) and the samples themselves."""

    median: float
    min: float
    max: float
    q1: float
    q3: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples) -> "Spread":
        values = [float(v) for v in samples]
        if not values:
            raise ValueError("a spread needs at least one sample")
        if len(values) == 1:
            q1 = q3 = values[0]
        else:  # "inclusive": quartiles inside the observed range, as for a small number of repeats
            q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(statistics.median(values), min(values), max(values), q1, q3, tuple(values))

    def text(self, fmt: str = ".1f") -> str:
        """'12.3 (11.9-12.8, n=5)': the median, then min-max over the repeats."""
        return f"{self.median:{fmt}} ({self.min:{fmt}}-{self.max:{fmt}}, n={len(self.samples)})"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["samples"] = list(self.samples)
        return out


def paired_ratio(numerator: list[float], denominator: list[float]) -> Spread:
    """numerator[r] / denominator[r] for every repeat r (both timed within the same repeat)."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"paired ratios need equally many repeats on both sides ({len(numerator)} vs {len(denominator)})")
    return Spread.of([a / b for a, b in zip(numerator, denominator)])


def hf_decode_speed(model, ids: list[int], n_tokens: int) -> float:
    """Tokens/s of transformers' greedy decoding after the prompt: n_tokens one-token forward passes with the KV cache.

    The prompt's forward pass (the prefill) is not timed, as in `llama_decode_speed`, so both sides time the same
    work: one token in, the next token's logits out, the arg-max taken. (Timing generate(n) - generate(1) instead
    subtracts two noisy wall times and went negative for short replies on a busy 2-core machine.)
    """
    import torch

    inputs = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.no_grad():
        out = model(inputs, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        started = time.perf_counter()
        for _ in range(n_tokens):
            out = model(token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        elapsed = time.perf_counter() - started
    return n_tokens / elapsed


def llama_decode_speed(llm, ids: list[int], n_tokens: int) -> float:
    """Tokens/s of llama.cpp's greedy decoding after the prompt: n_tokens evaluated one by one, never stopping early."""
    import numpy as np

    llm.reset()
    llm.eval(ids)
    started = time.perf_counter()
    for _ in range(n_tokens):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    return n_tokens / (time.perf_counter() - started)


def measure(engines: dict[str, Callable[[], float]], repeats: int, progress: bool = True, warmup: bool = True) -> dict[str, list[float]]:
    """Call every engine's timing function `repeats` times, interleaved; returns name -> samples (in repeat order).

    Repeat r starts at engine r (mod the number of engines), so no engine is always first after a pause.
    One untimed call per engine first (warmup): thread pools, caches, lazy initialisation.
    """
    from tqdm.auto import tqdm

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    names = list(engines)
    if warmup:
        for name in names:
            engines[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    with tqdm(total=repeats * len(names), desc="decode speed", disable=not progress, leave=False) as bar:
        for r in range(repeats):
            for k in range(len(names)):
                name = names[(r + k) % len(names)]
                samples[name].append(engines[name]())
                bar.update(1)
    return samples


def speed_ratios(samples: dict[str, list[float]], transformers: str, f16: str = "f16") -> dict[str, Spread]:
    """The engine ratio (llama.cpp f16 / transformers) and each quantization ratio (file / f16), each within repeats.

    Keys: "engine: f16 vs <transformers>", "quantization: <file> vs f16" for every other llama.cpp file, and
    "total: <file> vs <transformers>" (= engine x quantization, what a single "x as fast" figure would quote).
    """
    for name in (transformers, f16):
        if name not in samples:
            raise KeyError(f"no speed samples for {name!r}; have {sorted(samples)}")
    out = {f"engine: {f16} vs {transformers}": paired_ratio(samples[f16], samples[transformers])}
    files = [n for n in samples if n not in (transformers, f16)]
    for name in files:
        out[f"quantization: {name} vs {f16}"] = paired_ratio(samples[name], samples[f16])
    for name in files:
        out[f"total: {name} vs {transformers}"] = paired_ratio(samples[name], samples[transformers])
    return out
