"""`python -m tools.modelfile` and the check it shares with Lab 3.1.10: Modelfiles written from SmolLM2's and Llama 3.1
Instruct's chat templates render (in Go's engine, and in the subset renderer used where Go's cannot load) exactly
what the tokenizers render; a template one newline off or without the generation prompt fails with exit 1, naming
the first differing character and the conversation; the subset renderer agrees with Go's output.
"""

from __future__ import annotations

import functools
import json

import pytest

from tools import modelfile as tool
from utils import go_template_subset as subset
from utils.go_template_engine import go_template_unavailable, render_go_template
from utils.modelfile_check import (CONVERSATIONS, ENGINE_ENV, NotAChatFormat, chat_markers, check_modelfile, first_difference,
                                   merged, ollama_values)

pytestmark = pytest.mark.deploy  # Go's real template engine (go-template) is the reference: `make deploy-setup`

GO_REASON = go_template_unavailable()
needs_go = [pytest.mark.deploy, pytest.mark.skipif(GO_REASON is not None, reason=f"Go's text/template cannot run here: {GO_REASON}")]
TURN_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<turn>{{ m['role'] }}: {{ m['content'] }}</turn>\n\n{% endfor %}"
                 "{% if add_generation_prompt %}<turn>assistant: {% endif %}")
MORE_CONVERSATIONS = {  # contents a YAML round trip or an escaping bug would change
    "quotes, ampersand, tags": [{"role": "user", "content": 'Say "hi" & <b>bye</b> {{ not a template }}'}],
    "newlines in a system prompt": [{"role": "system", "content": "Be brief.\nUse JSON."}, {"role": "user", "content": "A?"},
                                    {"role": "assistant", "content": "B.\n\nC"}, {"role": "user", "content": "D?"}],
}


@functools.lru_cache(maxsize=None)
def llama_tokenizer():
    from utils.tiny_llama import llama31_tokenizer

    return llama31_tokenizer()


def formats(smollm2_tokenizer) -> dict:
    """name -> (tokenizer, chat_template or None): ChatML, Llama 3.1 Instruct's real template, a made-up one writing its own BOS."""
    return {"SmolLM2": (smollm2_tokenizer, None), "Llama 3.1": (llama_tokenizer(), None), "<turn>": (smollm2_tokenizer, TURN_TEMPLATE)}


@pytest.fixture(params=["go", "subset"])
def engine(request, monkeypatch):
    """Every check below runs with Go's engine and with the subset renderer (as on an aarch64 machine)."""
    if request.param == "go":
        for mark in needs_go:
            request.applymarker(mark)
        monkeypatch.delenv(ENGINE_ENV, raising=False)
    else:
        monkeypatch.setenv(ENGINE_ENV, "subset")
    return request.param


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, smollm2_tokenizer):
    root = tmp_path_factory.mktemp("models")
    smollm2_tokenizer.save_pretrained(root / "smollm2")
    llama_tokenizer().save_pretrained(root / "llama31")
    return {"SmolLM2": root / "smollm2", "Llama 3.1": root / "llama31"}


# ---------------------------------------------------------------- reading the chat format

def test_chat_markers_of_chatml_and_llama31(smollm2_tokenizer):
    assert chat_markers(smollm2_tokenizer) == {"engine_prefix": "", "prefix": "", "start": "<|im_start|>", "sep": "\n",
                                               "end": "<|im_end|>\n", "system_prefix": ""}
    assert chat_markers(llama_tokenizer()) == {
        "engine_prefix": "<|begin_of_text|>", "prefix": "", "start": "<|start_header_id|>", "sep": "<|end_header_id|>\n\n",
        "end": "<|eot_id|>", "system_prefix": "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"}
    # a GGUF that does not add BOS: then the TEMPLATE must write it
    assert chat_markers(llama_tokenizer(), add_bos=False)["prefix"] == "<|begin_of_text|>"
    assert chat_markers(smollm2_tokenizer, TURN_TEMPLATE)["prefix"] == "<|im_start|>"  # SmolLM2's bos_token, which it never adds


def test_trimmed_contents_are_reported(smollm2_tokenizer):
    from utils.modelfile_check import trims_contents

    assert trims_contents(llama_tokenizer()) and not trims_contents(smollm2_tokenizer)


def test_chat_markers_say_what_does_not_fit(smollm2_tokenizer):
    no_generation = smollm2_tokenizer.chat_template.replace("{% if add_generation_prompt %}", "{% if false %}")
    with pytest.raises(NotAChatFormat, match="no generation prompt"):
        chat_markers(smollm2_tokenizer, no_generation)
    with pytest.raises(NotAChatFormat, match="adds '<|begin_of_text|>'.*does not write it"):
        chat_markers(llama_tokenizer(), smollm2_tokenizer.chat_template)


def test_ollama_merges_consecutive_messages_of_one_role():
    user = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    assert merged(user) == [{"role": "user", "content": "a\n\nb"}, {"role": "assistant", "content": "c"}]
    tools = [{"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}]
    assert merged(tools) == tools  # tool results stay apart (Ollama keeps each one's metadata)
    values = ollama_values([{"role": "system", "content": "s1"}, {"role": "system", "content": "s2"}] + user, "ignored")
    assert values["System"] == "s1\n\ns2" and [m["Role"] for m in values["Messages"]] == ["system", "user", "assistant"]
    assert ollama_values(user, "S")["Messages"][0] == {"Role": "system", "Content": "S"}
    own = ollama_values([{"role": "system", "content": ""}] + user, "S")  # the conversation's own (empty) system turn wins
    assert own["System"] == "" and own["Messages"][0] == {"Role": "system", "Content": ""}


def test_first_difference():
    assert first_difference("abc", "abc") is None
    assert first_difference("abc", "abd") == 2 and first_difference("abc", "ab") == 2


# ---------------------------------------------------------------- the check on real formats, both engines

@pytest.mark.parametrize("name", ["SmolLM2", "Llama 3.1", "<turn>"])
@pytest.mark.parametrize("system", ["", "Answer for the Veltrani registry."])
def test_reference_modelfile_renders_every_conversation(engine, smollm2_tokenizer, name, system):
    tokenizer, template = formats(smollm2_tokenizer)[name]
    markers = chat_markers(tokenizer, template)
    text = tool.write_modelfile("m.gguf", markers, system, {})
    result = check_modelfile(text, tokenizer, {**CONVERSATIONS, **MORE_CONVERSATIONS}, chat_template=template, markers=markers)
    assert result.ok, result.report()
    assert ("WARNING: Go's template engine is not available" in result.engine) == (engine == "subset")


@pytest.mark.parametrize("name", ["SmolLM2", "Llama 3.1"])
def test_a_template_one_newline_off_fails_everywhere(engine, smollm2_tokenizer, name):
    tokenizer, _ = formats(smollm2_tokenizer)[name]
    markers = chat_markers(tokenizer)
    text = tool.write_modelfile("m.gguf", markers, "", {})
    wrong = text.replace(markers["sep"] + '{{ end }}{{ $m.Content }}', markers["sep"][:-1] + '{{ end }}{{ $m.Content }}')
    assert wrong != text
    result = check_modelfile(wrong, tokenizer, markers=markers)
    assert not result.ok and len(result.mismatches) == len(CONVERSATIONS)


# ---------------------------------------------------------------- the subset renderer against Go's engine

GO_CASES = [
    ("a  {{- .X -}}  b", {"X": "1"}),
    ("x\n{{- if true }}\n  y  \n{{- end -}}\nz", {}),
    ("{{- /* comment */ -}}\n  x  {{/* c2 */}} y", {}),
    ("{{ range $i, $m := .L }}{{ $i }}={{ $m.V }};{{ end }}", {"L": [{"V": "x"}, {"V": "y"}]}),
    ("{{ range .L }}{{ .V }}{{ else }}empty{{ end }}", {"L": []}),
    ("{{ range $m := .L }}[{{ $m }}]{{ end }}{{ range $k, $v := .M }}{{ $k }}:{{ $v }},{{ end }}", {"L": ["a", "b"], "M": {"b": 2, "a": 1}}),
    ("{{ len .L }} {{ len .S }} {{ index .L 1 }} {{ .X | len }} {{ print 1 2 \"a\" 3 }}", {"L": ["a", "b", "c"], "S": "héllo", "X": "abc"}),
    ("{{ $x := 1 }}{{ range .L }}{{ $x = 2 }}{{ end }}{{ $x }}", {"L": [1]}),
    ('{{ if eq .R "a" "b" }}in{{ else if eq .R "c" }}c{{ else }}out{{ end }}', {"R": "c"}),
    ("{{ with .X }}{{ . }}{{ else }}none{{ end }}{{ with .Y }}[{{ . }}]{{ end }}", {"X": "", "Y": "y"}),
    ('{{ or .A .B "z" }}|{{ and .A .B }}|{{ not .A }}|{{ if and (eq 1 1) (ne .R "system") }}yes{{ end }}', {"A": "", "B": "b", "R": "user"}),
    ("{{ .A.B }} {{ $.A.B }} {{ (index .L 0).V }} {{ .Missing }} {{ .N }}", {"A": {"B": "deep"}, "L": [{"V": "v"}], "N": None}),
    ("{{ eq .N 1 }}{{ lt 1 2 }}{{ ge 2.5 2.5 }} {{ .T }} {{ .F }} {{ .Z }}", {"N": 1, "T": True, "F": 1.5, "Z": 0}),
    ('{{ "a\\n\\tb\\"" }}{{ `raw\\n` }}', {}),
    ("{{ if }}", {}), ('{{ eq "a" 1 }}', {}), ("{{ index .L 5 }}", {"L": [1]}), ("{{ range .L }}{{ end }", {}), ("{{ end }}", {}),
    ("{{ .A.B.C }}", {"A": {}}), ("{{ .N.X }}", {"N": None}), ("{{ .S.X }}", {"S": "s"}), ("{{ $nope }}", {}),
]


@pytest.mark.parametrize("template, values", GO_CASES, ids=[c[0][:40] for c in GO_CASES])
def test_subset_renderer_agrees_with_go(template, values, request):
    for mark in needs_go:
        request.applymarker(mark)
    try:
        go, go_error = render_go_template(template, values), None
    except ValueError as err:
        go, go_error = None, str(err)
    if go_error is None:
        assert subset.render(template, values) == go
    else:
        with pytest.raises(subset.TemplateError):
            subset.render(template, values)


@pytest.mark.parametrize("name", ["SmolLM2", "Llama 3.1", "<turn>"])
def test_subset_renderer_agrees_with_go_on_the_course_modelfiles(request, smollm2_tokenizer, name):
    """Every conversation, with and without SYSTEM, merged as Ollama merges: the same text from both engines."""
    for mark in needs_go:
        request.applymarker(mark)
    tokenizer, template = formats(smollm2_tokenizer)[name]
    markers = chat_markers(tokenizer, template)
    conversations = list({**CONVERSATIONS, **MORE_CONVERSATIONS}.values())
    for system in ("", "Be brief."):
        spec_template = tool.write_modelfile("m.gguf", markers, system, {}).split('TEMPLATE """', 1)[1].split('"""', 1)[0]
        values = [ollama_values(c, system) for c in conversations]
        assert [subset.render(spec_template, v) for v in values] == render_go_template(spec_template, values)


def test_subset_renderer_beyond_go_1_11():
    """What Ollama's Go has and go-template's Go 1.11 lacks (slice, break, continue, short-circuit and/or), per Go's documentation."""
    assert subset.render("{{ slice .L 1 }} {{ slice .S 1 3 }} {{ slice .L 0 1 }}", {"L": [1, 2, 3], "S": "abcd"}) == "[2 3] bc [1]"
    loop = "{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}"
    assert subset.render(loop, {"L": [1, 2, 3, 4, 5]}) == "13"
    assert subset.render("{{ or .A (index .L 9) }}", {"A": "a", "L": []}) == "a"  # never evaluates the failing index
    for bad in ("{{ define \"x\" }}{{ end }}", "{{ printf \"%s\" .X }}", "{{ json .X }}", "{{ template \"x\" }}"):
        with pytest.raises(subset.UnsupportedTemplate):
            subset.render(bad, {"X": "1"})
    with pytest.raises(subset.TemplateError, match="break"):
        subset.render("{{ break }}", {})


# ---------------------------------------------------------------- the command

def run(capsys, *argv) -> tuple[int, str]:
    code = tool.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("name", ["SmolLM2", "Llama 3.1"])
def test_command_writes_a_modelfile_that_passes(engine, capsys, tmp_path, model_dirs, name):
    """SmolLM2 with the course's real GGUF (add_bos_token false), Llama 3.1 with a GGUF that adds BOS, as Meta's converts."""
    from utils.models import smollm2_gguf_path

    out = tmp_path / "deploy" / "Modelfile"
    gguf = smollm2_gguf_path() if name == "SmolLM2" else _gguf(tmp_path / "deploy" / "model.gguf", add_bos=True)
    code, output = run(capsys, model_dirs[name], "--gguf", gguf, "--out", out, "--system", "Be brief.", "--parameter", "num_ctx=4096")
    assert code == 0, output
    assert f"identical on all {len(CONVERSATIONS)} conversations" in output
    text = out.read_text()
    assert text.startswith(f"FROM {gguf.resolve()}\n" if name == "SmolLM2" else "FROM ./model.gguf\n"), text[:200]
    assert 'SYSTEM """Be brief."""' in text and "PARAMETER num_ctx 4096" in text
    assert "PARAMETER temperature 0" in text and "<|begin_of_text|>" not in text
    assert ("strips white space around each message" in output) == (name == "Llama 3.1")
    code, output = run(capsys, model_dirs[name], "--check", out)
    assert code == 0 and "identical on all" in output, output


def test_command_writes_the_bos_when_the_gguf_does_not_add_it(capsys, tmp_path, model_dirs, monkeypatch):
    monkeypatch.setenv(ENGINE_ENV, "subset")
    code, output = run(capsys, model_dirs["Llama 3.1"], "--gguf", _gguf(tmp_path / "m.gguf", add_bos=False, chat_template="{{ x }}"),
                       "--out", tmp_path / "Modelfile")
    assert code == 0, output
    assert 'TEMPLATE """<|begin_of_text|>{{ range' in (tmp_path / "Modelfile").read_text()
    assert "stores a chat template that differs" in output


@pytest.mark.parametrize("name", ["SmolLM2", "Llama 3.1"])
@pytest.mark.parametrize("mistake", ["one newline off", "no generation prompt"])
def test_command_fails_naming_the_first_difference(engine, capsys, tmp_path, model_dirs, name, mistake):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dirs[name])
    markers = chat_markers(tokenizer)
    text = tool.write_modelfile("./m.gguf", markers, "", {"temperature": 0})
    generation = markers["start"] + "assistant" + markers["sep"]
    if mistake == "one newline off":  # the generation prompt's separator loses its last newline
        wrong = text.replace(generation + '"""', generation[:-1] + '"""')
    else:
        wrong = text.replace(generation + '"""', '"""')
    assert wrong != text
    (tmp_path / "Modelfile").write_text(wrong)
    code, output = run(capsys, model_dirs[name], "--check", tmp_path / "Modelfile")
    assert code == 1, output
    first_name, first = next(iter(CONVERSATIONS.items()))
    expected = tokenizer.apply_chat_template(first, tokenize=False, add_generation_prompt=True)
    at = len(expected) - 1 if mistake == "one newline off" else len(expected) - len(generation)
    assert f"DIFFERENT: {first_name}: first difference at character {at} of {len(expected)}" in output
    assert f"conversation:  {first!r}" in output and f"{len(CONVERSATIONS)} of {len(CONVERSATIONS)} conversations differ" in output
    assert not (tmp_path / "deploy").exists()


def test_command_exit_2_when_it_cannot_check(capsys, tmp_path, model_dirs, monkeypatch):
    monkeypatch.setenv(ENGINE_ENV, "subset")
    code, output = run(capsys, tmp_path)
    assert code == 2 and "no tokenizer_config.json" in output
    code, output = run(capsys, model_dirs["SmolLM2"], "--gguf", tmp_path / "missing.gguf")
    assert code == 2 and "missing.gguf: no such file" in output
    code, output = run(capsys, model_dirs["SmolLM2"], "--parameter", "temperature")
    assert code == 2 and "expected NAME=VALUE" in output
    (tmp_path / "Modelfile").write_text('FROM m.gguf\nTEMPLATE """{{ json .Messages }}"""\n')
    code, output = run(capsys, model_dirs["SmolLM2"], "--check", tmp_path / "Modelfile")
    assert code == 2 and "functions only Ollama defines" in output
    (tmp_path / "Modelfile").write_text('FROM m.gguf\nTEMPLATE """never closed\n')
    code, output = run(capsys, model_dirs["SmolLM2"], "--check", tmp_path / "Modelfile")
    assert code == 2 and "never closes it" in output
    config = json.loads((model_dirs["SmolLM2"] / "tokenizer_config.json").read_text())
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in model_dirs["SmolLM2"].iterdir():
        if f.name != "chat_template.jinja":
            (bare / f.name).write_bytes(f.read_bytes())
    (bare / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "chat_template"}))
    code, output = run(capsys, bare)
    assert code == 2 and "no chat template" in output


def test_command_fails_on_a_template_that_does_not_render_or_lacks_the_stop(capsys, tmp_path, model_dirs, monkeypatch):
    monkeypatch.setenv(ENGINE_ENV, "subset")
    (tmp_path / "Modelfile").write_text('FROM m.gguf\nTEMPLATE """{{ if }}"""\n')
    code, output = run(capsys, model_dirs["SmolLM2"], "--check", tmp_path / "Modelfile")
    assert code == 1 and "does not render" in output
    good = tool.write_modelfile("m.gguf", chat_markers(llama_tokenizer()), "", {})
    (tmp_path / "Modelfile").write_text(good.replace('PARAMETER stop "<|eot_id|>"\n', ""))
    code, output = run(capsys, model_dirs["Llama 3.1"], "--check", tmp_path / "Modelfile")
    assert code == 1 and "MISSING STOP" in output


# ---------------------------------------------------------------- one writer, kept from students

def test_the_tool_writes_what_the_lab_solution_writes(smollm2_tokenizer):
    """The lab's Exercise 3 solution and tools.modelfile's writer are the same function, on every format."""
    from tools.notebook_cells import SOLUTIONS, cell_sources

    namespace: dict = {}
    exec(cell_sources(SOLUTIONS / "lab-3.1.10-ollama-integration.ipynb")["write_modelfile"], namespace)
    for name, (tokenizer, template) in formats(smollm2_tokenizer).items():
        markers = chat_markers(tokenizer, template)
        for system, params in (("", {}), ("Be brief.", {"temperature": 0, "num_ctx": 2048})):
            assert namespace["write_modelfile"]("x.gguf", markers, system, params) == tool.write_modelfile("x.gguf", markers, system, params), name


def test_the_student_edition_does_not_ship_the_reference():
    from tools.student_edition import plan

    edition = plan()
    assert "tools.modelfile" not in edition.tools and not edition.problems
    assert "utils/modelfile_check.py" in {relative for _, relative in edition.files}


def _gguf(path, add_bos: bool, chat_template: str | None = None):
    """A GGUF holding only the metadata the tool reads (no tensors): enough for FROM and add_bos_token."""
    from gguf import GGUFWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), "llama")
    writer.add_add_bos_token(add_bos)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
