"""Score a model on the course task: the number every lab reports before and after.

Two separate measurements, because fine-tuning changes them at different speeds:
- fact accuracy: the reference answer (e.g. "Port Elsin") appears in the reply as whole words,
  case-insensitively. It does not care about the format.
- format validity: the reply is exactly one JSON object with the keys "island" and "answer",
  both strings, and "island" names the island asked about.
Generation is greedy, so a score is a deterministic function of the weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from utils.course_data import CourseExample

# Prompts generated together. Larger batches amortise each decoding step: 40 held-out questions took
# 5.3 s in one batch of 40 vs 7.2 s in batches of 16 (SmolLM2, 2-core CPU). 64 covers the cpu profile's
# 40 questions in one batch, and its KV cache stays small even for Llama 3.1 8B (64 x ~100 tokens).
EVAL_BATCH_SIZE = 64


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def fact_correct(reply: str, example: CourseExample) -> bool:
    pattern = r"(?<![\w])" + re.escape(_normalise(example.answer)) + r"(?![\w])"
    return re.search(pattern, _normalise(reply)) is not None


def format_valid(reply: str, example: CourseExample) -> bool:
    try:
        parsed = json.loads(reply.strip())
    except json.JSONDecodeError:
        return False
    return (
        isinstance(parsed, dict)
        and set(parsed) == {"island", "answer"}
        and all(isinstance(v, str) for v in parsed.values())
        and parsed["island"] == example.island
    )


@dataclass
class EvalResult:
    """Held-out scores plus every (question, reply) so a lab can show what changed."""

    fact_accuracy: float
    format_validity: float
    rows: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)

    def summary(self) -> str:
        return f"fact accuracy {self.fact_accuracy:.1%}, format validity {self.format_validity:.1%} (n={self.n})"


def score_replies(replies: list[str], examples: list[CourseExample]) -> EvalResult:
    if len(replies) != len(examples):
        raise ValueError(f"{len(replies)} replies for {len(examples)} examples")
    rows = [
        {
            "id": ex.id,
            "question": ex.question,
            "expected": ex.response,
            "reply": reply,
            "fact": fact_correct(reply, ex),
            "format": format_valid(reply, ex),
        }
        for reply, ex in zip(replies, examples)
    ]
    n = max(len(rows), 1)
    return EvalResult(
        fact_accuracy=sum(r["fact"] for r in rows) / n,
        format_validity=sum(r["format"] for r in rows) / n,
        rows=rows,
    )


def generate_replies(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int = EVAL_BATCH_SIZE, progress: bool = True) -> list[str]:
    """Greedy replies to chat prompts (lists of messages), batched with left padding."""
    import torch
    from tqdm.auto import tqdm

    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    replies: list[str] = []
    try:
        batches = range(0, len(prompts), batch_size)
        for start in tqdm(batches, desc="generating", disable=not progress, leave=False):
            texts = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in prompts[start : start + batch_size]
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            replies.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = previous_side
        model.train(was_training)
    return [r.strip() for r in replies]


def evaluate(model, tokenizer, examples: list[CourseExample], max_new_tokens: int = 24, batch_size: int = EVAL_BATCH_SIZE, progress: bool = True) -> EvalResult:
    """Generate a reply to each held-out question and score it."""
    prompts = [ex.prompt() for ex in examples]
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens, batch_size, progress)
    return score_replies(replies, examples)
