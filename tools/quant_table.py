"""The Markdown table of a `tools.quant_bench` report, generated from its JSON and nothing else.

Kept apart from the bench so the test that holds a committed table equal to its JSON needs neither torch nor
llama.cpp. Every number printed here is read from `report["figures"]` or `report["files"]` by name.
"""

from __future__ import annotations

import math

NAMES = {"hf": "HF merged"}


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def _pct(fig: dict) -> str:
    return f"{fig['value']:.0%} ({fig['k']}/{fig['n']})"


def _spread(fig: dict, fmt: str) -> str:
    return f"{fig['median']:{fmt}} ({fig['min']:{fmt}}-{fig['max']:{fmt}})"


def _types(info: dict) -> str:
    total = info["n_weights"]
    def share(n):
        return f"{n / total:.1%}" if n / total >= 0.001 else "<0.1%"

    return ", ".join(f"{t} {share(n)}" for t, n in info["weights_by_type"].items())


def render_markdown(report: dict, json_name: str) -> str:
    """The table for `report` (as written by tools.quant_bench.write_report next to `json_name`)."""
    fig, files, setup, machine = report["figures"], report["files"], report["setup"], report["machine"]
    prof, prec, libs, git = report["profile"], report["precision"], report["libraries"], report["git"]
    formats = [f for f in setup["formats"]]
    n, repeats = setup["held_out_n"], setup["repeats"]
    hf_dtype = prec["hf_model_dtype"]
    lines = [
        f"# Quantization of the course model: size, fidelity, held-out scores, decode speed ({prof['name']} profile)",
        "",
        f"Generated from `{json_name}` (next to this file) by `python -m tools.quant_bench --render {json_name}`; do not edit",
        "by hand: tests/test_quant_bench.py regenerates it and compares.",
        "",
        f"- **Command**: `{report['command']}` ({report['date']}, {report['wall_time_s']:.0f} s wall time)",
        f"- **Machine**: {machine['model']}, {machine['logical_cpus']} logical CPUs ({machine['machine']}, {machine['system']}); "
        f"SIMD flags: {' '.join(machine['simd_flags']) or 'none found'}; threads: torch {machine['torch_threads']}, "
        f"llama.cpp {machine['llama_threads']}; 1-minute load average (other work on the machine) "
        + ", ".join(f"{k} {v}" for k, v in machine.get("load_average_1min", {}).items()),
        f"- **Code**: commit `{git['commit'][:12]}`{' with local changes' if git['dirty'] else ''}; "
        + ", ".join(f"{k} {v}" for k, v in libs.items() if v),
        f"- **Model**: {setup['model_id']} with the course LoRA adapter ({setup['adapter_steps']} steps, Lab 3.1.10's recipe), "
        f"merged, held as {hf_dtype} in transformers (training precision {prec['training']}, COURSE_PRECISION={prec['requested']})",
        f"- **Held-out**: {n} questions, greedy, at most {setup['max_new_tokens']} new tokens; one question is "
        f"{100 / n:.0f} points, and the sampling error of an accuracy near 50% is about +/- {100 * math.sqrt(0.25 / n):.0f} points",
        f"- **Logits**: last prompt position of each of the {n} held-out prompts, same token ids on both sides; relative error "
        f"||l_gguf - l_hf|| / ||l_hf||; top-1: the same arg-max token",
        f"- **Speed**: {setup['speed_tokens']} tokens decoded greedily after a {setup['speed_prompt_tokens']}-token prompt; "
        f"{repeats} repeats, every engine once per repeat (interleaved); median (min-max)",
        "",
        "| file | made by | size | bits/weight (tensors) | storage types (share of weights) | logit rel. error, median / max "
        "| top-1 agreement | fact accuracy | format validity | same reply as HF | decode tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ["hf"] + formats:
        info = files[name]
        if name == "hf":
            fidelity = ["(reference)", "", ""]
        else:
            fidelity = [f"{fig[f'logit_rel_error_median.{name}']['value']:.1e} / {fig[f'logit_rel_error_max.{name}']['value']:.1e}",
                        _pct(fig[f"top1_agreement.{name}"]), _pct(fig[f"same_reply_as_hf.{name}"])]
        row = [NAMES.get(name, name), info["made_by"], _size(info["file_bytes"]), f"{fig[f'bits_per_weight.{name}']['value']:.2f}",
               _types(info), fidelity[0], fidelity[1], _pct(fig[f"fact_accuracy.{name}"]), _pct(fig[f"format_validity.{name}"]),
               fidelity[2], _spread(fig[f"decode_tokens_per_s.{name}"], ".1f")]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"HF merged's size is its safetensors files ({hf_dtype}); its bits per weight are those files' bytes per parameter.",
        "",
        "## Speed ratios: the engine and the quantization, apart",
        "",
        "Each ratio is taken within one repeat (both engines timed back to back), then summarised over the repeats.",
        "",
        "| ratio | what changes | median | min-max | quartiles |",
        "|---|---|---|---|---|",
    ]
    what = {"engine": f"transformers ({hf_dtype}) -> llama.cpp, same weights in f16",
            "quantization": "f16 -> this file, same engine (llama.cpp)", "total": "both: what one \"x as fast\" figure mixes"}
    for kind in ("engine", "quantization", "total"):
        for key, r in fig.items():
            if key.startswith(f"speed_ratio.{kind}."):
                a, _, b = key.split(".", 2)[2].partition("_vs_")
                label = f"{kind}: {NAMES.get(a, a)} / {NAMES.get(b, b)}"
                lines.append(f"| {label} | {what[kind]} | {r['median']:.2f}x | {r['min']:.2f}-{r['max']:.2f}x | {r['q1']:.2f}-{r['q3']:.2f}x |")
    lines += ["", "Timings of the run's stages (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report["timings_s"].items()), ""]
    return "\n".join(lines)


def render_summary(report: dict) -> str:
    """The short table README.md's engineer section quotes (tests hold it equal to this output)."""
    fig, setup = report["figures"], report["setup"]
    lines = ["| file | size | bits/weight | logit rel. error (max) | top-1 agreement | fact accuracy | format validity "
             "| same reply as HF | decode tokens/s |", "|---|---|---|---|---|---|---|---|---|"]
    for name in ["hf"] + list(setup["formats"]):
        error = "" if name == "hf" else f"{fig[f'logit_rel_error_max.{name}']['value']:.1e}"
        top1 = "" if name == "hf" else _pct(fig[f"top1_agreement.{name}"])
        same = "" if name == "hf" else _pct(fig[f"same_reply_as_hf.{name}"])
        lines.append(f"| {NAMES.get(name, name)} | {_size(report['files'][name]['file_bytes'])} | {fig[f'bits_per_weight.{name}']['value']:.2f} "
                     f"| {error} | {top1} | {_pct(fig[f'fact_accuracy.{name}'])} | {_pct(fig[f'format_validity.{name}'])} "
                     f"| {same} | {_spread(fig[f'decode_tokens_per_s.{name}'], '.1f')} |")
    return "\n".join(lines) + "\n"
