"""Which GGUF to ship: the course's merged model in f16, q8_0, Q6_K, Q5_K_M and Q4_K_M, measured side by side.

    python -m tools.quant_bench --out module-3.1/results/epyc-avx512            # profile cpu, 5 repeats
    python -m tools.quant_bench --profile grade --repeats 2 --out /tmp/qb       # seconds: the test's setting
    python -m tools.quant_bench --render module-3.1/results/epyc-avx512/quantization-cpu.json   # rewrite the table

The model is what Lab 3.1.10 deploys: SmolLM2 with the course LoRA adapter trained by the lab's recipe
(`train_sft`, the profile's steps) and merged. llama.cpp's converter writes f16 and q8_0 (as the lab does),
llama.cpp's quantizer the k-quants from the f16 file (`utils.gguf_files`). For each file: size and bits per
weight (tensors only), last-token logits against the Hugging Face model on every held-out prompt (relative
error; top-1 agreement), held-out fact accuracy and format validity (greedy, with n), and decoding speed
with repeats. Speed is split into the engine ratio (llama.cpp f16 vs transformers fp32) and the quantization
ratios (each file vs f16), each within a repeat and reported as a median with its spread
(`utils.decode_speed`). Writes quantization-<profile>.json (every figure by a stable name, the profile,
precision, machine, libraries, commit, wall time) and a Markdown table generated from it
(`tools.quant_table`; tests/test_quant_bench.py checks the committed table against its JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tools.paths import REPO
from tools.quant_table import render_markdown
from utils import run_report

FORMATS = ("f16", "q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")
CONVERTER_TYPES = ("f16", "q8_0")  # written by llama.cpp's converter, as Lab 3.1.10 does; the rest by its quantizer
LIBRARIES = ("torch", "transformers", "peft", "trl", "llama_cpp_python", "gguf", "numpy")
SIMD_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4", "bf16", "vnni", "asimd", "sve", "i8mm", "fphp")
SCHEMA = "quant-bench/1"


# ---------------------------------------------------------------- where and with what it ran

def cpu_info() -> dict:
    """CPU model, logical CPUs and the SIMD flags llama.cpp's and torch's kernels depend on (from /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    path = Path("/proc/cpuinfo")
    for line in (path.read_text().splitlines() if path.exists() else []):
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model") and value.strip():
            model = value.strip()
        elif key.strip() in ("flags", "Features"):
            flags.update(value.split())
    simd = sorted(f for f in flags if f.startswith(SIMD_FLAG_PREFIXES))
    return {"model": model, "logical_cpus": os.cpu_count(), "simd_flags": simd, "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------- measurements

def hf_last_logits(model, ids_list: list) -> list:
    """The Hugging Face model's logits at the last prompt position, float64, one prompt at a time (no padding)."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        return [model(torch.tensor([ids], device=device)).logits[0, -1].double().cpu().numpy() for ids in ids_list]


def logit_agreement(llm, ids_list: list, hf_logits: list) -> dict:
    """Relative error ||l_llama - l_hf|| / ||l_hf|| and top-1 agreement at the last prompt position, per prompt."""
    import numpy as np

    errors, top1 = [], []
    for ids, ref in zip(ids_list, hf_logits):
        llm.reset()
        llm.eval(ids)
        own = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        errors.append(float(np.linalg.norm(own - ref) / np.linalg.norm(ref)))
        top1.append(int(np.argmax(own)) == int(np.argmax(ref)))
    return {"rel_error": errors, "top1": top1}


def llama_replies(llm, texts: list, max_new_tokens: int) -> list:
    """Greedy replies to rendered prompts, without the end-of-turn token and stripped (as Lab 3.1.10 scores them)."""
    import numpy as np

    eos, replies = llm.token_eos(), []
    for text in texts:
        llm.reset()
        llm.eval(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        new = []
        while len(new) < max_new_tokens:
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            if token == eos:
                break
            new.append(token)
            llm.eval([token])
        replies.append(llm.detokenize(new).decode("utf-8", errors="replace").strip())
    return replies


def count(flags: list) -> dict:
    k, n = sum(bool(f) for f in flags), len(flags)
    return {"value": k / n if n else None, "k": k, "n": n}


def merged_model(P, work: Path, timings: dict):
    """Lab 3.1.10's model: the course adapter trained by the lab's recipe, merged, saved with its tokenizer."""
    from utils.adapters import adapter_config
    from utils.course_data import load_split
    from utils.models import load_base
    from utils.seeding import seed_everything
    from utils.training import train_sft

    seed_everything(0)
    started = time.perf_counter()
    model, tokenizer = load_base(P)
    trainer = train_sft(model, tokenizer, load_split("train", P.train_examples), P, str(work / "run"),
                        peft_config=adapter_config(P), seed=0)
    merged = trainer.model.merge_and_unload().eval()
    timings["train and merge"] = time.perf_counter() - started
    hf_dir = work / "merged-hf"
    merged.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    shutil.rmtree(work / "run", ignore_errors=True)
    return merged, tokenizer, hf_dir, int(trainer.state.global_step)


def checked_formats(formats) -> list[str]:
    """The requested files in the table's order; f16 is required (every quantization ratio is against it)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or "f16" not in formats:
        raise ValueError(f"--formats must include f16 (every quantization ratio is against it) and name only {', '.join(FORMATS)}; "
                         f"got {', '.join(formats) or 'nothing'}")
    return [f for f in FORMATS if f in formats]


def run_bench(profile: str = "cpu", repeats: int = 5, formats=FORMATS, work: Path | None = None, speed_tokens: int | None = None,
              progress: bool = True, command: str = "") -> dict:
    """Measure every format; returns the report (see the module docstring)."""
    import torch
    from tqdm.auto import tqdm

    from utils.course_data import load_split
    from utils.decode_speed import Spread, hf_decode_speed, llama_decode_speed, measure, speed_ratios
    from utils.deploy_tools import llama_threads
    from utils.gguf_files import convert_to_gguf, gguf_tensors, quantize_gguf
    from utils.llama_cpp_engine import load_gguf
    from utils.device import requested_precision, use_bf16
    from utils.evaluation import evaluate, score_replies
    from utils.profiles import get_profile

    formats = checked_formats(formats)
    started_all = time.perf_counter()
    load = {"start": load_average()}  # other work on the machine slows every figure here: recorded, not hidden
    P = get_profile(profile, lab="3.1.10")
    speed_tokens = speed_tokens or P.speed_tokens
    timings: dict[str, float] = {}
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="quant-bench-")) if owned else Path(work)
    work.mkdir(parents=True, exist_ok=True)
    stages = tqdm(total=4 + len(formats), desc="quant bench", disable=not progress)
    llms = {}
    try:
        stages.set_postfix_str("training the adapter")
        merged, tokenizer, hf_dir, steps = merged_model(P, work, timings)
        stages.update(1)

        stages.set_postfix_str("Hugging Face model")
        started = time.perf_counter()
        eval_set = load_split("test", P.eval_examples)
        hf_eval = evaluate(merged, tokenizer, eval_set, max_new_tokens=P.max_new_tokens, progress=False)
        hf_replies = [row["reply"] for row in hf_eval.rows]
        texts = [tokenizer.apply_chat_template(ex.prompt(), tokenize=False, add_generation_prompt=True) for ex in eval_set]
        ids_list = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        hf_logits = hf_last_logits(merged, ids_list)
        timings["HF evaluation and logits"] = time.perf_counter() - started
        stages.update(1)

        stages.set_postfix_str("converting and quantizing")
        started = time.perf_counter()
        paths = convert_to_gguf(hf_dir, {t: work / f"model-{t}.gguf" for t in formats if t in CONVERTER_TYPES})
        for qtype in [t for t in formats if t not in CONVERTER_TYPES]:
            paths[qtype] = quantize_gguf(paths["f16"], work / f"model-{qtype}.gguf", qtype)
        timings["convert and quantize"] = time.perf_counter() - started
        stages.update(1)

        n_params = sum(p.numel() for p in merged.parameters())
        st_bytes = sum(f.stat().st_size for f in hf_dir.glob("*.safetensors"))
        dtype = str(next(merged.parameters()).dtype).removeprefix("torch.")
        files = {"hf": {"file_bytes": st_bytes, "n_weights": n_params, "bits_per_weight": 8 * st_bytes / n_params,
                        "weights_by_type": {dtype: n_params}, "made_by": "save_pretrained (safetensors)"}}
        quality = {"hf": {"fact": [r["fact"] for r in hf_eval.rows], "format": [r["format"] for r in hf_eval.rows]}}
        for name in formats:
            stages.set_postfix_str(name)
            started = time.perf_counter()
            tensors = gguf_tensors(paths[name])
            tensor_bytes, n_weights = sum(t["n_bytes"] for t in tensors), sum(t["n_elements"] for t in tensors)
            by_type: dict[str, int] = {}
            for t in tensors:
                by_type[t["type"]] = by_type.get(t["type"], 0) + t["n_elements"]
            files[name] = {"file_bytes": paths[name].stat().st_size, "tensor_bytes": tensor_bytes, "n_weights": n_weights,
                           "bits_per_weight": 8 * tensor_bytes / n_weights, "weights_by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
                           "made_by": "llama.cpp converter (convert_hf_to_gguf)" if name in CONVERTER_TYPES else "llama.cpp quantizer, from f16"}
            llm = llms[name] = load_gguf(paths[name])
            same_tokens = [list(llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)) == list(i) for t, i in zip(texts, ids_list)]
            agreement = logit_agreement(llm, ids_list, hf_logits)
            scored = score_replies(llama_replies(llm, texts, P.max_new_tokens), eval_set)
            quality[name] = {"fact": [r["fact"] for r in scored.rows], "format": [r["format"] for r in scored.rows],
                             "same_reply": [r["reply"] == h for r, h in zip(scored.rows, hf_replies)], "tokens": same_tokens, **agreement}
            timings[f"measure {name}"] = time.perf_counter() - started
            stages.update(1)

        stages.set_postfix_str("decode speed")
        load["before decode speed"] = load_average()
        started = time.perf_counter()
        speed_ids = ids_list[0]
        engines = {"hf": lambda: hf_decode_speed(merged, speed_ids, speed_tokens)}
        engines.update({name: (lambda llm=llm: llama_decode_speed(llm, speed_ids, speed_tokens)) for name, llm in llms.items()})
        samples = measure(engines, repeats, progress=progress)
        ratios = speed_ratios(samples, transformers="hf", f16="f16")
        timings["decode speed"] = time.perf_counter() - started
        load["after decode speed"] = load_average()
        stages.update(1)
    finally:
        stages.close()
        for llm in llms.values():
            llm.close()
        if owned:
            shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, dict] = {}
    for name, info in files.items():
        figures[f"file_bytes.{name}"] = {"value": info["file_bytes"]}
        figures[f"bits_per_weight.{name}"] = {"value": info["bits_per_weight"]}
    for name, q in quality.items():
        figures[f"fact_accuracy.{name}"] = count(q["fact"])
        figures[f"format_validity.{name}"] = count(q["format"])
        if name == "hf":
            continue
        figures[f"same_reply_as_hf.{name}"] = count(q["same_reply"])
        figures[f"prompt_tokens_identical.{name}"] = count(q["tokens"])
        figures[f"top1_agreement.{name}"] = count(q["top1"])
        errors = Spread.of(q["rel_error"])
        figures[f"logit_rel_error_median.{name}"] = {"value": errors.median, "n": len(q["rel_error"])}
        figures[f"logit_rel_error_max.{name}"] = {"value": errors.max, "n": len(q["rel_error"])}
    for name, values in samples.items():
        figures[f"decode_tokens_per_s.{name}"] = {"value": Spread.of(values).median, **Spread.of(values).to_dict()}
    for label, spread in ratios.items():
        kind, _, pair = label.partition(": ")
        a, _, b = pair.partition(" vs ")
        figures[f"speed_ratio.{kind}.{a}_vs_{b}"] = {"value": spread.median, **spread.to_dict()}
    return {
        "schema": SCHEMA, "command": command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_time_s": round(time.perf_counter() - started_all, 1),
        "profile": P.to_dict(),
        "precision": {"training": "bf16" if use_bf16() else "fp32", "requested": requested_precision(), "hf_model_dtype": dtype},
        "machine": cpu_info() | {"torch_threads": torch.get_num_threads(), "llama_threads": llama_threads(),
                                 "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average_1min": load},
        "libraries": run_report.library_versions(LIBRARIES), "git": dict(zip(("commit", "dirty"), run_report.git_commit(REPO))),
        "setup": {"model_id": P.model_id, "adapter_steps": steps, "formats": formats, "held_out_n": len(eval_set),
                  "max_new_tokens": P.max_new_tokens, "speed_tokens": speed_tokens, "speed_prompt_tokens": len(speed_ids),
                  "repeats": repeats},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "files": files, "figures": figures,
    }


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """quantization-<profile>.json and the Markdown table generated from it, side by side."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"quantization-{report['profile']['name']}"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report, json_path.name), encoding="utf-8")
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.quant_bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--profile", default="cpu", help="course profile for the model, training steps and question count (default: cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of every engine, interleaved (default: 5)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, f16 required (default: {','.join(FORMATS)})")
    parser.add_argument("--speed-tokens", type=int, default=None, help="tokens decoded per timing (default: the profile's speed_tokens)")
    parser.add_argument("--out", help="folder for quantization-<profile>.json and .md")
    parser.add_argument("--work", help="keep the model folder and GGUF files here (default: a temporary folder, removed)")
    parser.add_argument("--render", metavar="JSON", help="only regenerate the Markdown table next to an existing report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.render:
        path = Path(args.render)
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            text = render_markdown(report, path.name)
        except (OSError, ValueError, KeyError) as err:
            print(f"quant_bench: cannot render {path}: {type(err).__name__}: {err}", file=sys.stderr)
            return 2
        path.with_suffix(".md").write_text(text, encoding="utf-8")
        print(f"wrote {path.with_suffix('.md')}")
        return 0
    if not args.out:
        parser.error("--out DIR is required (or --render JSON)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    try:
        formats = checked_formats([f.strip() for f in args.formats.split(",") if f.strip()])
    except ValueError as err:
        parser.error(str(err))
    from utils.deploy_tools import missing_deploy_tools

    missing = missing_deploy_tools()
    if missing:
        print("quant_bench: the deployment tools are missing:\n  - " + "\n  - ".join(missing), file=sys.stderr)
        return 2
    settings = "".join(f"{k}={os.environ[k]} " for k in ("COURSE_PRECISION", "OMP_NUM_THREADS") if os.environ.get(k))
    command = settings + "python -m tools.quant_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        report = run_bench(args.profile, args.repeats, formats,
                           Path(args.work) if args.work else None, args.speed_tokens, progress=not args.quiet, command=command)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"quant_bench: {err}", file=sys.stderr)
        return 2
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path} ({report['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
