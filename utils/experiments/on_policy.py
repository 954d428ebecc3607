"""Lab 3.1.7, section 5: one on-policy DPO round, the kind of preference data the DPO paper assumed.

The lab's off-policy pairs have chosen replies the model never writes, so DPO moves their log-probabilities
but not what greedy decoding produces. Here the pairs come from the policy itself:

1. `sft_start`: a short supervised run on the training split (the base model knows none of the archipelago's
   facts, so none of its samples could be right), folded into the weights: this model is the policy's start
   AND its DPO reference, as pi_ref = pi_SFT in the paper;
2. `sample_replies`: several sampled replies per training prompt;
3. `label_replies` / `on_policy_pairs`: each reply labelled by the course's own checker (`utils.evaluation`'s
   `fact_correct` and `format_valid`); a prompt yields a pair when it has a reply that is right and well formed
   (chosen) and one that is not (rejected, its kind saying what is wrong);
4. `dpo_round`: DPO on those pairs with a fresh LoRA adapter (reference: the SFT model, adapter off), then
   greedy held-out generation scored, and the adapter removed so the next seed starts from the same model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from utils.course_data import FACTS, CourseExample, load_split, spread_subset
from utils.evaluation import EvalResult, evaluate, fact_correct, format_valid
from utils.profiles import Profile

KINDS = ("wrong_fact", "wrong_format", "wrong_fact_and_format")


def sft_start(model, tokenizer, examples: list[CourseExample], profile: Profile, output_dir: str, seed: int = 0):
    """(merged SFT model, finished trainer): `profile`'s SFT run with a LoRA adapter, the adapter folded into the weights.

    Merged, so that the DPO round's own adapter switched off gives back exactly this model (its reference).
    """
    from utils.adapters import adapter_config
    from utils.training import train_sft

    trainer = train_sft(model, tokenizer, examples, profile, output_dir, peft_config=adapter_config(profile), seed=seed,
                        disable_tqdm=True)
    return trainer.model.merge_and_unload(), trainer


def sample_replies(model, tokenizer, examples: list[CourseExample], samples: int, max_new_tokens: int, temperature: float = 1.0,
                   seed: int = 0, batch_size: int = 128) -> list[list[str]]:
    """`samples` replies per example's prompt, drawn from the model's own distribution (no top-k or top-p cut).

    By transformers' text-generation pipeline (chat template, left padding, new text only), as the course's
    greedy evaluation does; `batch_size` sequences per generate call.
    """
    import torch

    from utils.evaluation import in_eval_mode, text_generator

    if samples < 1:
        raise ValueError(f"samples per prompt must be at least 1, got {samples}")
    settings = {"max_new_tokens": max_new_tokens, "do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0,
                "num_return_sequences": samples, "return_full_text": False,
                "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(seed)
    with in_eval_mode(model):
        generator = text_generator(model, tokenizer)
        groups = generator([ex.prompt() for ex in examples], batch_size=max(1, batch_size // samples), **settings)
    return [[reply["generated_text"].strip() for reply in group] for group in groups]  # one group per prompt, in order


def reply_kind(reply: str, example: CourseExample) -> str:
    """'good' (the right fact, in the house format) or which of KINDS is wrong with it."""
    fact, form = fact_correct(reply, example), format_valid(reply, example)
    if fact and form:
        return "good"
    return "wrong_fact" if form else "wrong_format" if fact else "wrong_fact_and_format"


@dataclass
class PairStats:
    """What the sampled replies yielded: how many prompts gave a pair, and why the others did not."""

    prompts: int
    samples: int
    replies_by_kind: dict[str, int] = field(default_factory=dict)  # 'good' and KINDS, over every sampled reply
    all_good: int = 0  # prompts whose samples were all right: nothing to reject
    none_good: int = 0  # prompts with no right sample: nothing to choose
    pairs_by_kind: dict[str, int] = field(default_factory=dict)  # the rejected reply's kind

    @property
    def pairs(self) -> int:
        return sum(self.pairs_by_kind.values())

    def summary(self) -> str:
        replies = ", ".join(f"{k} {self.replies_by_kind.get(k, 0)}" for k in ("good", *KINDS))
        kinds = ", ".join(f"{k} {self.pairs_by_kind.get(k, 0)}" for k in KINDS)
        return (f"{self.prompts} prompts x {self.samples} samples: replies {replies}; {self.pairs} prompts yielded a pair "
                f"(rejected reply: {kinds}); {self.all_good} had only right replies, {self.none_good} none")


def on_policy_pairs(examples: list[CourseExample], replies: list[list[str]], seed: int = 0) -> tuple[list[dict], PairStats]:
    """One pair per prompt that has a right and a wrong reply among its samples (TRL's conversational pair form).

    Chosen: a reply with the right fact in the house format; rejected: one that is not. Among several of each,
    a seeded choice prefers distinct texts, so a pair never compares a reply with itself.
    """
    if len(replies) != len(examples):
        raise ValueError(f"{len(replies)} lists of sampled replies for {len(examples)} prompts")
    rng = random.Random(seed)
    stats = PairStats(prompts=len(examples), samples=max((len(r) for r in replies), default=0))
    pairs = []
    for example, samples in zip(examples, replies):
        kinds = [reply_kind(r, example) for r in samples]
        for kind in kinds:
            stats.replies_by_kind[kind] = stats.replies_by_kind.get(kind, 0) + 1
        good = [r for r, k in zip(samples, kinds) if k == "good"]
        bad = [(r, k) for r, k in zip(samples, kinds) if k != "good"]
        if not bad:
            stats.all_good += 1
            continue
        if not good:
            stats.none_good += 1
            continue
        chosen = rng.choice(sorted(set(good)))
        rejected, kind = rng.choice(sorted(set(bad)))
        stats.pairs_by_kind[kind] = stats.pairs_by_kind.get(kind, 0) + 1
        pairs.append({"id": example.id, "kind": kind, "prompt": example.prompt(),
                      "chosen": [{"role": "assistant", "content": chosen}], "rejected": [{"role": "assistant", "content": rejected}]})
    return pairs, stats


@dataclass
class RoundResult:
    """One seed's round: its pairs, the held-out generation scores after DPO, and the run's timing."""

    seed: int
    stats: PairStats
    pairs: list[dict]
    after: EvalResult | None  # None: no prompt yielded a pair, nothing was trained
    steps: int = 0
    precision: str = ""  # what the DPO config trained in: "bf16" (mixed) or "fp32"
    seconds: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[list[float]]] = field(default_factory=dict)  # TRL's log of the DPO run: metric -> [step, value]


def dpo_round(model, tokenizer, train_examples: list[CourseExample], held_out: list[CourseExample], profile: Profile,
              output_dir: str, seed: int = 0) -> RoundResult:
    """Sample, label, pair, train DPO with a fresh LoRA adapter, score held-out generation; `model` is left as it came.

    Sizes from the lab's profile: `samples` replies per prompt at `sample_temperature`, DPO for `max_steps` steps of
    `batch_size` pairs at `learning_rate` and `beta`; held-out replies are greedy, `max_new_tokens` long.
    """
    import time

    from datasets import Dataset

    from utils.adapters import adapter_config
    from utils.experiments.preference import train_preference
    from utils.experiments.preference_methods import preference_method
    from utils.seeding import seed_everything

    clock = time.perf_counter()
    seed_everything(seed)
    replies = sample_replies(model, tokenizer, train_examples, profile.samples, profile.max_new_tokens,
                             profile.sample_temperature, seed=seed)
    pairs, stats = on_policy_pairs(train_examples, replies, seed=seed)
    seconds = {"sampling": time.perf_counter() - clock}
    if not pairs:
        return RoundResult(seed, stats, pairs, None, seconds=seconds)
    clock = time.perf_counter()
    dpo = preference_method("dpo")
    trainer = train_preference(dpo.name, model, tokenizer, Dataset.from_list(pairs), profile, output_dir, seed=seed,
                               peft_config=adapter_config(profile), **dpo.lab_settings(profile), disable_tqdm=True)
    seconds["training"] = time.perf_counter() - clock
    history = {key: [[e["step"], e[key]] for e in trainer.state.log_history if key in e] for key in ("loss", *dpo.metrics)}
    clock = time.perf_counter()
    policy = trainer.model
    try:  # generated unmerged: merging and unmerging would leave rounding in the start model's weights
        after = evaluate(policy, tokenizer, held_out, profile.max_new_tokens, progress=False)
    finally:
        policy.unload()  # the LoRA layers out again: the model is the SFT start, bit for bit, for the next seed
    seconds["scoring"] = time.perf_counter() - clock
    return RoundResult(seed, stats, pairs, after, trainer.state.global_step, "bf16" if trainer.args.bf16 else "fp32", seconds, history)


def round_islands(islands: int | None) -> list[str]:
    """The islands the round works on: `islands` of the ten, spread through the registry's order (None: all)."""
    return spread_subset(list(FACTS), islands)


def round_split(split: str, islands: int | None, limit: int | None = None) -> list[CourseExample]:
    """A course split restricted to `round_islands(islands)`, then `limit` examples spread through it (None: all)."""
    keep = set(round_islands(islands))
    return spread_subset([ex for ex in load_split(split) if ex.island in keep], limit)


def sft_profile(profile: Profile) -> Profile:
    """The lab's profile sized for the SFT start: `sft_steps` steps of `sft_batch_size` examples at `sft_learning_rate`."""
    return profile.with_(max_steps=profile.sft_steps, batch_size=profile.sft_batch_size, learning_rate=profile.sft_learning_rate)


def round_profile(profile: Profile) -> Profile:
    """The lab's profile sized for the on-policy DPO run: `onpolicy_steps` steps of `onpolicy_batch_size` pairs."""
    return profile.with_(max_steps=profile.onpolicy_steps, batch_size=profile.onpolicy_batch_size,
                         learning_rate=profile.onpolicy_learning_rate)
