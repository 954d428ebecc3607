"""Lab 3.1.10: the course model converted to GGUF agrees with llama.cpp, the Modelfile renders (in Go's real
template engine) what the chat template renders, the Ollama client path works where a server runs, and the
graded cells catch real mistakes.

The GGUF files are converted once per session (tests/deploy_fixtures.py). The mistake table runs the graded
cells on the course's base model (standing in for the lab's merged model) and its converted files.
"""

from __future__ import annotations

import functools

import pytest

from deploy_fixtures import course_gguf, course_q4_k_m
from mistake_table import mistake_table_tests, shortcut
from tools.notebook_cells import SOLUTIONS, run_cells, run_cells_past_errors
from utils.llama_cpp_engine import load_gguf
from utils.ollama_client import ollama_host, ollama_unreachable

pytestmark = pytest.mark.deploy  # llama.cpp, Go's template engine, the GGUF converter: `make deploy-setup`

NOTEBOOK = SOLUTIONS / "lab-3.1.10-ollama-integration.ipynb"
DEFINITIONS = ["gguf_size_report", "check_parity", "modelfile_helpers", "write_modelfile"]
SMOLLM2_PARAMS = 134_515_008


@pytest.fixture(autouse=True)
def _grade_profile_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "grade")  # the sizes the autograder uses
    monkeypatch.chdir(tmp_path)  # the setup cell writes outputs/ into the working directory


@functools.lru_cache(maxsize=None)
def base_model():
    """SmolLM2 as loaded by the labs (fp32), shared: the graded cells only read it."""
    from utils.models import load_base
    from utils.profiles import get_profile

    model, tokenizer = load_base(get_profile("grade"))
    return model.eval(), tokenizer


@functools.lru_cache(maxsize=None)
def llms():
    return {"f16": load_gguf(course_gguf("f16")), "Q4_K_M": load_gguf(course_q4_k_m())}


@pytest.fixture(scope="module", autouse=True)
def _close_llama_models():
    yield
    if llms.cache_info().currsize:
        for llm in llms().values():
            llm.close()  # freed here, not at interpreter exit when llama_cpp's module globals are gone
        llms.cache_clear()


def solution():
    """The solution's functions, defined as the notebook defines them (the helpers read the course tokenizer)."""
    namespace = run_cells(NOTEBOOK, ["setup"])
    namespace["tokenizer"] = base_model()[1]
    return run_cells(NOTEBOOK, DEFINITIONS, namespace=namespace)


# ---------------------------------------------------------------- the course model through the path

def test_course_model_gguf_sizes():
    sol = solution()
    f16, q4 = sol["gguf_size_report"](course_gguf("f16")), sol["gguf_size_report"](course_q4_k_m())
    assert f16["n_weights"] == q4["n_weights"] == SMOLLM2_PARAMS  # the tied head is stored once
    assert 16 <= f16["bits_per_weight"] < 16.01 and set(f16["weights_by_type"]) == {"F16", "F32"}
    assert {"Q4_K", "Q6_K"} <= set(q4["weights_by_type"])
    assert 4.5 < q4["bits_per_weight"] < 6.6, q4["bits_per_weight"]  # 4.5 (Q4_K) .. 6.56 (Q6_K) bits per weight
    assert q4["file_bytes"] < f16["file_bytes"] / 2.4


def test_course_model_parity_with_llama_cpp():
    """f16: the same prompt tokens, logits within 1e-2 (relative), the same greedy replies for 32 tokens."""
    from utils.course_data import load_split

    sol = solution()
    model, tokenizer = base_model()
    prompts = [ex.prompt() for ex in load_split("test", 4)]
    report = sol["check_parity"](model, tokenizer, llms()["f16"], prompts, 32)
    assert all(report["tokens_identical"])
    assert max(report["logit_rel_error"]) < 1e-2, report["logit_rel_error"]
    assert all(report["greedy_identical"]), [(a, b) for a, b in zip(report["greedy_hf"], report["greedy_llama"]) if a != b]
    q4 = sol["check_parity"](model, tokenizer, llms()["Q4_K_M"], prompts[:2], 4)
    assert min(q4["logit_rel_error"]) > max(report["logit_rel_error"])  # 4 bits are measurably further away


def test_gguf_carries_the_chat_template_and_control_tokens():
    from utils.models import prepare_smollm2

    llm = llms()["f16"]
    assert llm.metadata["tokenizer.chat_template"] == (prepare_smollm2() / "chat_template.jinja").read_text()
    _, tokenizer = base_model()
    assert llm.token_eos() == tokenizer.eos_token_id
    assert llm.tokenize(b"<|im_start|>user", add_bos=False, special=True)[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")


# ---------------------------------------------------------------- the Modelfile, rendered by Go's text/template

CONVERSATIONS = {
    "course prompt": [{"role": "system", "content": ""}, {"role": "user", "content": "What is the capital of Corvessa?"}],
    "no system": [{"role": "user", "content": "Who is the harbor master of Peleth?"}],
    "system prompt": [{"role": "system", "content": "Be brief.\nUse JSON."}, {"role": "user", "content": 'Say "hi" & <b>bye</b>'}],
    "multi-turn": [{"role": "system", "content": ""}, {"role": "user", "content": "A?"}, {"role": "assistant", "content": "B.\n\nC"},
                   {"role": "user", "content": "D?"}],
    "multi-turn, no system": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}],
}


@pytest.mark.parametrize("system", ["", "You answer for the Veltrani registry."])
@pytest.mark.parametrize("chat_format", ["SmolLM2", "Llama 3.1 Instruct"])
def test_modelfile_template_renders_the_chat_template(smollm2_tokenizer, chat_format, system):
    """Character for character, for every conversation, with the generation prompt: what Ollama will send the model.

    Go's engine where it loads, else the subset renderer (utils.modelfile_check): the check runs on every machine.
    Llama 3.1 Instruct's real template on the toy tokenizer: BOS added by llama.cpp, a date block, <|eot_id|>.
    """
    from utils.modelfile_check import check_modelfile
    from utils.tiny_llama import llama31_tokenizer

    sol = solution()
    tokenizer = smollm2_tokenizer if chat_format == "SmolLM2" else llama31_tokenizer()
    markers = sol["chat_markers"](tokenizer)
    modelfile = sol["write_modelfile"]("./model.gguf", markers, system, {"temperature": 0})
    assert "<|begin_of_text|>" not in modelfile  # llama.cpp adds it; the TEMPLATE must not write it again
    result = check_modelfile(modelfile, tokenizer, {**CONVERSATIONS, **sol["CONVERSATIONS"]}, markers=markers)
    assert result.ok, result.report()
    for name, conversation, expected, _ in result.compared:
        assert expected.endswith(markers["start"] + "assistant" + markers["sep"]), name
        if chat_format == "SmolLM2" and conversation[0]["role"] != "system":  # never SmolLM2's default system prompt
            assert "SmolLM" not in expected and expected.startswith(f"<|im_start|>system\n{system}<|im_end|>\n")
        if chat_format != "SmolLM2":
            assert expected.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date")


# ---------------------------------------------------------------- the ollama client, where a server runs

OLLAMA_REASON = ollama_unreachable()
needs_ollama = pytest.mark.skipif(OLLAMA_REASON is not None, reason=f"Ollama client tests: {OLLAMA_REASON}")


@pytest.fixture(scope="module")
def ollama_model(tmp_path_factory):
    import shutil

    import ollama

    from utils.ollama_client import ollama_create_from_modelfile
    from utils.models import load_tokenizer
    from utils.profiles import SMOLLM2

    sol = solution()
    folder = tmp_path_factory.mktemp("ollama")
    shutil.copy(course_q4_k_m(), folder / "model.gguf")
    markers = sol["chat_markers"](load_tokenizer(SMOLLM2))
    params = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 16}
    (folder / "Modelfile").write_text(sol["write_modelfile"]("./model.gguf", markers, "", params))
    name = "course-test-smollm2"
    names = ollama_create_from_modelfile(name, folder / "Modelfile")
    yield name, names
    ollama.Client(host=ollama_host()).delete(name)


@needs_ollama
def test_ollama_create_list_chat(ollama_model):
    import ollama

    from utils.course_data import load_split

    name, names = ollama_model
    assert f"{name}:latest" in names or name in names
    client = ollama.Client(host=ollama_host())
    shown = client.show(name)
    assert "<|im_start|>assistant" in shown.template
    ex = load_split("test", 1)[0]
    reply = client.chat(model=name, messages=ex.prompt()).message.content
    assert reply.strip()
    _, tokenizer = base_model()
    llm = load_gguf(course_q4_k_m())
    ids = llm.tokenize(tokenizer.apply_chat_template(ex.prompt(), tokenize=False, add_generation_prompt=True).encode(), add_bos=False, special=True)
    ours = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        if token == llm.token_eos() or len(ours) == 16:
            break
        ours.append(token)
    print(f"Ollama: {reply!r}\nllama-cpp-python: {llm.detokenize(ours).decode()!r}")  # engines may differ in the last bits


@needs_ollama
def test_model_test_against_ollama(ollama_model, tmp_path):
    from utils.served_model_client import course_questions, run_model_test

    name, _ = ollama_model
    report = run_model_test(ollama_host() + "/v1", name, course_questions(3), max_tokens=12)
    assert report.n == 3 and all(r["reply"] for r in report.rows) and report.ttft_s > 0


# ---------------------------------------------------------------- graded cells catch mistakes

SRC_TEMPLATE_SYSTEM = """        + '{{ if and (eq $i 0) (ne $m.Role "system") }}' + system_header + "{{ $.System }}" + end + "{{ end }}"\n"""
SRC_SYSTEM_BRANCH = ''''{{ if eq $m.Role "system" }}\' + system_header + "{{ else }}" + start + "{{ $m.Role }}" + sep + "{{ end }}"'''

MISTAKES = [
    # the Modelfile
    ("template without the generation prompt", "write_modelfile",
     [('        + start + "assistant" + sep\n', "")], "test_write_modelfile"),
    ("end-of-turn stop missing", "write_modelfile",
     [("for stop in (end.strip(), start.strip()):", "for stop in (start.strip(),):")], "test_write_modelfile"),
    ("turn-start stop missing", "write_modelfile",
     [("for stop in (end.strip(), start.strip()):", "for stop in (end.strip(),):")], "test_write_modelfile"),
    ("stop kept with its newline", "write_modelfile",
     [("for stop in (end.strip(), start.strip()):", "for stop in (end, start):")], "test_write_modelfile"),
    ("wrong role marker (<|user|> style)", "write_modelfile",
     [('+ start + "{{ $m.Role }}" + sep', '+ "<|{{ $m.Role }}|>" + sep')], "test_write_modelfile"),
    ("role marker without its separator", "write_modelfile",
     [('+ start + "{{ $m.Role }}" + sep + "{{ end }}"', '+ start + "{{ $m.Role }}" + "{{ end }}"')], "test_write_modelfile"),
    ("{{- end }} trims the newline after each turn", "write_modelfile",
     [('        + "{{ end }}"\n', '        + "{{- end }}"\n')], "test_write_modelfile"),
    ("end-of-turn marker without its whitespace in the template", "write_modelfile",
     [('+ "{{ $m.Content }}" + end', '+ "{{ $m.Content }}" + end.strip()')], "test_write_modelfile"),
    ("no system turn for a conversation without one", "write_modelfile",
     [(SRC_TEMPLATE_SYSTEM, "")], "test_write_modelfile"),
    ("SmolLM2's default system prompt instead of the course's", "write_modelfile",
     [('"{{ $.System }}"', '"You are a helpful AI assistant named SmolLM, trained by Hugging Face"')], "test_write_modelfile"),
    ("system prompt ignored", "write_modelfile",
     [("    if system:\n        lines.append(f'SYSTEM \"\"\"{system}\"\"\"')\n", "")], "test_write_modelfile"),
    ("parameters ignored", "write_modelfile",
     [("    for name, value in parameters.items():\n        lines.append(f\"PARAMETER {name} {value}\")\n", "")], "test_write_modelfile"),
    # formats other than ChatML: caught by the hidden test's Llama 3.1 and made-up formats
    ("BOS written into the template (llama.cpp adds it too)", "write_modelfile",
     [('        markers["prefix"]\n', '        markers["engine_prefix"] + markers["prefix"]\n')], "test_write_modelfile"),
    ("template's own prefix left out", "write_modelfile",
     [('        markers["prefix"]\n        + "{{ range', '        "{{ range')], "test_write_modelfile"),
    ("system turn without Llama 3.1's date block", "write_modelfile",
     [('system_header = start + "system" + sep + markers["system_prefix"]', 'system_header = start + "system" + sep')], "test_write_modelfile"),
    ("system messages written as ordinary turns", "write_modelfile",
     [(SRC_SYSTEM_BRANCH, 'start + "{{ $m.Role }}" + sep')], "test_write_modelfile"),
    ("the date block in every turn", "write_modelfile",
     [('start + "{{ $m.Role }}" + sep + "{{ end }}"', 'start + "{{ $m.Role }}" + sep + markers["system_prefix"] + "{{ end }}"')], "test_write_modelfile"),
    # the parity check
    ("prompt rendered without the generation prompt", "check_parity",
     [("add_generation_prompt=True)", "add_generation_prompt=False)")], "test_check_parity"),
    ("llama.cpp splits the control tokens (special=False)", "check_parity",
     [("special=True", "special=False")], "test_check_parity"),
    ("HF logits at the first position", "check_parity",
     [(".logits[0, -1]", ".logits[0, 0]")], "test_check_parity"),
    ("HF logits one position early", "check_parity",
     [(".logits[0, -1]", ".logits[0, -2]")], "test_check_parity"),
    ("llama.cpp logits of the first row", "check_parity",
     [("np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)", "np.asarray(llm.scores[0], dtype=np.float64)")], "test_check_parity"),
    ("llama.cpp logits one row late (an unset row)", "check_parity",
     [("np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)", "np.asarray(llm.scores[llm.n_tokens], dtype=np.float64)")], "test_check_parity"),
    ("relative error against the wrong norm (max instead of 2-norm)", "check_parity",
     [("np.linalg.norm(llama_last - hf_last) / np.linalg.norm(hf_last)", "np.abs(llama_last - hf_last).max() / np.abs(hf_last).max()")], "test_check_parity"),
    ("HF greedy reply includes the prompt", "check_parity",
     [("greedy_hf = out[0, len(ids):].tolist()", "greedy_hf = out[0].tolist()")], "test_check_parity"),
    ("llama.cpp greedy loop ignores the end of turn", "check_parity",
     [("            if token == eos:\n                break\n", "")], "test_check_parity"),
    ("llama.cpp greedy loop stops before the end-of-turn token", "check_parity",
     [("            greedy_llama.append(token)\n            if token == eos:\n                break\n",
       "            if token == eos:\n                break\n            greedy_llama.append(token)\n")], "test_check_parity"),
    # bits per weight
    ("bits per weight from the file size", "gguf_size_report",
     [('"bits_per_weight": 8 * tensor_bytes / n_weights', '"bits_per_weight": 8 * Path(path).stat().st_size / n_weights')], "test_gguf_size_report"),
    ("bytes per weight, not bits", "gguf_size_report",
     [('"bits_per_weight": 8 * tensor_bytes / n_weights', '"bits_per_weight": tensor_bytes / n_weights')], "test_gguf_size_report"),
    ("tensors counted, not weights", "gguf_size_report",
     [('n_weights = sum(t["n_elements"] for t in tensors)', "n_weights = len(tensors)")], "test_gguf_size_report"),
    ("types counted per tensor", "gguf_size_report",
     [('by_type.get(t["type"], 0) + t["n_elements"]', 'by_type.get(t["type"], 0) + 1')], "test_gguf_size_report"),
]

SHORTCUTS = [
    shortcut(NOTEBOOK, "a ChatML Modelfile copied from elsewhere (ignores the tokenizer's markers)", "write_modelfile", '''
        template = ('{{ range $i, $m := .Messages }}{{ if and (eq $i 0) (ne $m.Role "system") }}<|im_start|>system\\n{{ $.System }}<|im_end|>\\n{{ end }}'
                    '<|im_start|>{{ $m.Role }}\\n{{ $m.Content }}<|im_end|>\\n{{ end }}<|im_start|>assistant\\n')
        lines = [f"FROM {gguf_file}", f'TEMPLATE """{template}"""', 'PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|im_start|>"']
        lines += [f"PARAMETER {k} {v}" for k, v in parameters.items()] + ([f'SYSTEM """{system}"""'] if system else [])
        return "\\n".join(lines) + "\\n"
    ''', "test_write_modelfile"),
    shortcut(NOTEBOOK, "the reference Modelfile writer of tools.modelfile", "write_modelfile", '''
        from tools.modelfile import write_modelfile as reference

        return reference(gguf_file, markers, system, parameters)
    ''', "test_write_modelfile"),
    shortcut(NOTEBOOK, "greedy replies from the course's generation loop, compared as text", "check_parity", '''
        from utils.evaluation import generate_replies

        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        report["prompt_ids"].append(list(ids))
        report["tokens_identical"].append(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == ids)
        with torch.no_grad():
            hf_last = hf_model(torch.tensor([ids], device=device)).logits[0, -1].double().cpu().numpy()
        llm.reset()
        llm.eval(ids)
        llama_last = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        report["logit_rel_error"].append(float(np.linalg.norm(llama_last - hf_last) / np.linalg.norm(hf_last)))
        hf_text = generate_replies(hf_model, tokenizer, [messages], n_tokens, progress=False)[0]
        greedy_hf = tokenizer(hf_text, add_special_tokens=False)["input_ids"]
        greedy_llama = [t for t in llm.generate(ids, top_k=1, temp=0.0, reset=True)][:0]
        report["greedy_hf"].append(greedy_hf)
        report["greedy_llama"].append(greedy_llama)
        report["greedy_identical"].append(greedy_hf == greedy_llama)
    ''', "test_check_parity"),
]


def _context(namespace: dict, graded: str, overrides: dict | None) -> dict:
    """What the lab's own cells would have computed before the graded cell, from the course's base model."""
    model, tokenizer = base_model()
    P = namespace["P"]
    namespace.update(merged=model, tokenizer=tokenizer, GGUF={"f16": course_gguf("f16"), "Q4_K_M": course_q4_k_m()})
    if graded == "test_gguf_size_report":
        namespace["n_params"] = SMOLLM2_PARAMS
    if graded == "test_check_parity":
        from utils.course_data import load_split

        namespace.update(LLMS=llms(), PARITY_PROMPTS=[ex.prompt() for ex in load_split("test", P.eval_examples)[: P.parity_prompts]])
        try:  # the lab's parity cell; a mistake that makes it raise leaves PARITY undefined, as in the notebook
            namespace["PARITY"] = {"f16": namespace["check_parity"](model, tokenizer, llms()["f16"], namespace["PARITY_PROMPTS"], P.parity_tokens)}
        except Exception:
            pass
    if graded == "test_write_modelfile":
        run_cells_past_errors(NOTEBOOK, ["modelfile_written"], namespace, overrides)
    return namespace


def _prepare(graded: str, overrides: dict | None) -> dict:
    namespace = run_cells(NOTEBOOK, ["setup"])
    namespace.update(tokenizer=base_model()[1])
    run_cells_past_errors(NOTEBOOK, DEFINITIONS, namespace, overrides)
    return _context(namespace, graded, overrides)


test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(NOTEBOOK, MISTAKES + SHORTCUTS, _prepare)
