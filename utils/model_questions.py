"""The questions `tools.model_test` asks and the checks each reply must pass.

A question carries its conversation and a list of checks. The kinds a user can ask for in a questions
file: `contains` (the answer appears as whole words: the course's fact metric), `regex` (Python regular
expression, searched), `json` (the reply is one JSON value) and `json_schema` (valid JSON that the given
JSON Schema accepts, checked with the `jsonschema` package). The course's own questions also check the
house format (`island`). Checks are compiled when the file is read, so a bad regular expression or schema
is reported with the file and line before any request is sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from utils.course_data import course_prompt, load_split, parse_jsonl, spread_subset
from utils.evaluation import fact_correct, format_valid

KINDS = ("contains", "regex", "json", "json_schema")
CONTENT_KINDS = ("contains",)  # what fact accuracy counts; every other kind counts towards format validity


@dataclass(frozen=True)
class Check:
    """One assertion about a reply. `value`: the words (contains), the pattern (regex) or the schema (json_schema)."""

    kind: str
    value: object = None

    def verdict(self, reply: str, question: "Question") -> tuple[bool, str]:
        """(passed, reason if not) for a stripped reply."""
        if self.kind == "contains":
            ok = fact_correct(reply, _Answer(str(self.value)))
            return ok, "" if ok else f"reply does not contain {self.value!r}"
        if self.kind == "island":
            ok = format_valid(reply, question)
            return ok, "" if ok else f"reply is not the house-format JSON object for island {question.island!r}"
        if self.kind == "regex":
            ok = re.search(self.value, reply) is not None
            return ok, "" if ok else f"reply does not match the regular expression {self.value!r}"
        try:
            parsed = json.loads(reply)
        except ValueError as err:
            return False, f"reply is not valid JSON ({err})"
        if self.kind == "json":
            return True, ""
        errors = sorted(_validator(self.value).iter_errors(parsed), key=lambda e: list(e.path))
        if not errors:
            return True, ""
        where = "/".join(str(p) for p in errors[0].path) or "(top level)"
        return False, f"reply does not match the JSON schema at {where}: {' '.join(errors[0].message.split())[:160]}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class _Answer:
    answer: str


def _validator(schema):
    import jsonschema

    return jsonschema.validators.validator_for(schema)(schema)


@dataclass(frozen=True)
class Question:
    """One test question: the conversation sent and the checks its reply must pass. `answer` (the contains
    check's words) and `island` (the house-format check) are kept as attributes for the course's metric."""

    id: str
    messages: list
    answer: str | None = None
    island: str | None = None
    checks: tuple = field(default=())

    def all_checks(self) -> list[Check]:
        checks = [Check("contains", self.answer)] if self.answer is not None else []
        if self.island is not None:
            checks.append(Check("island", self.island))
        return checks + list(self.checks)


def course_questions(limit: int | None = None, split: str = "test") -> list[Question]:
    """The course's held-out questions, sent exactly as the course trains and evaluates (see course_prompt)."""
    return [Question(ex.id, ex.prompt(), ex.answer, ex.island) for ex in load_split(split, limit)]


def parse_check(raw, where: str) -> Check:
    """One entry of a question's "checks" list, validated (a bad pattern or schema names `where`)."""
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ValueError(f"{where}: each check must be an object with a 'kind' ({', '.join(KINDS)})")
    kind = raw["kind"]
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown check kind {kind!r}; the kinds are {', '.join(KINDS)}")
    key = {"contains": "value", "regex": "pattern", "json": None, "json_schema": "schema"}[kind]
    unknown = set(raw) - {"kind", key}
    if unknown:
        raise ValueError(f"{where}: a {kind} check takes {('only ' + repr(key)) if key else 'no other field'}, not {', '.join(sorted(map(repr, unknown)))}")
    if key is None:
        return Check(kind)
    if key not in raw:
        raise ValueError(f"{where}: a {kind} check needs {key!r}")
    value = raw[key]
    if kind == "contains" and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"{where}: a contains check's 'value' must be a non-empty string")
    if kind == "regex":
        try:
            re.compile(value)
        except (re.error, TypeError) as err:
            what = "must be a string" if isinstance(err, TypeError) else f"{value!r} is a bad regular expression: {err}"
            raise ValueError(f"{where}: a regex check's 'pattern' {what}") from None
    if kind == "json_schema":
        import jsonschema

        if not isinstance(value, (dict, bool)):
            raise ValueError(f"{where}: a json_schema check's 'schema' must be a JSON object")
        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as err:
            raise ValueError(f"{where}: bad JSON schema: {' '.join(err.message.split())[:160]}") from None
    return Check(kind, value)


def read_questions(path: str | Path, limit: int | None = None) -> list[Question]:
    """A user's JSONL of questions, one object a line: {"prompt": text or chat messages} with "expected" (the
    contains check) and/or "checks" (a list of checks), optionally "id" and "island". `limit` takes an even
    spread across the file. Errors name the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read the question file ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    questions, seen = [], set()
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    for line_no, record in zip(lines, parse_jsonl(text, str(path))):
        questions.append(_question(record, f"{path} line {line_no}", line_no, seen))
    if not questions:
        raise ValueError(f"{path}: no questions (empty file)")
    return spread_subset(questions, limit)


def _question(record, where: str, line_no: int, seen: set) -> Question:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with 'prompt' and 'expected' or 'checks', got {type(record).__name__}")
    if "prompt" not in record:
        raise ValueError(f"{where}: missing 'prompt'")
    if "expected" not in record and "checks" not in record:
        raise ValueError(f"{where}: missing 'expected' (or a 'checks' list)")
    prompt = record["prompt"]
    if isinstance(prompt, str):
        messages = course_prompt(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt):
        messages = prompt
    else:
        raise ValueError(f"{where}: 'prompt' must be a string or a non-empty list of {{'role', 'content'}} messages")
    expected = record.get("expected")
    if expected is not None and (not isinstance(expected, str) or not expected.strip()):
        raise ValueError(f"{where}: 'expected' must be a non-empty string")
    raw_checks = record.get("checks", [])
    if not isinstance(raw_checks, list) or ("expected" not in record and not raw_checks):
        raise ValueError(f"{where}: 'checks' must be a non-empty list of checks")
    checks = tuple(parse_check(c, f"{where}, check {i}") for i, c in enumerate(raw_checks, start=1))
    island = record.get("island")
    if island is not None and not isinstance(island, str):
        raise ValueError(f"{where}: 'island' must be a string")
    qid = str(record.get("id", f"line-{line_no}"))
    if qid in seen:
        raise ValueError(f"{where}: id {qid!r} is used twice")
    seen.add(qid)
    return Question(qid, messages, expected, island, checks)


def grade(reply: str, question: Question) -> dict:
    """Every check's verdict on a reply: the row fields a report keeps (fact, format, passed, failures)."""
    verdicts = [(c, *c.verdict(reply, question)) for c in question.all_checks()]
    content = [ok for c, ok, _ in verdicts if c.kind in CONTENT_KINDS]
    form = [ok for c, ok, _ in verdicts if c.kind not in CONTENT_KINDS]
    return {"fact": all(content) if content else None, "format": all(form) if form else None,
            "passed": all(ok for _, ok, _ in verdicts), "failures": [why for _, ok, why in verdicts if not ok]}
