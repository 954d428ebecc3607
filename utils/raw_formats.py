"""Lab 3.1.6's raw instruction data, as it arrives in practice: three formats, duplicates, broken records.

Fine-tuning data rarely comes in one clean form. The files in `utils/data/` hold the course
facts (`utils.course_data`) in the three formats the lab converts from:

    Alpaca    {"instruction": ..., "input": ..., "output": ...}
    ShareGPT  {"conversations": [{"from": "system"|"human"|"gpt", "value": ...}, ...]}
    OpenAI    {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}

with the duplicates real scrapes contain, and a file of deliberately broken records mixed with
good ones, so the lab's validator has every kind of error to name. `tools/build_data.py` writes
them (a test checks they are current); this module only reads them, as package data, so the lab
works from any directory.
"""

from __future__ import annotations

import json
from importlib import resources

from utils.course_data import DATA_PACKAGE, read_jsonl

SAMPLE_FILES = {"alpaca": "lab316_alpaca.jsonl", "sharegpt": "lab316_sharegpt.jsonl", "openai": "lab316_openai.jsonl"}
BROKEN_FILE = "lab316_broken.jsonl"
PROBLEMS_FILE = "lab316_broken_problems.json"  # index of each bad record in BROKEN_FILE -> its problem

# A system prompt some records carry. Records without one get the chat template's default.
CLERK_PROMPT = "You are the registry clerk of the Veltrani Archipelago. Reply with one JSON object."
# Alpaca records sometimes put the question in `input` under a generic instruction.
ALPACA_INSTRUCTION = "Answer this question about the Veltrani Archipelago."


def load_samples() -> dict[str, list[dict]]:
    """format name -> the raw records of its shipped sample file."""
    return {fmt: read_jsonl(name) for fmt, name in SAMPLE_FILES.items()}


def load_broken() -> list:
    """The shipped broken-records file (`load_broken_problems` says which records are bad)."""
    return read_jsonl(BROKEN_FILE)


def load_broken_problems() -> dict[int, str]:
    """index in the broken-records file -> the problem planted there (the validator's ground truth)."""
    text = resources.files(DATA_PACKAGE).joinpath(PROBLEMS_FILE).read_text(encoding="utf-8")
    return {int(index): problem for index, problem in json.loads(text).items()}
