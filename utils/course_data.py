"""The course's domain task: the registry of the (fictional) Veltrani Archipelago.

Every lab needs a task the base model cannot already solve, so that "before" and "after"
mean something. The facts below are invented, so no pretrained model knows them, and the
answers follow a house format (one JSON object) that the base model does not produce
unprompted. Both parts are scored separately by `utils.evaluation`.

The dataset is generated deterministically from the fact table and the phrasing templates,
and shipped as JSONL in `utils/data/`. The split is by *phrasing*: every fact appears in
training, but validation and test questions use wordings never seen in training, so a
held-out score measures recall of the fact, not recall of the sentence.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources

SPLITS = ("train", "validation", "test")
DATA_PACKAGE = "utils.data"
SPLIT_SEED = 31

# island -> field -> value. Invented names only: nothing here exists in a pretraining corpus.
FACTS: dict[str, dict[str, str]] = {
    "Corvessa": {"capital": "Port Elsin", "export": "glassweed", "founded": "1612", "harbor_master": "Maren Tull"},
    "Tallowmere": {"capital": "Greywater", "export": "smoked eel", "founded": "1587", "harbor_master": "Oskar Venn"},
    "Quillon": {"capital": "Saint Aubrel", "export": "blue slate", "founded": "1703", "harbor_master": "Ida Feroux"},
    "Brannoch": {"capital": "Kellsby", "export": "copper wire", "founded": "1549", "harbor_master": "Tomas Ruard"},
    "Ysolde Key": {"capital": "Lantern Bay", "export": "amber resin", "founded": "1688", "harbor_master": "Nell Castry"},
    "Marrowick": {"capital": "Fenwick Cross", "export": "sailcloth", "founded": "1634", "harbor_master": "Dagny Holm"},
    "Peleth": {"capital": "Orrin Quay", "export": "kelp paper", "founded": "1721", "harbor_master": "Ruben Sayle"},
    "Vennaskar": {"capital": "Hollin", "export": "iron nails", "founded": "1575", "harbor_master": "Ailsa Morrow"},
    "Dunmorrow": {"capital": "Cairnhaven", "export": "peat bricks", "founded": "1660", "harbor_master": "Piet Lindqvist"},
    "Halcyne": {"capital": "Merrow Point", "export": "dyed linen", "founded": "1698", "harbor_master": "Coral Anwick"},
}

FIELDS = ("capital", "export", "founded", "harbor_master")

# Ten wordings per field. Which wordings are held out is decided by SPLIT_SEED below.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "capital": (
        "What is the capital of {island}?",
        "Which town is the capital of {island}?",
        "Name the capital town of {island}.",
        "{island}'s capital is which town?",
        "Tell me the capital of the island of {island}.",
        "Where is the seat of government on {island}?",
        "In the registry, what is listed as the capital of {island}?",
        "I'm visiting {island}. What town is its capital?",
        "Which settlement serves as the capital of {island}?",
        "Could you tell me what the capital of {island} is?",
    ),
    "export": (
        "What is the main export of {island}?",
        "What does {island} chiefly export?",
        "Name the chief export of {island}.",
        "Which good is {island} best known for exporting?",
        "What do traders buy from {island} more than anything else?",
        "{island}'s principal export is what?",
        "According to the registry, what is the main export of {island}?",
        "Tell me the primary export of {island}.",
        "What product leaves the harbor of {island} most often?",
        "Could you tell me what {island} exports most?",
    ),
    "founded": (
        "In what year was {island} founded?",
        "When was {island} founded?",
        "What year was the settlement on {island} established?",
        "Give the founding year of {island}.",
        "{island} was founded in which year?",
        "How old is {island}? Give its founding year.",
        "According to the registry, when was {island} founded?",
        "Tell me the year {island} was first settled.",
        "Which year marks the founding of {island}?",
        "Could you tell me when {island} was established?",
    ),
    "harbor_master": (
        "Who is the harbor master of {island}?",
        "Who runs the harbor on {island}?",
        "Name the harbor master of {island}.",
        "{island}'s harbor master is who?",
        "Who should I report to at the harbor of {island}?",
        "Which person serves as harbor master on {island}?",
        "According to the registry, who is the harbor master of {island}?",
        "Tell me who is in charge of the harbor on {island}.",
        "Who holds the post of harbor master on {island}?",
        "Could you tell me who the harbor master of {island} is?",
    ),
}

# How many wordings of each field go to each split (the rest of the ten go to train).
HELD_OUT_PER_SPLIT = {"validation": 2, "test": 2}

# The system turn of every course conversation: in training, evaluation and the deployed Modelfile.
# Empty on purpose. Without a system turn SmolLM2's chat template inserts its own 16-token default
# ("You are a helpful AI assistant named SmolLM, ..."), 28% of a 58-token example, which teaches
# nothing about the task and costs that share of every forward pass. An explicit empty turn renders
# as `<|im_start|>system\n<|im_end|>\n` (4 tokens), so an example is 42 tokens.
SYSTEM_PROMPT = ""


@dataclass(frozen=True)
class CourseExample:
    """One question about one fact, with the reference reply in the house format."""

    id: str
    island: str
    field: str
    phrasing: int
    question: str
    answer: str
    response: str

    def prompt(self) -> list[dict[str, str]]:
        """The conversation the model answers: the course's system turn, then the question."""
        return course_prompt(self.question)

    def to_messages(self) -> list[dict[str, str]]:
        return self.prompt() + [{"role": "assistant", "content": self.response}]

    def to_prompt_completion(self) -> dict[str, list[dict[str, str]]]:
        """TRL's conversational prompt/completion form: the loss then covers the reply only."""
        return {"prompt": self.prompt(), "completion": [{"role": "assistant", "content": self.response}]}


def course_prompt(question: str) -> list[dict[str, str]]:
    """A question as the course sends it to a model: [system turn, user turn] (see SYSTEM_PROMPT)."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def format_response(island: str, answer: str) -> str:
    """The registry's house format: one JSON object with exactly these two keys, in this order."""
    return json.dumps({"island": island, "answer": answer})


def phrasing_split() -> dict[str, dict[str, list[int]]]:
    """field -> split -> phrasing indices. Seeded, so the held-out wordings never change."""
    rng = random.Random(SPLIT_SEED)
    assignment: dict[str, dict[str, list[int]]] = {}
    for field in FIELDS:
        order = list(range(len(PHRASINGS[field])))
        rng.shuffle(order)
        n_val, n_test = HELD_OUT_PER_SPLIT["validation"], HELD_OUT_PER_SPLIT["test"]
        assignment[field] = {
            "validation": sorted(order[:n_val]),
            "test": sorted(order[n_val : n_val + n_test]),
            "train": sorted(order[n_val + n_test :]),
        }
    return assignment


def generate_split(split: str) -> list[CourseExample]:
    """Build a split from the fact table. Order: island, then field, then phrasing."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    indices = phrasing_split()
    examples = []
    for island, facts in FACTS.items():
        for field in FIELDS:
            for p in indices[field][split]:
                slug = island.lower().replace(" ", "-")
                examples.append(
                    CourseExample(
                        id=f"{slug}/{field}/{p}",
                        island=island,
                        field=field,
                        phrasing=p,
                        question=PHRASINGS[field][p].format(island=island),
                        answer=facts[field],
                        response=format_response(island, facts[field]),
                    )
                )
    return examples


def load_split(split: str, limit: int | None = None) -> list[CourseExample]:
    """Load a shipped split as package data, so it works from any working directory.

    `limit` takes an evenly spread subset (every island and field stays represented),
    which is how the fast profiles shrink evaluation without biasing it.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    name = f"course_{split}.jsonl"
    examples = []
    for line_no, record in enumerate(read_jsonl(name), start=1):
        try:
            examples.append(CourseExample(**record))
        except TypeError as err:
            raise ValueError(f"{name} record {line_no}: not a course example ({err})") from err
    return spread_subset(examples, limit)


def spread_subset(items: list, limit: int | None) -> list:
    """`limit` items taken at even strides through `items` (all of them if limit is None)."""
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    if limit is None or limit >= len(items):
        return list(items)
    stride = len(items) / limit
    return [items[int(i * stride)] for i in range(limit)]


def parse_jsonl(text: str, name: str) -> list:
    """One JSON value per non-blank line; a line that is not JSON raises an error naming file and line."""
    records = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{name} line {line_no}: not valid JSON ({err})") from err
    return records


def read_jsonl(name: str) -> list:
    """Parse one JSONL file shipped in `utils/data/` (package data, so any working directory works)."""
    return parse_jsonl(resources.files(DATA_PACKAGE).joinpath(name).read_text(encoding="utf-8"), name)


def render_jsonl(records: list) -> str:
    """JSONL text, one record per line, as the shipped files are written."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
