"""Lab 3.1.6: the shipped data is what its generators produce, the solution agrees with TRL and
transformers, and the graded tests catch real mistakes.

The solution's own cells are executed (tools/notebook_cells.py): nothing of the graded code lives
in `utils`. Each MISTAKES entry is a plausible student bug applied to the solution's source; the
named graded cell (hidden tests included) must fail on it and pass on the unmodified solution.
"""

import functools
import json

import pytest

from mistake_table import mistake_table_tests, shortcut
from tools.build_data import build_broken, expected_files
from tools.notebook_cells import SOLUTIONS, cell_sources, run_cells
from utils.course_data import PHRASINGS, load_split, parse_jsonl, phrasing_split, read_jsonl
from utils.raw_formats import BROKEN_FILE, PROBLEMS_FILE, SAMPLE_FILES, load_broken, load_broken_problems, load_samples

BROKEN_PROBLEMS = load_broken_problems()

NOTEBOOK = SOLUTIONS / "lab-3.1.6-dataset-preparation.ipynb"
DEFINITIONS = ["setup", "to_messages", "validate_records", "mask_prompt_labels", "trl_reference", "make_preference_pairs"]


@pytest.fixture(scope="module")
def solution():
    return _solution()


# ---------------------------------------------------------------- shipped data


def test_shipped_raw_files_equal_the_generator():
    files = expected_files()
    for name in list(SAMPLE_FILES.values()) + [BROKEN_FILE]:
        assert read_jsonl(name) == parse_jsonl(files[name], name), f"utils/data/{name} is stale: run `python -m tools.build_data`"
    assert json.loads(files[PROBLEMS_FILE]) == {str(i): p for i, p in BROKEN_PROBLEMS.items()}


def test_broken_file_plants_every_kind_of_problem_among_good_records():
    records, problems = build_broken()
    assert problems == BROKEN_PROBLEMS and len(load_broken()) == len(records)
    needed = {"missing role", "empty reply", "wrong type", "not ending with assistant", "over-long", "unknown format", "unknown role"}
    assert needed <= set(problems.values())
    assert len(records) - len(problems) >= len(problems), "good records must outnumber the bad ones"
    assert 0 not in problems and len(records) - 1 not in problems, "bad records sit between good ones"


def test_samples_cover_every_course_example_in_three_formats():
    samples = load_samples()
    assert set(samples) == {"alpaca", "sharegpt", "openai"}
    text = json.dumps(samples)
    for split in ("train", "validation", "test"):
        for ex in load_split(split):
            assert json.dumps(ex.question)[1:-1] in text, ex.id


def test_parse_jsonl_names_the_file_and_line():
    with pytest.raises(ValueError, match=r"x\.jsonl line 2"):
        parse_jsonl('{"a": 1}\n{not json}\n', "x.jsonl")
    assert parse_jsonl('{"a": 1}\n\n[2]\n', "x.jsonl") == [{"a": 1}, [2]]


# ---------------------------------------------------------------- validation (acceptance test)

PROBLEM_WORDS = {
    "missing role": ["role", "from"],
    "empty reply": ["empty"],
    "empty prompt": ["empty"],
    "wrong type": ["string", "list", "object"],
    "not ending with assistant": ["end"],
    "over-long": ["token"],
    "unknown role": ["unknown role"],
    "no messages": ["no messages"],
    "missing field": ["output"],
    "unknown format": ["format"],
    "no user turn": ["user"],
}


@pytest.mark.parametrize("max_tokens", [128, 256])
def test_validator_reports_every_broken_record_and_keeps_every_good_one(solution, max_tokens):
    broken = load_broken()
    good, errors = solution["validate_records"](broken, solution["tokenizer"], max_tokens)
    assert [i for i, _ in errors] == sorted(BROKEN_PROBLEMS), "every bad record reported once, by its index"
    assert good == [solution["to_messages"](r) for i, r in enumerate(broken) if i not in BROKEN_PROBLEMS], "no good record lost"
    for index, problem in errors:
        words = PROBLEM_WORDS[BROKEN_PROBLEMS[index]]
        assert any(w in problem for w in words), f"record {index} ({BROKEN_PROBLEMS[index]}): the error {problem!r} does not name the problem"


def test_sample_files_are_all_valid(solution):
    for fmt, records in load_samples().items():
        good, errors = solution["validate_records"](records, solution["tokenizer"], solution["MAX_TOKENS"])
        assert not errors and len(good) == len(records), (fmt, errors[:3])


# ---------------------------------------------------------------- labels against the libraries


def _trl_prepared(tokenizer, conversations):
    import tempfile

    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    toy = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = SFTTrainer(
            model=toy,
            args=SFTConfig(output_dir=tmp, max_length=None, report_to="none", use_cpu=True, bf16=False),
            train_dataset=Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in conversations]),
            processing_class=tokenizer,
        )
        return list(trainer.train_dataset)


def test_solution_mask_equals_trl_completion_mask_on_every_single_turn_sample(solution):
    """Every single-turn conversation of the three sample files, prepared by TRL's SFTTrainer (prompt/completion)."""
    to_messages, mask = solution["to_messages"], solution["mask_prompt_labels"]
    tokenizer = solution["tokenizer"]
    conversations = [to_messages(r) for records in load_samples().values() for r in records]
    single = [c for c in conversations if sum(m["role"] == "assistant" for m in c) == 1]
    assert len(single) > 300 and any(c[0]["role"] == "system" for c in single) and any("\n\n" in c[0]["content"] for c in single)
    reference = _trl_prepared(tokenizer, single)
    for conversation, ref in zip(single, reference, strict=True):
        mine = mask(conversation, tokenizer)
        assert mine["input_ids"] == ref["input_ids"]
        assert mine["labels"] == ref["labels"], conversation
        assert [t if m else -100 for t, m in zip(ref["input_ids"], [l != -100 for l in ref["labels"]])] == mine["labels"]


# SmolLM2's template with {% generation %} markers around what the assistant writes (reply, <|im_end|>, newline),
# so that transformers' own `return_assistant_tokens_mask` gives the reference mask for multi-turn conversations.
MARKED_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_solution_mask_equals_transformers_assistant_mask_on_multi_turn_samples(solution):
    to_messages, mask, tokenizer = solution["to_messages"], solution["mask_prompt_labels"], solution["tokenizer"]
    conversations = [to_messages(r) for records in load_samples().values() for r in records]
    multi = [c for c in conversations if sum(m["role"] == "assistant" for m in c) > 1]
    assert len(multi) >= 20
    for conversation in multi + [c for c in conversations if c[0]["role"] == "system"][:20]:
        marked = tokenizer.apply_chat_template(conversation, chat_template=MARKED_TEMPLATE, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        mine = mask(conversation, tokenizer)
        assert marked["input_ids"] == mine["input_ids"], "the marked template must render exactly like the real one"
        assert [l != -100 for l in mine["labels"]] == [bool(b) for b in marked["assistant_masks"]], conversation


def test_mask_rejects_a_template_that_is_not_prefix_stable(solution):
    """A template that renders the last turn differently (as some do) must not give a silently wrong mask."""
    import copy

    tokenizer = copy.deepcopy(solution["tokenizer"])
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}{% if loop.last %}{{ ' [END]' }}{% else %}{{ '\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '\nassistant:' }}{% endif %}"
    )
    with pytest.raises(ValueError):
        solution["mask_prompt_labels"]([{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}, {"role": "user", "content": "R?"}, {"role": "assistant", "content": "B."}], tokenizer)


# ---------------------------------------------------------------- preference data


def test_shipped_preference_files_equal_what_the_solution_produces_now():
    from tools.build_preference_data import DATA, solution_files

    for name, text in solution_files().items():
        assert (DATA / name).read_text(encoding="utf-8") == text, f"utils/data/{name} is stale: run `python -m tools.build_preference_data`"


def test_training_preference_data_never_uses_held_out_wordings():
    from utils.preference_data import load_kto, load_preferences

    wording = {}
    held_out = phrasing_split()
    for split in ("train", "validation", "test"):
        for ex in load_split(split):
            wording[ex.question] = split
            assert ex.phrasing in held_out[ex.field][split]
    for rows, split in [(load_preferences("train"), "train"), (load_kto("train"), "train"), (load_preferences("test"), "test")]:
        assert {wording[r["prompt"][0]["content"]] for r in rows} == {split}
    assert len(load_preferences("train")) == 240 and len(load_kto("train")) == 480 and len(load_preferences("test")) == 80
    assert sum(len(v) for v in PHRASINGS.values()) == 40


def test_preference_loaders_give_trl_ready_datasets(tmp_path):
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    from utils.models import load_tokenizer
    from utils.preference_data import load_kto, load_preferences
    from utils.profiles import SMOLLM2

    pairs = load_preferences("train", as_dataset=True)
    kto = load_kto("train", as_dataset=True)
    assert {"prompt", "chosen", "rejected"} <= set(pairs.column_names) and {"prompt", "completion", "label"} <= set(kto.column_names)
    assert is_conversational(pairs[0]) and is_conversational(kto[0])
    rendered = maybe_apply_chat_template(pairs[0], load_tokenizer(SMOLLM2))
    assert rendered["prompt"].endswith("<|im_start|>assistant\n") and rendered["chosen"].endswith("<|im_end|>\n")
    assert sum(kto["label"]) == len(kto) // 2
    with pytest.raises(ValueError, match="no 'validation' file"):
        load_preferences("validation")


# ---------------------------------------------------------------- graded cells catch the mistakes

USER_MASKING = '''    input_ids = ids(messages)
    labels = list(input_ids)
    for i, message in enumerate(messages):
        if message["role"] != "user":
            continue
        start = len(ids(messages[:i])) if i else 0
        end = len(ids(messages[: i + 1], add_generation_prompt=True))
        labels[start:end] = [-100] * (end - start)
    return {"input_ids": input_ids, "labels": labels}
'''

# (name, solution cell, [(old, new), ...], graded cell that must fail)
MISTAKES = [
    # to_messages
    ("Alpaca input joined with one newline", "to_messages",
     [('fields["instruction"] + "\\n\\n" + fields["input"]', 'fields["instruction"] + "\\n" + fields["input"]')], "test_to_messages"),
    ("Alpaca empty input still appended", "to_messages",
     [('if fields["input"].strip() else fields["instruction"]', 'if True else fields["instruction"]')], "test_to_messages"),
    ("ShareGPT system turns dropped", "to_messages",
     [('        messages.append({"role": roles[speaker], "content": content})',
       '        if roles[speaker] != "system":\n            messages.append({"role": roles[speaker], "content": content})')], "test_to_messages"),
    ("unknown speakers passed through", "to_messages",
     [("if speaker not in roles:", "if False:"), ('"role": roles[speaker], "content": content}', '"role": roles.get(speaker, speaker), "content": content}')], "test_to_messages"),
    ("errors that do not name the offending role", "to_messages",
     [('raise ValueError(f"message {i} has an unknown role {speaker!r}; expected one of {sorted(roles)}")',
       'raise ValueError(f"message {i} has an unknown role")')], "test_to_messages"),
    ("non-string content accepted", "to_messages",
     [("if not isinstance(content, str):", "if content is None:")], "test_to_messages"),
    ("extra keys kept", "to_messages",
     [('messages.append({"role": roles[speaker], "content": content})', 'messages.append({**turn, "role": roles[speaker], "content": content})')], "test_to_messages"),
    # validate_records
    ("bad records dropped silently", "validate_records",
     [("            errors.append((index, problem))", "            pass")], "test_validate_records"),
    ("1-based record indices", "validate_records",
     [("errors.append((index, problem))", "errors.append((index + 1, problem))")], "test_validate_records"),
    ("stops at the first bad record", "validate_records",
     [("            errors.append((index, problem))", "            errors.append((index, problem))\n            break")], "test_validate_records"),
    ("no length check", "validate_records", [("if n_tokens > max_tokens:", "if False:")], "test_validate_records"),
    ("length limit off by one", "validate_records", [("if n_tokens > max_tokens:", "if n_tokens >= max_tokens:")], "test_validate_records"),
    ("whitespace-only reply accepted", "validate_records", [('if not m["content"].strip():', 'if not m["content"]:')], "test_validate_records"),
    ("last speaker not checked", "validate_records", [('if roles[-1] != "assistant":', "if False:")], "test_validate_records"),
    ("role order not checked", "validate_records",
     [('if not body or body[0] != "user":', "if not body:"), ("if body[i] == body[i - 1]:", "if False:")], "test_validate_records"),
    ("crashes on a bad record", "validate_records", [("except ValueError as err:", "except KeyError as err:")], "test_validate_records"),
    # mask_prompt_labels
    ("mask off by one (starts late)", "mask_prompt_labels",
     [("start, end = len(prompt), len(through)", "start, end = len(prompt) + 1, len(through)")], "test_mask_prompt_labels"),
    ("mask off by one (starts early)", "mask_prompt_labels",
     [("start, end = len(prompt), len(through)", "start, end = len(prompt) - 1, len(through)")], "test_mask_prompt_labels"),
    ("end-of-turn token left unlabelled", "mask_prompt_labels",
     [("start, end = len(prompt), len(through)",
       'start, end = len(prompt), len(prompt) + len(tokenizer(message["content"], add_special_tokens=False)["input_ids"])')], "test_mask_prompt_labels"),
    ("labels shifted by hand", "mask_prompt_labels",
     [('return {"input_ids": input_ids, "labels": labels}', 'return {"input_ids": input_ids, "labels": labels[1:] + [-100]}')], "test_mask_prompt_labels"),
    ("system prompt trained on (only user turns masked)", "mask_prompt_labels",
     [(cell_sources(NOTEBOOK)["mask_prompt_labels"].split("### BEGIN SOLUTION\n")[1].split("    ### END SOLUTION")[0], USER_MASKING)], "test_mask_prompt_labels"),
    ("later user turns trained on (labels run to the end)", "mask_prompt_labels",
     [("labels[start:end] = input_ids[start:end]", "labels[start:] = input_ids[start:]")], "test_mask_prompt_labels"),
    ("only the last reply labelled", "mask_prompt_labels",
     [("for i, message in enumerate(messages):", "for i, message in list(enumerate(messages))[-1:]:")], "test_mask_prompt_labels"),
    ("template prefixes not checked (silently wrong mask)", "mask_prompt_labels",
     [("if through != input_ids[: len(through)] or prompt != through[: len(prompt)]:", "if False:")], "test_mask_prompt_labels"),
    ("only the first reply labelled", "mask_prompt_labels",
     [("        labels[start:end] = input_ids[start:end]\n", "        labels[start:end] = input_ids[start:end]\n        break\n")], "test_mask_prompt_labels"),
    # make_preference_pairs
    ("random noise as the rejected reply", "make_preference_pairs",
     [("rejected = format_response(ex.island, rng.choice(others))", 'rejected = "".join(rng.sample("abcdefghij", 6))')], "test_make_preference_pairs"),
    ("wrong fact from another field", "make_preference_pairs",
     [("{facts[ex.field] for island", "{facts[rng.choice(sorted(facts))] for island")], "test_make_preference_pairs"),
    ("wrong fact may be the right one", "make_preference_pairs",
     [("if island != ex.island} - {ex.answer})", "})")], "test_make_preference_pairs"),
    ("chosen and rejected swapped", "make_preference_pairs",
     [('"chosen": [{"role": "assistant", "content": ex.response}]', '"chosen": [{"role": "assistant", "content": rejected}]'),
      ('"rejected": [{"role": "assistant", "content": rejected}]', '"rejected": [{"role": "assistant", "content": ex.response}]')], "test_make_preference_pairs"),
    ("only wrong facts", "make_preference_pairs", [("if position % 2 == 0:", "if True:")], "test_make_preference_pairs"),
    ("prompt as a plain string", "make_preference_pairs",
     [('"prompt": [{"role": "user", "content": ex.question}]', '"prompt": ex.question')], "test_make_preference_pairs"),
    ("not deterministic", "make_preference_pairs", [('rng = random.Random(f"{seed}/{ex.id}")', "rng = random.Random()")], "test_make_preference_pairs"),
    ("kinds in two blocks instead of alternating", "make_preference_pairs",
     [("if position % 2 == 0:", "if position < len(examples) // 2:")], "test_make_preference_pairs"),
    ("one wrong-format form only", "make_preference_pairs",
     [("            rejected = rng.choice([", "            rejected = (lambda forms: forms[2])([")], "test_make_preference_pairs"),
    ("seed ignored", "make_preference_pairs",
     [('rng = random.Random(f"{seed}/{ex.id}")', 'rng = random.Random(f"0/{ex.id}")')], "test_make_preference_pairs"),
    ("KTO labels inverted", "make_preference_pairs",
     [('(("chosen", True), ("rejected", False))', '(("chosen", False), ("rejected", True))')], "test_make_preference_pairs"),
]


@functools.cache
def _solution() -> dict:
    return run_cells(NOTEBOOK, DEFINITIONS)


def _prepare(graded, overrides):
    """The solution's definitions, then the mutated cell run again over them (the others are unchanged)."""
    namespace = dict(_solution())
    return run_cells(NOTEBOOK, list(overrides), overrides=overrides, namespace=namespace) if overrides else namespace


SHORTCUTS = [
    shortcut(NOTEBOOK, "the shipped preference files, looked up by id", "make_preference_pairs", """
        from utils.preference_data import load_preferences

        shipped = {p["id"]: p for split in ("train", "test") for p in load_preferences(split)}
        return [{k: shipped[ex.id][k] for k in ("id", "kind", "prompt", "chosen", "rejected")} for ex in examples]
    """, "test_make_preference_pairs"),
]

test_graded_cells_pass_on_the_solution, test_graded_cell_catches_mistake = mistake_table_tests(NOTEBOOK, MISTAKES + SHORTCUTS, _prepare)
