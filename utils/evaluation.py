"""Score a model on the course task: the number every lab reports before and after.

Two separate measurements, because fine-tuning changes them at different speeds:
- fact accuracy: the reference answer (e.g. "Port Elsin") appears in the reply as whole words,
  case-insensitively. It does not care about the format.
- format validity: the reply is exactly one JSON object with the keys "island" and "answer",
  both strings, and "island" names the island asked about.
Generation is greedy, so a score is a deterministic function of the weights.

The preference labs (3.1.7 to 3.1.9) add a third, `preference_accuracy`: on held-out preference pairs,
how often the model (and its DPO implicit reward) prefers the chosen reply to the rejected one.
"""

from __future__ import annotations

import contextlib
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
    """A model scored on questions: held-out scores plus every (question, reply) row, so a lab can show what
    changed. The served-model test's report (utils.model_report.ModelTestReport) is one of these with more fields."""

    fact_accuracy: float | None
    format_validity: float | None
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
    """Greedy replies to chat prompts (lists of messages), by transformers' text-generation pipeline.

    The pipeline renders each chat with the tokenizer's template (tokenized inside, so Llama 3.1 gets one
    <|begin_of_text|>), pads on the left and returns only the new text. Lab 3.1.4 has students write this loop
    by hand and checks their replies against these; the shared code uses the library, so the student edition
    carries no hand-written answer to that exercise. The caller's tokenizer and model mode are left as they were.
    """
    from tqdm.auto import tqdm

    settings = {"max_new_tokens": max_new_tokens, "do_sample": False, "return_full_text": False,
                "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    with in_eval_mode(model):
        generator = text_generator(model, tokenizer)
        chunks = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
        outputs = [out for chunk in tqdm(chunks, desc="generating", disable=not progress, leave=False)
                   for out in generator(chunk, batch_size=batch_size, **settings)]
    return [out[0]["generated_text"].strip() for out in outputs]


def text_generator(model, tokenizer):
    """transformers' text-generation pipeline on `model`, padding on the left (decoder-only models continue from the
    right edge) with a copy of `tokenizer`, so the caller's padding side is left as it was."""
    import copy

    from transformers import pipeline

    left_padded = copy.copy(tokenizer)
    left_padded.padding_side = "left"
    return pipeline("text-generation", model=model, tokenizer=left_padded)


@contextlib.contextmanager
def in_eval_mode(model):
    """The model in eval mode (no dropout) for the block, then in the mode it had."""
    mode = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(mode)


def evaluate(model, tokenizer, examples: list[CourseExample], max_new_tokens: int = 24, batch_size: int = EVAL_BATCH_SIZE, progress: bool = True) -> EvalResult:
    """Generate a reply to each held-out question and score it."""
    prompts = [ex.prompt() for ex in examples]
    return score_replies(generate_replies(model, tokenizer, prompts, max_new_tokens, batch_size, progress), examples)


# --- Preference accuracy (Labs 3.1.7 to 3.1.9) ---------------------------------------------------------------------
# A second measurement next to the generation scores: on held-out preference pairs
# (`utils.preference_data.course_pairs("test")`), does the model put more probability on the chosen reply than on
# the rejected one? Tokenized and batched exactly as TRL's DPOTrainer does (chat template, the completion after the
# common prefix, `DataCollatorForPreference`), so a log-probability here is the one the trainer logs as `logps/*`.


def completion_logps(logits, input_ids, completion_mask, average: bool = False):
    """Per-sequence log-probability of the completion tokens, summed (DPO) or per token (`average`: SimPO, ORPO).

    Computed by TRL's own routine (the static `get_batch_logps` its CPO and ORPO trainers use), on float32 logits
    with every token outside the completion marked -100 as TRL's collators mark it. Lab 3.1.7 has students write
    this by hand and checks theirs against TRL's trainer; the course's shared code uses the library, so the
    student edition carries no hand-written answer to that exercise.
    """
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    return _trl_batch_logps()(logits.float(), labels, average_log_prob=average)


def _trl_batch_logps():
    """TRL 1.16 keeps the CPO trainer (and its log-prob routine) under `trl.experimental`; import it quietly."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.cpo.cpo_trainer import CPOTrainer
    return CPOTrainer.get_batch_logps


def tokenize_pair(tokenizer, pair: dict) -> dict[str, list[int]]:
    """prompt_ids, chosen_ids, rejected_ids of one conversational pair, split as TRL's DPOTrainer splits them."""
    from trl.data_utils import common_prefix_length

    def ids(messages, **kwargs):
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"]

    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(pair.get(key), list):
            raise ValueError(f"pair {pair.get('id', '?')}: {key!r} must be a list of messages (TRL's conversational form)")
    prompt = ids(pair["prompt"], add_generation_prompt=True)
    chosen = ids(pair["prompt"] + pair["chosen"])
    rejected = ids(pair["prompt"] + pair["rejected"])
    start = min(common_prefix_length(prompt, chosen), common_prefix_length(prompt, rejected))
    return {"prompt_ids": prompt[:start], "chosen_ids": chosen[start:], "rejected_ids": rejected[start:]}


def preference_batches(tokenizer, pairs: list[dict], batch_size: int = 16):
    """Padded batches of TRL's preference collator: the chosen sequences first, then the rejected ones."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    collate = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)
    tokenized = [tokenize_pair(tokenizer, p) for p in pairs]
    for start in range(0, len(tokenized), batch_size):
        yield collate(tokenized[start : start + batch_size])


def pair_logps(model, tokenizer, pairs: list[dict], average: bool = False, batch_size: int = 16):
    """(chosen, rejected) per-sequence completion log-probabilities under `model`, one entry per pair, no gradients."""
    import torch

    device = model.device
    chosen, rejected = [], []
    with in_eval_mode(model), torch.no_grad():
        for batch in preference_batches(tokenizer, pairs, batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            c, r = completion_logps(logits, batch["input_ids"], batch["completion_mask"], average).cpu().chunk(2)
            chosen.append(c)
            rejected.append(r)
    return torch.cat(chosen), torch.cat(rejected)


@dataclass
class PreferenceResult:
    """Held-out preference accuracy, two ways, with every pair's numbers.

    logprob_accuracy: share of pairs whose chosen reply the model itself scores higher (log-probability,
        summed or per token). It needs no reference, so a model before training has one too.
    reward_accuracy: share of pairs whose DPO implicit reward beta * log(pi / pi_ref) is strictly higher for
        the chosen reply, as TRL's `rewards/accuracies`. A model equal to its reference has every reward 0, a tie
        on every pair, and scores 0.
    mean_margin: mean of the chosen minus the rejected reward (TRL's `rewards/margins`).
    """

    logprob_accuracy: float
    reward_accuracy: float
    mean_margin: float
    beta: float
    average: bool
    rows: list[dict] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)

    def logps(self) -> tuple[list[float], list[float]]:
        """(chosen, rejected) log-probabilities of the scored model, per pair: a later run's `reference_logps`."""
        return [r["chosen_logp"] for r in self.rows], [r["rejected_logp"] for r in self.rows]

    def count(self, key: str = "logprob_correct") -> int:
        return sum(r[key] for r in self.rows)

    def by_kind(self, key: str = "logprob_correct") -> dict[str, tuple[int, int]]:
        """kind -> (pairs the measure gets right, pairs of that kind)."""
        out: dict[str, tuple[int, int]] = {}
        for r in self.rows:
            right, total = out.get(r["kind"], (0, 0))
            out[r["kind"]] = (right + bool(r[key]), total + 1)
        return out

    def summary(self) -> str:
        per = "per-token " if self.average else ""
        return (f"{per}log-prob preference accuracy {self.count()}/{self.n} ({self.logprob_accuracy:.1%}), "
                f"implicit-reward accuracy {self.count('reward_correct')}/{self.n} ({self.reward_accuracy:.1%}), "
                f"mean reward margin {self.mean_margin:+.3f} (beta {self.beta:g})")


def preference_accuracy(model, tokenizer, pairs: list[dict], beta: float = 0.1, average: bool = False,
                        reference_model=None, reference_logps=None, batch_size: int = 16) -> PreferenceResult:
    """Score held-out pairs with the model and its reference: log-prob and implicit-reward preference accuracy.

    The reference is `reference_model` if given; else, for a PEFT model, the same model with its adapter
    switched off (what TRL's DPOTrainer uses when it gets a PEFT model and no reference); else the model
    itself (every reward is then 0). `reference_logps`, a (chosen, rejected) pair of per-pair tensors
    already computed on these pairs (e.g. `result.logps()` of the starting model), saves that pass.
    """
    import torch

    if not pairs:
        raise ValueError("no preference pairs to score")
    policy_c, policy_r = pair_logps(model, tokenizer, pairs, average, batch_size)
    if reference_logps is not None:
        ref_c, ref_r = (torch.as_tensor(x, dtype=policy_c.dtype) for x in reference_logps)
        if ref_c.shape != policy_c.shape or ref_r.shape != policy_r.shape:
            raise ValueError(f"reference_logps hold {tuple(ref_c.shape)} and {tuple(ref_r.shape)} values for {len(pairs)} pairs")
    elif reference_model is not None:
        ref_c, ref_r = pair_logps(reference_model, tokenizer, pairs, average, batch_size)
    elif hasattr(model, "disable_adapter") and hasattr(model, "peft_config"):
        with model.disable_adapter():
            ref_c, ref_r = pair_logps(model, tokenizer, pairs, average, batch_size)
    else:  # no reference: the model is its own, every implicit reward is 0
        ref_c, ref_r = policy_c, policy_r
    reward_c, reward_r = beta * (policy_c - ref_c), beta * (policy_r - ref_r)
    rows = [
        {
            "id": p.get("id"), "kind": p.get("kind"),
            "chosen_logp": pc, "rejected_logp": pr, "ref_chosen_logp": rc, "ref_rejected_logp": rr,
            "chosen_reward": wc, "rejected_reward": wr,
            "logprob_correct": pc > pr, "reward_correct": wc > wr,
        }
        for p, pc, pr, rc, rr, wc, wr in zip(pairs, policy_c.tolist(), policy_r.tolist(), ref_c.tolist(), ref_r.tolist(),
                                             reward_c.tolist(), reward_r.tolist())
    ]
    n = len(rows)
    return PreferenceResult(
        logprob_accuracy=sum(r["logprob_correct"] for r in rows) / n,
        reward_accuracy=sum(r["reward_correct"] for r in rows) / n,
        mean_margin=(reward_c - reward_r).mean().item(),
        beta=beta,
        average=average,
        rows=rows,
    )
