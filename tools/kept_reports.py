"""The run reports kept under module-3.1/results/: reading them, their figures by name, and the Markdown blocks
generated from them (run times, a report's figures, the quickstart and bench tables, the quantization summary).

Shared by `tools.doc_figures` (which checks the documents against these reports) and its tests; kept apart so
the command stays a checker and the tables a reader of reports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tools.paths import REPO, RESULTS

BLOCK = re.compile(r"(<!-- generated: ([^>]*?) -->\n)(.*?)(<!-- /generated -->)", re.S)
DATE = re.compile(r"(?<![-\w])20\d\d-[01]\d-[0-3]\d(?!\w|\.\w)")  # not inside a file name


def report_path(ref: str, results: Path = RESULTS) -> Path:
    return results / (ref if ref.endswith(".json") else ref + ".report.json")


def load_report(ref: str, results: Path = RESULTS, cache: dict | None = None) -> dict:
    """The report `ref` names (path below `results`); FileNotFoundError names the file."""
    cache = {} if cache is None else cache
    if ref not in cache:
        path = report_path(ref, results)
        if not path.is_file():
            raise FileNotFoundError(f"no report {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
        cache[ref] = json.loads(path.read_text(encoding="utf-8"))
    return cache[ref]


def figure(report: dict, name: str) -> tuple[float, dict]:
    """(value, the figure's details) for `name`: a figure, `figure:field`, or `report.key[.key]`. KeyError if absent."""
    if name.startswith("report."):
        node: object = report
        for key in name.split(".")[1:]:
            if not isinstance(node, dict) or key not in node:
                raise KeyError(f"the report has no field {name[len('report.'):]!r}")
            node = node[key]
        unit = "s" if name.endswith(("seconds", "_s")) else None
        return node, {"unit": unit}  # type: ignore[return-value]
    base, _, field = name.partition(":")
    figures = report.get("figures", {})
    if base not in figures:
        raise KeyError(f"the report has no figure {base!r} (it has {len(figures)}: {', '.join(sorted(figures)[:8])}...)")
    details = figures[base]
    if field:
        if field not in details:
            raise KeyError(f"figure {base!r} has no field {field!r}")
        return details[field], {**details, "value": details[field]}
    return details["value"], details


def report_dates(results: Path = RESULTS) -> set[str]:
    dates = {m[0] for r in results.rglob("*.md") for m in re.finditer(r"20\d\d-[01]\d-[0-3]\d", r.name)}
    for path in results.rglob("*.json"):
        report = json.loads(path.read_text(encoding="utf-8"))
        for key in ("started_utc", "date"):
            if isinstance(report.get(key), str) and DATE.fullmatch(report[key][:10]):
                dates.add(report[key][:10])
    return dates


def is_bytes(name: str, details: dict) -> bool:
    return details.get("unit") == "bytes" or name.split(":")[0].endswith("bytes")


def _lab_key(subject: str) -> tuple:
    nums = re.findall(r"\d+", subject.split("-")[1] if subject.startswith("lab-") else "")
    return (0, *map(int, nums)) if nums else (1, subject)


def render_run_times(machine: str, results: Path = RESULTS) -> str:
    """One row per committed report of `machine`: run, profile, precision, wall seconds, date, commit."""
    rows = [(_lab_key(r["subject"]), p.parent.name, r) for p in sorted((results / machine).glob("*/*.report.json"))
            for r in [json.loads(p.read_text(encoding="utf-8"))]]
    lines = ["| run | profile | precision | wall time | status | date (UTC) | commit | report |", "|---|---|---|---|---|---|---|---|"]
    for _, folder, r in sorted(rows, key=lambda row: (row[0], row[1])):
        name = r["subject"].removeprefix("lab-")
        name = name.split("-")[0] if r["kind"] == "lab" else name
        commit = r["commit"][:7] + (" (edited)" if r.get("dirty") else "")
        lines.append(f"| {name} | `{r['profile']['name']}` | {r['precision']} | {r['wall_seconds']:.0f} s | {r['status']} | "
                     f"{r['started_utc'][:10]} | {commit} | `{folder}/{r['subject']}` |")
    if len(lines) == 2:
        lines.append("| (no reports committed yet) | | | | | | | |")
    return "\n".join(lines) + "\n"


def _show(name: str, f: dict) -> str:
    value = f.get("value")
    if isinstance(value, list) or value is None or isinstance(value, bool):
        return json.dumps(value)
    if f.get("n") and re.search(r"accuracy|validity|rate", name) and 0 <= value <= 1:
        return _pct_k(f)
    if is_bytes(name, f):
        return f"{value / 2**20:.1f} MiB"
    if f.get("unit") == "s" or "seconds" in name:
        return f"{value:.3g} s"
    return f"{value:.4g}" if isinstance(value, float) else f"{value:,}"


def render_figures(ref: str, *prefixes: str, results: Path = RESULTS) -> str:
    """The figures of one report (those starting with one of `prefixes`, or all) as a table."""
    if not report_path(ref, results).is_file():
        return f"(report `{ref}` not committed yet)\n"
    report = load_report(ref, results)
    lines = [f"Report `{ref}` ({report['precision']}, {report['wall_seconds']:.0f} s, {report['started_utc'][:10]}, "
             f"commit {report['commit'][:7]}):", "", "| figure | value | n | repeats |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {_show(name, f)} | {f.get('n', '')} | {f.get('repeats', '')} |"
              for name, f in report["figures"].items() if not prefixes or name.startswith(prefixes)]
    return "\n".join(lines) + "\n"


def _pct_k(f: dict) -> str:  # k/n only where the value is a count of n (not a mean over seeds)
    k, counted = f["value"] * f.get("n", 0), f.get("n") and f.get("repeats", 1) == 1
    return f"{f['value']:.1%} ({round(k)}/{f['n']})" if counted and abs(k - round(k)) < 1e-6 else f"{f['value']:.1%}"


def render_quickstart(machine: str, results: Path = RESULTS) -> str:
    """One row per committed quickstart report of `machine`: precision, training and whole time, scores before and after."""
    lines = ["| training precision | on this CPU | LoRA steps | training | whole command | fact accuracy before -> after "
             "| format validity before -> after | date (UTC) | report |", "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((results / machine).glob("*/quickstart.report.json")):
        r = json.loads(path.read_text(encoding="utf-8"))
        f = r["figures"]
        how = "forced (`COURSE_PRECISION`)" if r.get("precision_forced") else "the default"
        lines.append(f"| {r['precision']} | {how} | {r['profile']['max_steps']} | {f['train_seconds']['value']:.0f} s "
                     f"| {r['wall_seconds']:.0f} s | {_pct_k(f['heldout_before_fact_accuracy'])} -> {_pct_k(f['heldout_after_fact_accuracy'])} "
                     f"| {_pct_k(f['heldout_before_format_validity'])} -> {_pct_k(f['heldout_after_format_validity'])} "
                     f"| {r['started_utc'][:10]} | `{path.parent.name}/quickstart` |")
    if len(lines) == 2:
        lines.append("| (no quickstart report committed yet) | | | | | | | | |")
    return "\n".join(lines) + "\n"


BENCH_ROWS = (("plain_peft", "plain PyTorch loop, PEFT LoRA"), ("plain_scratch", "plain loop, Lab 3.1.1's `LoRALinear`"),
              ("course_trainer", "course trainer (`utils.training`)"), ("trl_default_loss", "TRL `SFTTrainer`, default loss"))


def render_bench(machine: str, results: Path = RESULTS) -> str:
    """`tools.bench`'s reports of `machine`, one column per report: matmul rates, then each training step."""
    reports = [(p.parent.name, json.loads(p.read_text(encoding="utf-8"))) for p in sorted((results / machine).glob("*/bench.report.json"))]
    if not reports:
        return "(no `tools.bench` report committed yet)\n"
    head = " | ".join(f"{r['precision']}{' (forced)' if r.get('precision_forced') else ''}, `{folder}/bench`" for folder, r in reports)
    lines = [f"| | {head} |", "|---" * (len(reports) + 1) + "|"]
    for precision in ("fp32", "bf16"):
        cells = [f"{r['figures'][f'matmul_gflops.{precision}']['value']:.0f} GFLOP/s" if f"matmul_gflops.{precision}" in r["figures"] else ""
                 for _, r in reports]
        lines.append(f"| {precision} matrix multiply, 1024^3 | " + " | ".join(cells) + " |")
    for key, label in BENCH_ROWS:
        cells = []
        for _, r in reports:
            f, base = r["figures"], r["figures"].get("step_seconds.plain_peft", {}).get("value")
            step = f.get(f"step_seconds.{key}", {}).get("value")
            if step is None:
                cells.append("")
                continue
            rel = f" ({step / base:.2f}x PEFT's plain step)" if base and key != "plain_peft" else ""
            cells.append(f"{step:.2f} s/step, {f[f'tokens_per_second.{key}']['value']:.0f} tokens/s, "
                         f"{f[f'model_gflops_per_second.{key}']['value']:.0f} GFLOP/s{rel}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    dates = ", ".join(f"{r['started_utc'][:10]} commit {r['commit'][:7]}" for _, r in reports)
    return "\n".join(lines) + f"\n\n(one run each: {dates})\n"


def render_quant_summary(ref: str, results: Path = RESULTS) -> str:
    """tools.quant_table's summary of a quantization bench report (README's engineer section)."""
    from tools.quant_table import render_summary

    return render_summary(load_report(ref, results))


GENERATORS = {"run-times": render_run_times, "quickstart": render_quickstart, "bench": render_bench, "figures": render_figures,
              "quant-summary": render_quant_summary}


def render_block(spec: str, results: Path = RESULTS) -> str:
    name, *args = spec.split()
    if name not in GENERATORS:
        raise KeyError(f"unknown generated block {name!r} (known: {sorted(GENERATORS)})")
    return GENERATORS[name](*args, results=results)


def regenerate(text: str, results: Path = RESULTS) -> str:
    return BLOCK.sub(lambda m: m[1] + render_block(m[2], results) + m[4], text)
