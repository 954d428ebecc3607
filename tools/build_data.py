"""Regenerate the data shipped in `utils/data/` from the course's definitions, deterministically.

    python -m tools.build_data           # rewrite the course splits and Lab 3.1.6's raw files
    python -m tools.build_data --check   # exit 1 if a shipped file differs (no writes); a test runs this

The course splits come from `utils.course_data` (fact table, phrasings, split by phrasing). Lab
3.1.6's raw files write the same course examples in three formats (Alpaca, ShareGPT, OpenAI) with
the duplicates real scrapes contain, plus a file of deliberately broken records mixed with good
ones and, beside it, the list of which records are bad and why (the ground truth the lab's
validator is checked against). Nothing is downloaded; the labs only read what this writes.
"""

from __future__ import annotations

import json
import sys

from tools.generated_files import main_for
from tools.paths import DATA
from utils.course_data import SPLITS, CourseExample, generate_split, render_jsonl
from utils.raw_formats import ALPACA_INSTRUCTION, BROKEN_FILE, CLERK_PROMPT, PROBLEMS_FILE, SAMPLE_FILES

def course_examples() -> list[CourseExample]:
    """All 400 course examples: train, then validation, then test."""
    return generate_split("train") + generate_split("validation") + generate_split("test")


def _split_of(example: CourseExample, splits: dict[str, set[str]]) -> str:
    return next(name for name, ids in splits.items() if example.id in ids)


def _alpaca(example: CourseExample, with_input: bool) -> dict:
    if with_input:
        return {"instruction": ALPACA_INSTRUCTION, "input": example.question, "output": example.response}
    return {"instruction": example.question, "input": "", "output": example.response}


def _openai(turns: list[CourseExample], system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    for ex in turns:
        messages += [{"role": "user", "content": ex.question}, {"role": "assistant", "content": ex.response}]
    return {"messages": messages}


def _sharegpt(turns: list[CourseExample], system: str | None = None) -> dict:
    conversation = [{"from": "system", "value": system}] if system else []
    for ex in turns:
        conversation += [{"from": "human", "value": ex.question}, {"from": "gpt", "value": ex.response}]
    return {"conversations": conversation}


def build_samples() -> dict[str, list[dict]]:
    """format name -> records. Every course example appears at least once; 15 records are duplicates.

    Examples are dealt to the formats in turn. Some ShareGPT conversations hold two questions
    about the same island from the same split (multi-turn), so splitting by phrasing stays clean.
    Duplicates, appended at the end of the files:
      - 5 OpenAI records repeated verbatim (the same scrape ingested twice),
      - 5 Alpaca examples repeated in OpenAI form (identical once converted),
      - 5 ShareGPT conversations repeated with different case and spacing (near-duplicates).
    """
    examples = course_examples()
    splits = {name: {ex.id for ex in generate_split(name)} for name in ("train", "validation", "test")}
    dealt: dict[str, list[CourseExample]] = {"alpaca": [], "sharegpt": [], "openai": []}
    for i, ex in enumerate(examples):
        dealt[("alpaca", "sharegpt", "openai")[i % 3]].append(ex)

    alpaca = [_alpaca(ex, with_input=(k % 4 == 3)) for k, ex in enumerate(dealt["alpaca"])]
    openai = [_openai([ex], CLERK_PROMPT if k % 5 == 4 else None) for k, ex in enumerate(dealt["openai"])]

    sharegpt, pending = [], list(dealt["sharegpt"])
    k = 0
    while pending:
        ex = pending.pop(0)
        turns = [ex]
        nxt = pending[0] if pending else None
        if k % 4 == 1 and nxt is not None and nxt.island == ex.island and _split_of(nxt, splits) == _split_of(ex, splits):
            turns.append(pending.pop(0))
        sharegpt.append(_sharegpt(turns, CLERK_PROMPT if k % 3 == 2 else None))
        k += 1

    openai += [json.loads(json.dumps(openai[j])) for j in (3, 17, 42, 61, 88)]
    single_alpaca = [j for j, rec in enumerate(alpaca) if rec["input"] == ""]
    openai += [_openai([dealt["alpaca"][j]]) for j in single_alpaca[5:30:5]]
    for j in (2, 19, 37, 58, 80):
        near = json.loads(json.dumps(sharegpt[j]))
        for turn in near["conversations"]:
            if turn["from"] == "human":
                turn["value"] = "  " + turn["value"].lower().replace(" ", "  ")
            elif turn["from"] == "gpt":
                turn["value"] = turn["value"] + " "
        sharegpt.append(near)
    return {"alpaca": alpaca, "sharegpt": sharegpt, "openai": openai}


def build_broken() -> tuple[list, dict[int, str]]:
    """(records, {index: problem}) for the broken-records file: good and bad records interleaved.

    The problems are the ones a validator must name: a missing role, an empty reply, wrong types,
    a conversation that does not end with the assistant, a record over the length limit
    (longer than 256 tokens in every course tokenizer), and records in no known format.
    """
    train = generate_split("train")
    good = iter(train[3::8])
    ex = train[0]
    ramble = " ".join(
        f"The registry of {island} lists many things, and its clerks are proud of every entry in it."
        for island in ["Corvessa", "Tallowmere", "Quillon", "Brannoch", "Ysolde Key"] * 4
    )
    bad: list[tuple[object, str]] = [
        ({"messages": [{"content": ex.question}, {"role": "assistant", "content": ex.response}]}, "missing role"),
        ({"messages": [{"role": "user", "content": ex.question}, {"role": "assistant", "content": ""}]}, "empty reply"),
        ({"messages": [{"role": "user", "content": ex.question}, {"role": "assistant", "content": 1612}]}, "wrong type"),
        ({"messages": [{"role": "user", "content": ex.question}, {"role": "assistant", "content": ex.response}, {"role": "user", "content": "And its export?"}]}, "not ending with assistant"),
        ({"messages": [{"role": "user", "content": ex.question}, {"role": "assistant", "content": ramble + " " + ex.response}]}, "over-long"),
        ({"messages": [{"role": "user", "content": ex.question}, {"role": "bot", "content": ex.response}]}, "unknown role"),
        ({"messages": []}, "no messages"),
        ({"messages": "user: hi / assistant: hello"}, "wrong type"),
        ({"conversations": [{"from": "human", "value": ex.question}, {"from": "gpt", "value": "   "}]}, "empty reply"),
        ({"conversations": [{"from": "human", "value": ex.question}, {"from": "bard", "value": ex.response}]}, "unknown role"),
        ({"conversations": [{"from": "human", "value": ex.question}, {"value": ex.response}]}, "missing role"),
        ({"conversations": [{"from": "system", "value": CLERK_PROMPT}, {"from": "human", "value": ex.question}]}, "not ending with assistant"),
        ({"instruction": ex.question, "input": "", "output": None}, "wrong type"),
        ({"instruction": ex.question, "input": ""}, "missing field"),
        ({"instruction": "", "input": "", "output": ex.response}, "empty prompt"),
        ({"question": ex.question, "answer": ex.answer}, "unknown format"),
        ([{"role": "user", "content": ex.question}, {"role": "assistant", "content": ex.response}], "wrong type"),
        ({"messages": [{"role": "system", "content": CLERK_PROMPT}, {"role": "assistant", "content": ex.response}]}, "no user turn"),
    ]
    makers = [lambda e: _openai([e]), lambda e: _sharegpt([e]), lambda e: _alpaca(e, with_input=False), lambda e: _alpaca(e, with_input=True)]
    records: list = []
    problems: dict[int, str] = {}
    for k, (record, problem) in enumerate(bad):
        for _ in range(1 + k % 2):  # one or two good records before each bad one
            records.append(makers[len(records) % len(makers)](next(good)))
        problems[len(records)] = problem
        records.append(record)
    records.append(_openai([next(good)], CLERK_PROMPT))
    return records, problems


def expected_files() -> dict[str, str]:
    """file name -> the exact text this generator writes."""
    files = {f"course_{split}.jsonl": render_jsonl([ex.__dict__ for ex in generate_split(split)]) for split in SPLITS}
    files.update({SAMPLE_FILES[fmt]: render_jsonl(records) for fmt, records in build_samples().items()})
    records, problems = build_broken()
    files[BROKEN_FILE] = render_jsonl(records)
    files[PROBLEMS_FILE] = json.dumps({str(i): p for i, p in sorted(problems.items())}, indent=1) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    return main_for(__doc__, expected_files, DATA, argv)


if __name__ == "__main__":
    sys.exit(main())
