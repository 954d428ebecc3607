"""Memory measurements that mean something.

A process's peak resident memory never goes down: once a notebook has loaded one model, every
later "peak" reads at least that high, whatever the next configuration really needs. So each
configuration is measured in a fresh Python subprocess (`utils.memory_worker`), which reports
its peak before and after calling the function under test.

Linux caveat, handled here: `resource.getrusage(...).ru_maxrss` survives `exec`, so a child
started from a notebook that once held 2 GiB reports a 2 GiB peak before doing anything. The
worker therefore reads the kernel's high-water mark of its own address space (VmHWM in
/proc/self/status), which starts fresh at exec, and only falls back to ru_maxrss elsewhere.

What can be measured is listed, by name, in one registry (`utils.experiments.memory_targets`, imported
only by the worker, by name, so this module never imports an experiment), whose
docstring carries the two habits that make targets honest: heavy libraries imported at its top,
so they land in the baseline rather than the delta, and the model run at least once inside the
target, because safetensors are memory-mapped and a model that was only loaded has not paged
in all its weights yet (a bare SmolLM2 load peaks well below its 513 MiB footprint).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from utils.course_paths import REPO
from utils.memory_worker import REPORT_MARKER, encode_profile  # the worker's result line; a Profile across the pipe

MiB = 2**20
GiB = 2**30
UNITS_NOTE = (
    "1 GB = 10**9 bytes (decimal: spec sheets, disk sizes); 1 GiB = 2**30 bytes = 1.074 GB "
    "(binary: what this course prints). The 134.5M-parameter SmolLM2 in float32 is 538 MB = 513 MiB."
)
WORKER_MODULE = "utils.memory_worker"
COURSE_TARGETS = "utils.experiments.memory_targets"  # imported by the worker, by name


def logits_bytes(tokens: int, vocab: int, act_bytes: int) -> int:
    """The course's one formula for the loss's share of a training step: tokens x vocab x (act_bytes + 8).

    The logits in the compute dtype (act_bytes each), their fp32 upcast for the loss (4) and the fp32
    log-softmax kept for the backward pass (4). Labs 3.1.4 and 3.1.5 plan with it. It counts every
    position: an upper bound for the course trainer, which projects onto the vocabulary only where
    the next token is a reply token (`utils.training.reply_token_loss`).
    """
    return tokens * vocab * (act_bytes + 8)


class MemoryMeasurementError(RuntimeError):
    """The measured function (or its import) failed in the worker; carries the worker's traceback."""


@dataclass
class MemoryReport:
    """Peak resident memory of one fresh process, before and after calling the target."""

    baseline_bytes: int  # peak after interpreter start and importing the target's module
    peak_bytes: int  # peak after the call returned
    delta_bytes: int  # peak - baseline: what the call itself added at its worst moment
    result: Any  # whatever the target returned (JSON round-tripped)
    seconds: float  # wall time of the call alone
    target: str = ""

    def summary(self) -> str:
        return (
            f"{self.target or 'target'}: peak {format_bytes(self.peak_bytes)} "
            f"(baseline {format_bytes(self.baseline_bytes)}, +{format_bytes(self.delta_bytes)}) "
            f"in {self.seconds:.1f} s"
        )


def format_bytes(n: float) -> str:
    """Binary units, so numbers agree with `free -h`, htop and PyTorch (see UNITS_NOTE)."""
    if abs(n) >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / MiB:.1f} MiB"


def _worker_pythonpath() -> str:
    """The parent's sys.path, so any target importable here is importable in the worker."""
    entries = [str(REPO)]  # the directory holding `utils`
    entries += [os.getcwd() if p == "" else p for p in sys.path]
    entries += os.environ.get("PYTHONPATH", "").split(os.pathsep)
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry and entry not in seen:
            seen.add(entry)
            unique.append(entry)
    return os.pathsep.join(unique)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def measure_peak_memory(target: str, kwargs: dict | None = None, timeout: float = 1800, registry: str = COURSE_TARGETS) -> MemoryReport:
    """Call the registered `target` with `kwargs` in a fresh process; report its memory.

    `target` is a name in the registry's TARGETS (the course's: `utils.experiments.memory_targets`). kwargs
    must be JSON-serialisable (they cross a process boundary), except that a Profile may be passed
    as is: send the notebook's `P` itself, not `P.name`, so the worker runs with every change the
    notebook made (`P.with_(...)`) instead of resolving the profile again. What the target prints to
    stdout is echoed here; if it raises, MemoryMeasurementError carries its traceback.
    """
    try:
        payload = json.dumps({"registry": registry, "target": target, "kwargs": kwargs or {}}, default=encode_profile)
    except TypeError as err:
        raise TypeError(f"kwargs for {target} must be JSON-serialisable: {err}") from err

    env = dict(os.environ, PYTHONPATH=_worker_pythonpath())
    try:
        proc = subprocess.run(
            [sys.executable, "-m", WORKER_MODULE],
            input=payload,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as err:
        raise TimeoutError(f"{target} did not finish within {timeout} s (the worker was killed)") from err

    report = None
    other_lines = []
    for line in proc.stdout.splitlines():
        if line.startswith(REPORT_MARKER):
            report = json.loads(line[len(REPORT_MARKER) :])
        else:
            other_lines.append(line)

    if report is not None and "error" in report:
        raise MemoryMeasurementError(f"{target} failed in the memory worker:\n{report['error']}")
    if proc.returncode != 0 or report is None:
        hint = " (killed by a signal: out of memory?)" if proc.returncode < 0 else ""
        raise MemoryMeasurementError(
            f"the memory worker for {target} exited with code {proc.returncode}{hint} and no report.\n"
            f"stderr:\n{_tail(proc.stderr)}\nstdout:\n{_tail(proc.stdout)}"
        )
    echoed = "\n".join(other_lines).strip("\n")
    if echoed.strip():
        print(echoed)
    baseline, peak = int(report["baseline_bytes"]), int(report["peak_bytes"])
    return MemoryReport(
        baseline_bytes=baseline,
        peak_bytes=peak,
        delta_bytes=peak - baseline,
        result=report.get("result"),
        seconds=float(report["seconds"]),
        target=target,
    )


def model_footprint_bytes(model) -> int:
    """Bytes held by a model's parameters and buffers, each piece of memory counted once.

    Tied weights (SmolLM2's input embedding is its output layer) share storage; counting them
    twice would overstate the model by 113 MiB. Agrees with transformers' get_memory_footprint
    on untied models. Tensors without real storage (meta device) are counted by size.
    """
    spans: dict[tuple, list[tuple[int, int]]] = {}
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        nbytes = tensor.nelement() * tensor.element_size()
        if nbytes == 0:
            continue
        try:
            storage_ptr = tensor.untyped_storage().data_ptr()
            start = tensor.data_ptr()
        except (RuntimeError, NotImplementedError):
            storage_ptr = start = 0
        if storage_ptr == 0 or start == 0:  # meta or otherwise storage-less: no way to share
            total += nbytes
            continue
        spans.setdefault((str(tensor.device), storage_ptr), []).append((start, start + nbytes))
    for intervals in spans.values():  # union of byte ranges within each storage
        end = None
        for lo, hi in sorted(intervals):
            if end is None or lo >= end:
                total += hi - lo
                end = hi
            elif hi > end:
                total += hi - end
                end = hi
    return total
