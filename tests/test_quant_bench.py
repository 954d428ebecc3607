"""tools.quant_bench: the committed quantization tables are what their JSON reports generate, the reports hold every
figure by name and agree with their own samples, the speed ratios are paired within repeats, and a small bench runs
end to end (deploy tier)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tools.paths import REPO, RESULTS
from tools.quant_table import render_markdown
from utils.decode_speed import Spread, measure, paired_ratio, speed_ratios

REPORTS = sorted(RESULTS.glob("*/quantization-*.json"))
FORMATS = ("f16", "q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- decode-speed statistics

def test_spread_median_range_and_quartiles():
    s = Spread.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.min, s.max, s.q1, s.q3) == (3.0, 1.0, 5.0, 2.0, 4.0)
    assert s.samples == (5.0, 1.0, 3.0, 2.0, 4.0)  # kept in repeat order
    assert Spread.of([7.0]).text(".1f") == "7.0 (7.0-7.0, n=1)"
    with pytest.raises(ValueError, match="at least one"):
        Spread.of([])


def test_ratios_are_paired_within_repeats():
    """A machine that slows down halfway: within each repeat f16 is 2x transformers. Pairing by repeat says 2.00 with
    no spread; a ratio of medians (the plausible wrong version) would not, and an unpaired min-max spans 0.5-8x."""
    hf = [10.0, 10.0, 2.5, 2.5, 2.5]
    f16 = [20.0, 20.0, 5.0, 5.0, 5.0]
    r = paired_ratio(f16, hf)
    assert (r.median, r.min, r.max) == (2.0, 2.0, 2.0)
    assert Spread.of(f16).median / Spread.of(hf).median == 2.0  # same here by luck of the numbers ...
    hf2 = [10.0, 2.5, 10.0, 2.5, 2.5]  # ... but not when the slow phase falls on other repeats
    f16_2 = [20.0, 5.0, 20.0, 20.0, 5.0]
    assert paired_ratio(f16_2, hf2).samples == (2.0, 2.0, 2.0, 8.0, 2.0)
    with pytest.raises(ValueError, match="equally many"):
        paired_ratio([1.0, 2.0], [1.0])


def test_speed_ratios_split_engine_and_quantization():
    samples = {"hf": [10.0, 12.0], "f16": [60.0, 60.0], "Q4_K_M": [90.0, 84.0]}
    r = speed_ratios(samples, transformers="hf")
    assert set(r) == {"engine: f16 vs hf", "quantization: Q4_K_M vs f16", "total: Q4_K_M vs hf"}
    assert r["engine: f16 vs hf"].samples == (6.0, 5.0)
    assert r["quantization: Q4_K_M vs f16"].samples == (1.5, 1.4)
    assert r["total: Q4_K_M vs hf"].samples == (9.0, 7.0)  # engine x quantization, repeat by repeat
    with pytest.raises(KeyError, match="f16"):
        speed_ratios({"hf": [1.0], "Q4_K_M": [2.0]}, transformers="hf")


def test_measure_interleaves_and_rotates():
    calls = []
    engines = {name: (lambda name=name: calls.append(name) or 1.0) for name in "abc"}
    samples = measure(engines, repeats=3, progress=False)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]  # warm-up, then rotated repeats
    assert {k: len(v) for k, v in samples.items()} == {"a": 3, "b": 3, "c": 3}
    with pytest.raises(ValueError, match="repeats"):
        measure(engines, repeats=0, progress=False)


# ---------------------------------------------------------------- committed reports and tables

def test_a_quantization_report_is_committed():
    assert REPORTS, "no module-3.1/results/<machine>/quantization-<profile>.json: run `python -m tools.quant_bench --out ...`"


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_table_is_generated_from_its_json(path):
    md = path.with_suffix(".md")
    assert md.is_file(), f"{md} is missing: run `python -m tools.quant_bench --render {path.relative_to(REPO)}`"
    expected = render_markdown(load(path), path.name)
    assert md.read_text(encoding="utf-8") == expected, (
        f"{md.relative_to(REPO)} is not what {path.name} generates (a hand-edited number?); "
        f"regenerate it with `python -m tools.quant_bench --render {path.relative_to(REPO)}`")


def test_a_hand_edited_number_is_caught():
    """The comparison above can fail: change one figure in a report, and its table changes."""
    report = load(REPORTS[0])
    before = render_markdown(report, "x.json")
    report["figures"]["fact_accuracy.f16"]["k"] += 1
    assert render_markdown(report, "x.json") != before
    report = load(REPORTS[0])
    report["figures"]["speed_ratio.engine.f16_vs_hf"]["median"] *= 1.1
    assert render_markdown(report, "x.json") != before


def check_report(report: dict, formats=FORMATS, repeats: int | None = None, live: bool = False) -> None:
    """Every field the bench promises, and figures consistent with the samples they summarise."""
    assert report["schema"] == "quant-bench/1"
    for key in ("command", "date", "wall_time_s", "profile", "precision", "machine", "libraries", "git", "setup", "timings_s", "files", "figures"):
        assert key in report, f"report has no {key!r}"
    from utils.profiles import Profile

    # every field the profile has now (a committed report holds those of its day: its core fields are checked)
    fields = set(Profile.__dataclass_fields__) if live else {"name", "model_id", "max_steps", "eval_examples", "max_new_tokens", "lab_sizes"}
    assert fields <= set(report["profile"]), f"profile fields missing: {sorted(fields - set(report['profile']))}"
    assert report["precision"]["training"] in ("fp32", "bf16") and report["precision"]["hf_model_dtype"]
    machine = report["machine"]
    assert machine["model"] and machine["logical_cpus"] >= 1 and machine["torch_threads"] >= 1 and machine["llama_threads"] >= 1
    assert isinstance(machine["simd_flags"], list)
    assert report["libraries"]["torch"] and report["libraries"]["llama_cpp_python"] and report["git"]["commit"]
    setup, fig = report["setup"], report["figures"]
    assert setup["formats"] == list(formats)
    if repeats is not None:
        assert setup["repeats"] == repeats
    n = setup["held_out_n"]
    for name in ("hf", *formats):
        assert fig[f"file_bytes.{name}"]["value"] == report["files"][name]["file_bytes"] > 0
        for what in ("fact_accuracy", "format_validity"):
            f = fig[f"{what}.{name}"]
            assert f["n"] == n and 0 <= f["k"] <= n and f["value"] == pytest.approx(f["k"] / n)
        speed = fig[f"decode_tokens_per_s.{name}"]
        assert len(speed["samples"]) == setup["repeats"] and speed["value"] == speed["median"] == Spread.of(speed["samples"]).median
        assert 0 < speed["min"] <= speed["median"] <= speed["max"]
    for name in formats:
        info = report["files"][name]
        assert sum(info["weights_by_type"].values()) == info["n_weights"] == report["files"]["hf"]["n_weights"]
        assert fig[f"bits_per_weight.{name}"]["value"] == pytest.approx(8 * info["tensor_bytes"] / info["n_weights"])
        for what in ("top1_agreement", "same_reply_as_hf", "prompt_tokens_identical"):
            assert fig[f"{what}.{name}"]["n"] == n
        assert fig[f"prompt_tokens_identical.{name}"]["k"] == n, f"{name}: llama.cpp tokenized a prompt differently"
        assert 0 <= fig[f"logit_rel_error_median.{name}"]["value"] <= fig[f"logit_rel_error_max.{name}"]["value"]
    assert fig["bits_per_weight.f16"]["value"] == pytest.approx(16, abs=0.05)
    assert fig["logit_rel_error_max.f16"]["value"] < 1e-2, "f16 is the same model (Lab 3.1.10's parity tolerance)"
    # the ratios are the recorded speeds, paired by repeat
    samples = {name: fig[f"decode_tokens_per_s.{name}"]["samples"] for name in ("hf", *formats)}
    for label, spread in speed_ratios(samples, transformers="hf").items():
        kind, _, pair = label.partition(": ")
        a, _, b = pair.partition(" vs ")
        recorded = fig[f"speed_ratio.{kind}.{a}_vs_{b}"]
        assert recorded["samples"] == pytest.approx(list(spread.samples)) and recorded["value"] == pytest.approx(spread.median)


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_report_fields(path):
    report = load(path)
    check_report(report, formats=tuple(report["setup"]["formats"]))
    assert report["profile"]["name"] == path.stem.removeprefix("quantization-")


def test_readme_quotes_the_committed_speed_ratios():
    """module-3.1/README.md's Lab 3.1.10 section quotes the committed cpu report (the engine ratio, the q8_0 and Q4_K_M
    quantization ratios, the wall time, Q5_K_M's format validity): each quoted figure must be the report's."""
    path = RESULTS / "epyc-avx512" / "quantization-cpu.json"
    fig = load(path)["figures"]
    text = (REPO / "module-3.1" / "README.md").read_text(encoding="utf-8")
    section = " ".join(text[text.index("### Lab 3.1.10"): text.index("## Core concepts")].split())  # line breaks as spaces
    for key in ("speed_ratio.engine.f16_vs_hf", "speed_ratio.quantization.Q4_K_M_vs_f16", "speed_ratio.quantization.q8_0_vs_f16"):
        r = fig[key]
        quoted = f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}x"
        assert quoted in section, f"README's Lab 3.1.10 section does not quote {key} as {quoted!r} (from {path.name})"
    assert not re.search(r"decoded \d+(\.\d+)?x as fast as transformers", section), "a single, unsplit speed-up figure"
    report = load(path)
    assert f"{report['wall_time_s']:.0f} s, with other jobs" in section, "the bench's wall time, as the report has it"
    assert f"lost {20 - fig['format_validity.Q5_K_M']['k']} of 20 in format validity" in section


ENGINEER_HEADING = "## From a fine-tuned adapter to a model in Ollama (for engineers)"


def test_readme_engineer_section_quotes_the_committed_table():
    """README.md's engineer section carries the summary table generated from the committed cpu report, verbatim, and
    the engine and Q4_K_M quantization ratios as the report has them."""
    from tools.quant_table import render_summary

    path = RESULTS / "epyc-avx512" / "quantization-cpu.json"
    report = load(path)
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert ENGINEER_HEADING in text, f"README.md has no section {ENGINEER_HEADING!r}"
    section = text[text.index(ENGINEER_HEADING):]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    assert render_summary(report) in section, f"README's quantization table is not what {path.name} generates (tools.quant_table.render_summary)"
    flat = " ".join(section.split())
    for key in ("speed_ratio.engine.f16_vs_hf", "speed_ratio.quantization.Q4_K_M_vs_f16"):
        r = report["figures"][key]
        assert f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}x)" in flat, f"README's engineer section does not quote {key} as the report has it"
    assert f"within {report['figures']['logit_rel_error_max.f16']['value']:.1e}" in flat


# ---------------------------------------------------------------- the bench itself

def test_formats_must_include_f16(capsys):
    from tools.quant_bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", "unused", "--formats", "q8_0,Q4_K_M"])
    assert exit_info.value.code == 2 and "must include f16" in capsys.readouterr().err


@pytest.mark.deploy
@pytest.mark.slow
def test_small_bench_end_to_end(tmp_path, monkeypatch):
    """The grade profile (1 training step, 2 questions), two files, two repeats: every field of the report, and the
    table next to it generated from it."""
    from tools.quant_bench import main

    monkeypatch.delenv("COURSE_PROFILE_OVERRIDES", raising=False)
    out = tmp_path / "out"
    assert main(["--profile", "grade", "--repeats", "2", "--formats", "f16,Q4_K_M", "--out", str(out), "--quiet"]) == 0
    report = load(out / "quantization-grade.json")
    check_report(report, formats=("f16", "Q4_K_M"), repeats=2, live=True)
    assert report["profile"]["name"] == "grade" and report["setup"]["adapter_steps"] == 1
    assert "Q4_K" in report["files"]["Q4_K_M"]["weights_by_type"]
    assert (out / "quantization-grade.md").read_text(encoding="utf-8") == render_markdown(report, "quantization-grade.json")
    assert main(["--render", str(out / "quantization-grade.json")]) == 0
