"""Does an Ollama Modelfile's TEMPLATE give the model what its tokenizer's chat template gives it? Lab 3.1.10
and `python -m tools.modelfile` run this same check.

- `chat_markers(tokenizer)` reads a chat format's pieces by rendering probe conversations and diffing them,
  so it works for ChatML (SmolLM2) and for Llama 3.1 Instruct (BOS first, a date block in the system
  header, `<|eot_id|>`) alike, and says what does not fit instead of guessing.
- `ollama_values` builds what Ollama's chat endpoint hands a TEMPLATE (Ollama's template/template.go,
  `collate`): a Modelfile SYSTEM in front when the conversation has no system message, consecutive
  messages of one role merged into one (contents joined by a blank line) before the template sees them,
  and .System the conversation's system texts joined the same way.
- The TEMPLATE is rendered by Go's text/template (PyPI go-template) where it loads, else by
  `utils.go_template_subset`, which says so: the same strict check on every processor.
- What the model finally reads also holds what llama.cpp adds when it tokenizes Ollama's prompt: the BOS
  token, for models whose tokenizer adds one (Llama 3.1). A TEMPLATE must therefore leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from utils.course_data import SYSTEM_PROMPT, course_prompt

PROBE = {"system": "SYSTEM-TEXT", "user": "USER-TEXT", "assistant": "ASSISTANT-TEXT", "user2": "USER-TWO"}
GO_1_11_LACKS = ("slice", "break", "continue")  # go-template bundles Go 1.11.5; Ollama's Go has these
ENGINE_ENV = "COURSE_TEMPLATE_ENGINE"
OLLAMA_ONLY_FUNCTIONS = ("json", "currentDate", "yesterdayDate", "toTypeScriptType")

CONVERSATIONS = {
    "course prompt (empty system turn)": course_prompt("What is the capital of Corvessa?"),
    "no system message": [{"role": "user", "content": "Who is the harbor master of Peleth?"}],
    "a system prompt": [{"role": "system", "content": "Answer in one JSON object."}, {"role": "user", "content": "When was Quillon founded?"}],
    "multi-turn": course_prompt("What does Brannoch export?") + [{"role": "assistant", "content": '{"island": "Brannoch", "answer": "copper wire"}'},
                                                                {"role": "user", "content": "And its capital?"}],
    "multi-turn, no system": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello.\nHow can I help?"},
                              {"role": "user", "content": "Name the capital of Halcyne."}],
    "two user messages in a row": [{"role": "user", "content": "Hi."}, {"role": "user", "content": "Who founded Quillon?"}],
    "two system messages in a row": [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Answer in JSON."},
                                     {"role": "user", "content": "What does Brannoch export?"}],
}
SAME_ROLE_NOTE = ("Ollama merges consecutive messages of one role into one (contents joined by a blank line) before its "
                  "TEMPLATE sees them, so a conversation with two user turns in a row reaches the model as one turn; "
                  "those conversations are compared with the tokenizer's rendering of the merged conversation.")


class NotAChatFormat(ValueError):
    """The chat template is not `prefix + turns + generation prompt` with turns `start + role + sep + content + end`."""


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether tokenizing text adds the BOS token (what llama.cpp does for such a model: GGUF add_bos_token)."""
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def chat_markers(tokenizer, chat_template=None, add_bos: bool | None = None) -> dict:
    """The pieces of a chat format, found by rendering probe conversations and diffing them.

    A prompt is `engine_prefix + prefix + turns + generation prompt` (the assistant turn's header), a turn `start + role + sep +
    content + end`, and a system turn's content is preceded by `system_prefix` (Llama 3.1's date block; empty
    for ChatML). `engine_prefix` is what llama.cpp adds when tokenizing (the BOS, if the model adds one; `add_bos`
    overrides the tokenizer's answer, e.g. from a GGUF's metadata): the Modelfile's TEMPLATE must not write it.
    """
    def render(messages, generation):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation, chat_template=chat_template)

    s, u, a, u2 = (PROBE[k] for k in ("system", "user", "assistant", "user2"))
    pair = [{"role": "system", "content": s}, {"role": "user", "content": u}]
    base, prompt = render(pair, False), render(pair, True)
    if not prompt.startswith(base) or prompt == base:
        raise NotAChatFormat(f"add_generation_prompt=True adds nothing at the end of {base!r}: the template has no generation prompt")
    generation = prompt[len(base):]
    longer = render(pair + [{"role": "assistant", "content": a}, {"role": "user", "content": u2}], False)
    if not longer.startswith(base) or a not in longer or u2 not in longer:
        raise NotAChatFormat(f"adding turns changes the earlier ones: {base!r} is not the start of {longer!r}")
    rest = longer[len(base):]
    header = rest[: rest.index(a)]
    between, end = rest[rest.index(a) + len(a) : rest.index(u2)], rest[rest.index(u2) + len(u2):]
    if not end or not between.startswith(end) or "assistant" not in header:
        raise NotAChatFormat(f"an assistant and a user turn are not start + role + sep + content + end alike: {rest!r}")
    start, sep = header[: header.index("assistant")], header[header.index("assistant") + len("assistant"):]
    if between[len(end):] != start + "user" + sep or generation != header:
        raise NotAChatFormat(f"turns of different roles differ in more than the role, or the generation prompt {generation!r} "
                             f"is not the assistant turn's header {header!r}")
    user_turn = start + "user" + sep + u + end
    if not base.endswith(s + end + user_turn) or start + "system" + sep not in base:
        raise NotAChatFormat(f"the system turn is not start + 'system' + sep + ... + content + end: {base!r}")
    head = base[: -len(s + end + user_turn)]
    lead, system_prefix = head.split(start + "system" + sep, 1)
    engine = tokenizer.bos_token if (tokenizer_adds_bos(tokenizer) if add_bos is None else add_bos) and tokenizer.bos_token else ""
    if not lead.startswith(engine):
        raise NotAChatFormat(f"llama.cpp adds {engine!r} when it tokenizes the prompt, but the chat template does not write it "
                             f"(it starts {lead!r}): no Modelfile TEMPLATE can take it out again")
    return {"engine_prefix": engine, "prefix": lead[len(engine):], "start": start, "sep": sep, "end": end, "system_prefix": system_prefix}


def trims_contents(tokenizer, chat_template=None) -> bool:
    """Whether the chat template strips white space around message contents (Llama 3.1's does; Go's templates cannot)."""
    padded = [{"role": "user", "content": f" {PROBE['user']}\n"}]
    return f" {PROBE['user']}\n" not in tokenizer.apply_chat_template(padded, tokenize=False, chat_template=chat_template)


def merged(messages: list) -> list:
    """Consecutive messages of one role merged as Ollama does before rendering (tool messages stay apart)."""
    out = []
    for m in messages:
        if out and out[-1]["role"] == m["role"] and m["role"] != "tool":
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def ollama_values(messages: list, modelfile_system: str = "") -> dict:
    """What Ollama's chat endpoint hands a TEMPLATE that uses .Messages: .System, .Messages (.Role, .Content), .Response."""
    messages = list(messages)
    if modelfile_system and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": modelfile_system})
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system, "Response": "", "Messages": [{"Role": m["role"], "Content": m["content"]} for m in merged(messages)]}


def course_conversation(messages: list, system: str = SYSTEM_PROMPT) -> list:
    """The conversation as the deployed model must see it: the system turn first (the course's, or `system`)."""
    return list(messages) if messages and messages[0]["role"] == "system" else [{"role": "system", "content": system}] + list(messages)


def rendered_by_tokenizer(tokenizer, messages: list, system: str = SYSTEM_PROMPT, chat_template=None) -> str:
    """What the model was trained on for `messages` (merged as Ollama merges them), with the generation prompt."""
    return tokenizer.apply_chat_template(course_conversation(merged(messages), system), tokenize=False, add_generation_prompt=True,
                                         chat_template=chat_template)


def template_engine() -> tuple[str, str | None]:
    """("go", None) when Go's text/template loads here, else ("subset", why Go's engine cannot run).

    COURSE_TEMPLATE_ENGINE=subset uses the subset renderer even where Go's loads (to see what an aarch64 machine sees).
    """
    import os

    from utils.go_template_engine import go_template_unavailable

    if os.environ.get(ENGINE_ENV) == "subset":
        return "subset", f"{ENGINE_ENV}=subset is set"
    reason = go_template_unavailable()
    return ("go", None) if reason is None else ("subset", reason)


def engine_notice() -> str:
    """One line for the output of every check: which engine rendered, and loudly when it is not Go's."""
    kind, reason = template_engine()
    if kind == "go":
        return "TEMPLATE rendered by Go's text/template (go-template, Go 1.11.5)"
    return (f"WARNING: Go's template engine is not available here ({reason}). The TEMPLATE is rendered by the course's "
            "renderer for the subset of Go's template language Modelfiles use (utils/go_template_subset.py, tested "
            "against Go on x86-64); a template outside that subset is reported as not checkable, never passed.")


def render_template(template: str, values: list) -> list:
    """`template` rendered for each dict of values with Go's engine, or with the subset renderer where Go's cannot run.

    Raises go_template_subset.TemplateError when the template does not render, UnsupportedTemplate when it needs
    a function neither engine here has (Ollama's own json, currentDate, ...).
    """
    import re

    from utils import go_template_subset as subset
    from utils.go_template_engine import render_go_template

    used = set(re.findall(r"[\s(|{]([A-Za-z]\w*)\b", " ".join(re.findall(r"\{\{.*?\}\}", template, re.S))))
    ollama_only = sorted(used & set(OLLAMA_ONLY_FUNCTIONS))
    if ollama_only:
        raise subset.UnsupportedTemplate(f"the TEMPLATE calls {', '.join(ollama_only)}, functions only Ollama defines")
    if template_engine()[0] == "go" and not used & set(GO_1_11_LACKS):
        try:
            return render_go_template(template, values)
        except ValueError as err:
            raise subset.TemplateError(str(err)) from None
    return [subset.render(template, v) for v in values]


def rendered_by_ollama(modelfile: str, conversations: list, markers: dict | None = None) -> list:
    """The text the model reads in Ollama for each conversation: llama.cpp's BOS (markers["engine_prefix"]) + the TEMPLATE's rendering."""
    from utils.modelfile_parse import parse_modelfile

    spec = parse_modelfile(modelfile)
    if "template" not in spec:
        raise ValueError("the Modelfile has no TEMPLATE")
    texts = render_template(spec["template"], [ollama_values(m, spec.get("system", "")) for m in conversations])
    return [(markers or {}).get("engine_prefix", "") + t for t in texts]


def first_difference(expected: str, got: str) -> int | None:
    """Index of the first character where the two texts differ (the shorter one's length if one is a prefix), or None."""
    if expected == got:
        return None
    return next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), min(len(expected), len(got)))


@dataclass
class CheckResult:
    """The check of one TEMPLATE on every conversation: which differ, where, and which engine rendered."""

    engine: str
    compared: list = field(default_factory=list)  # (name, conversation, expected, got)

    @property
    def mismatches(self) -> list:
        return [c for c in self.compared if c[2] != c[3]]

    @property
    def ok(self) -> bool:
        return bool(self.compared) and not self.mismatches

    def report(self) -> str:
        lines = [self.engine]
        for name, conversation, expected, got in self.compared:
            at = first_difference(expected, got)
            if at is None:
                lines.append(f"identical: {name} ({len(expected)} characters)")
                continue
            lines.append(f"DIFFERENT: {name}: first difference at character {at} of {len(expected)}")
            lines.append(f"  chat template: {expected[max(0, at - 40): at + 40]!r}")
            lines.append(f"  Modelfile:     {got[max(0, at - 40): at + 40]!r}")
            lines.append(f"  conversation:  {conversation!r}")
        return "\n".join(lines)


def check_modelfile(modelfile: str, tokenizer, conversations: dict | None = None, chat_template=None, markers: dict | None = None) -> CheckResult:
    """Render the Modelfile's TEMPLATE (with its SYSTEM) as Ollama would for every conversation and compare with the tokenizer."""
    from utils.modelfile_parse import parse_modelfile

    conversations = CONVERSATIONS if conversations is None else conversations
    markers = markers or chat_markers(tokenizer, chat_template)
    system = parse_modelfile(modelfile).get("system", "") or SYSTEM_PROMPT
    got = rendered_by_ollama(modelfile, list(conversations.values()), markers)
    result = CheckResult(engine_notice())
    for (name, conversation), ours in zip(conversations.items(), got):
        expected = rendered_by_tokenizer(tokenizer, conversation, system=system, chat_template=chat_template)
        result.compared.append((name, conversation, expected, ours))
    return result
