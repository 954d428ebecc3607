"""Pick the device and the training precision the hardware is actually fast at.

`COURSE_PRECISION=fp32|bf16|auto` overrides the choice (default `auto`). `fp32` lets a machine
with native bf16 measure what a laptop without it will see; `bf16` on a CPU without native
support is allowed but slow (emulated bf16 matrix multiplies ran at ~0.3 GFLOP/s on an AVX2 CPU).
"""

from __future__ import annotations

import os
from pathlib import Path

PRECISION_ENV = "COURSE_PRECISION"
PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 "flags"; Arm lists "bf16" under "Features"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True if the CPU computes in bfloat16 natively (AVX512-BF16 or AMX).

    On such CPUs bf16 autocast trains SmolLM2 LoRA faster than fp32 (the course trainer's step in the kept
    `make bench` reports of a 2-core EPYC, module-3.1/results/epyc-avx512/cpu-{bf16,fp32}/bench.report.json);
    without native support bf16 is emulated and far slower, so we keep fp32.
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def requested_precision(environ: dict | None = None) -> str:
    """The `COURSE_PRECISION` setting: 'auto' (the default), 'fp32' or 'bf16'."""
    environ = os.environ if environ is None else environ
    value = environ.get(PRECISION_ENV, "").strip().lower() or "auto"
    if value not in PRECISIONS:
        raise ValueError(f"{PRECISION_ENV}={value!r} is not a precision; choose one of {', '.join(PRECISIONS)}")
    return value


def use_bf16(environ: dict | None = None) -> bool:
    """Whether training should run in bf16 (autocast on CPU, native on GPU)."""
    requested = requested_precision(environ)
    if requested != "auto":
        return requested == "bf16"
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def describe() -> str:
    import torch

    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    native = "" if torch.cuda.is_available() else f", native bf16: {'yes' if cpu_has_native_bf16() else 'no'}"
    forced = f" (forced by {PRECISION_ENV})" if requested_precision() != "auto" else ""
    return f"{where}{native}; training precision: {'bf16' if use_bf16() else 'fp32'}{forced}"
