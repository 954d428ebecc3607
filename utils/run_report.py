"""Run reports: what a headless run ran with and what it measured, as one small JSON file.

Why: a number quoted in a document is only checkable if the run it came from is kept. A report
holds the resolved profile (every field), the precision, the machine (CPU model and flags, thread
counts), library versions, the git commit, the wall time, and each figure the run measured under a
stable name (`figures`), so a document can cite `<report>#<figure name>` and a test can compare.

Who writes one: `tools.run_lab` (one per lab run), `tools.quickstart` and `tools.bench`. A lab
records a figure with one call,

    from utils.run_report import record
    record("heldout_accuracy_after", 0.75, n=20)

which costs a name check when no report is being written (a notebook opened in JupyterLab). While
one is, the path of the run's figures file is in COURSE_RUN_REPORT (set by tools.run_lab in the
kernel's own environment, which every process the kernel starts inherits) or, for a run inside this
process, set by `collecting`; each call appends one JSON line there, and the runner folds the lines
into the report when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from utils.course_paths import REPO

REPORT_ENV = "COURSE_RUN_REPORT"  # the figures file of the run in progress (JSON lines)
SCHEMA = 1
LIBRARIES = ("torch", "transformers", "peft", "trl")
FIGURE_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")  # e.g. heldout_accuracy_after, step_seconds.peft
META = {"n": int, "repeats": int, "unit": str, "note": str}  # what may accompany a figure
SPEED_FLAGS = re.compile(r"(sse4_2|avx\w*|amx\w*|fma|f16c|bf16|asimd\w*|sve\w*|neon|i8mm|fp16)$")  # flags that decide speed

_collecting: Path | None = None  # set by `collecting` for a run inside this process


def _figures_file() -> str | None:
    return str(_collecting) if _collecting is not None else os.environ.get(REPORT_ENV) or None


def _number(value: Any, name: str):
    """A JSON-safe number (or list of them); NaN and infinities become None (JSON has no such numbers)."""
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_number(v, name) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(f"run report figure {name!r}: value must be a number, a bool or a list of numbers, got {type(value).__name__}")


def record(name: str, value: Any, **meta) -> None:
    """Record the figure `name` (a number or list of numbers) in the run report, if one is being written.

    meta: n (sample size of an accuracy or mean), repeats (timings), unit ("s", "bytes", ...), note.
    The same name recorded again replaces the earlier value (a re-run cell).
    """
    if not isinstance(name, str) or not FIGURE_NAME.fullmatch(name):
        raise ValueError(f"run report figure name {name!r}: use lower-case words joined by _ (and . for groups), e.g. 'heldout_accuracy'")
    unknown = sorted(set(meta) - set(META))
    if unknown:
        raise ValueError(f"run report figure {name!r}: unknown detail(s) {unknown}; known: {sorted(META)}")
    path = _figures_file()
    if path is None:
        return
    entry = {"kind": "figure", "name": name, "value": _number(value, name)}
    for key, kind in META.items():
        if meta.get(key) is not None:
            entry[key] = kind(meta[key])
    _append(path, entry)


def note_profile(profile) -> None:
    """Note the profile a lab resolved, with the precision and threads its process trains with (get_profile calls this)."""
    path = _figures_file()
    if path is None:
        return
    from utils.device import requested_precision, use_bf16

    entry = {"kind": "profile", "profile": profile.to_dict(), "precision": "bf16" if use_bf16() else "fp32",
             "precision_forced": requested_precision() != "auto"}
    with contextlib.suppress(ImportError):
        import torch

        entry["torch_threads"] = torch.get_num_threads()
    _append(path, entry)


def _append(path: str, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def read_figures_file(path: Path) -> tuple[dict[str, dict], list[dict]]:
    """The figures (name -> {"value", ...}, the last of each name) and the profile notes in a figures file."""
    figures, profiles = {}, []
    if not Path(path).exists():
        return figures, profiles
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err})") from err
        if entry.get("kind") == "figure":
            figures[entry["name"]] = {k: v for k, v in entry.items() if k not in ("kind", "name")}
        elif entry.get("kind") == "profile":
            profiles.append(entry)
    return figures, profiles


@contextlib.contextmanager
def collecting(path: Path) -> Iterator[Path]:
    """Within the block, `record` in this process appends to `path` (a run such as the quickstart's)."""
    global _collecting
    previous, _collecting = _collecting, Path(path)
    try:
        yield Path(path)
    finally:
        _collecting = previous


def record_eval(prefix: str, result) -> None:
    """Record an evaluation (utils.evaluation.EvalResult) as `<prefix>_fact_accuracy` and `<prefix>_format_validity`, with n."""
    record(f"{prefix}_fact_accuracy", result.fact_accuracy, n=result.n)
    record(f"{prefix}_format_validity", result.format_validity, n=result.n)


@contextlib.contextmanager
def session(kind: str, subject: str, profile, path: Path, **extra) -> Iterator[dict]:
    """A run inside this process (quickstart, bench) with its report written to `path` at the end, also on failure.

    `profile` is the run's profile as resolved where it starts; figures recorded in the block land in the report.
    Yields a dict whose items are added to the report (e.g. the run's own summary).
    """
    import tempfile

    added: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="run-report-") as tmp:
        figures = Path(tmp) / "figures.jsonl"
        figures.touch()
        started, clock = now(), time.perf_counter()
        status, error = "ok", None
        try:
            with collecting(figures):
                yield added
        except BaseException as err:
            status, error = "failed", f"{type(err).__name__}: {err}"
            raise
        finally:
            report = build(kind, subject, profile, figures, started, time.perf_counter() - clock, status=status, error=error,
                           **extra, **added)
            write(report, path)
            print(f"run report: {path}" + (f" ({report['error']})" if report["status"] != "ok" else ""), flush=True)


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU's model name and its speed-relevant flags (SIMD, bf16, AMX), from /proc/cpuinfo where there is one."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.exists() else ""
    model, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and model is None:
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(f for f in value.split() if SPEED_FLAGS.match(f))
    return {"cpu_model": model or platform.processor() or "unknown", "cpu_flags": sorted(flags)}


def machine_facts() -> dict[str, Any]:
    """Where the run happened: CPU, cores this process may use, thread settings, OS and Python."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {**cpu_facts(), "cpus": os.cpu_count(), "usable_cpus": usable, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version()}


def library_versions(names=LIBRARIES) -> dict[str, str | None]:
    """Installed versions of `names` (the training libraries by default), read from their metadata without importing them."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo: Path | None = None) -> tuple[str, bool | None]:
    """(HEAD's commit, whether tracked files differ from it); ("unknown", None) outside a git checkout."""
    repo = repo or REPO
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return "unknown", None
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30)
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def build(kind: str, subject: str, profile, figures_file: Path, started: float, wall_seconds: float,
          status: str = "ok", error: str | None = None, **extra) -> dict[str, Any]:
    """The report of one run: `profile` as resolved where it started; the run's own notes fill in what it used.

    If the run's process resolved its profile (a lab's `get_profile(lab=...)`), that profile is reported;
    it must equal the one the run started with, with the same lab's sizes, or the run had a second door.
    """
    figures, notes = read_figures_file(figures_file)
    reported = profile.to_dict()
    problems = []
    for note in notes:
        started_with = _rebased(profile, note["profile"].get("lab"))
        if note["profile"] != started_with:
            changed = sorted(k for k in started_with if started_with[k] != note["profile"].get(k))
            problems.append(f"the run started with profile {profile.name!r} but its process resolved a different one "
                            f"(differs in {changed}: a second door for settings)")
    if notes:
        reported = notes[0]["profile"]
    commit, dirty = git_commit()
    report = {
        "schema": SCHEMA, "kind": kind, "subject": subject, "status": status, "error": error,
        "started_utc": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall_seconds, 2),
        "profile": reported,
        **(_precision_and_threads(notes[0]) if notes else _precision_and_threads(None)),
        "machine": machine_facts(), "versions": library_versions(), "commit": commit, "dirty": dirty,
        **extra,
        "figures": dict(sorted(figures.items())),
    }
    if problems:
        report["status"], report["error"] = "failed", "; ".join(problems)
    return report


def _precision_and_threads(note: dict | None) -> dict[str, Any]:
    """From the run's process where it noted them (a lab's kernel), else from this process, which ran the run."""
    if note is not None:
        return {k: note.get(k) for k in ("precision", "precision_forced", "torch_threads")}
    import sys

    from utils.device import requested_precision, use_bf16

    torch = sys.modules.get("torch")
    return {"precision": "bf16" if use_bf16() else "fp32", "precision_forced": requested_precision() != "auto",
            "torch_threads": torch.get_num_threads() if torch is not None else None}


def _rebased(profile, lab: str | None) -> dict:
    """`profile`'s resolution for `lab` (the lab the run's process asked for), as a dict. Through the Profile's own
    method: utils.profiles notes profiles here, so this module never imports it back."""
    return profile.for_lab(lab).to_dict()


def write(report: dict, path: Path) -> Path:
    """Write the report as indented JSON (a few KB), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def now() -> float:
    """Wall-clock start time for `build` (seconds since the epoch)."""
    return time.time()
