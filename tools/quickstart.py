"""`make quickstart` (`python -m tools.quickstart`): the whole course in one run, on a CPU, in a few minutes.

Loads SmolLM2-135M-Instruct (offline), asks it held-out questions about the fictional
Veltrani Archipelago, fine-tunes it with LoRA (PEFT + TRL's SFTTrainer, completion-only loss)
and asks again. Prints answers and held-out scores before and after, and writes the run report
(utils.run_report) to runs/<profile>/quickstart.report.json: the scores, the training time, the final loss.
"""

from __future__ import annotations

import tempfile
import time

from utils.adapters import adapter_config
from utils.course_data import load_split
from utils.device import describe
from utils.evaluation import evaluate
from utils.models import load_base
from tools.paths import RUNS
from utils import run_report
from utils.profiles import get_profile, profile_name
from utils.seeding import seed_everything
from utils.training import train_sft

SHOWN = 4


def main() -> None:
    name = profile_name()  # resolved once, here; the run's own get_profile() must agree (the report checks)
    with run_report.session("quickstart", "quickstart", get_profile(name), RUNS / name / "quickstart.report.json"):
        run()


def run() -> None:
    profile = get_profile()
    seed_everything(0)
    print(f"Profile {profile.name!r}: {profile.model_id}, {profile.max_steps} LoRA steps (r={profile.lora_r}) | {describe()}")
    model, tokenizer = load_base(profile)
    test = load_split("test", profile.eval_examples)
    train = load_split("train", profile.train_examples)
    print(f"\n== Base model on {len(test)} held-out questions (wordings never seen in training) ==")
    before = evaluate(model, tokenizer, test, max_new_tokens=profile.max_new_tokens)

    print(f"\n== LoRA fine-tuning on {len(train)} training questions ==")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quickstart-") as out:
        trainer = train_sft(model, tokenizer, train, profile, out, peft_config=adapter_config(profile), logging_steps=max(profile.max_steps // 5, 1))
    minutes = (time.perf_counter() - started) / 60
    after = evaluate(trainer.model, tokenizer, test, max_new_tokens=profile.max_new_tokens)

    print(f"\n== Before and after ({minutes:.1f} min of training) ==")
    for b, a in list(zip(before.rows, after.rows))[:SHOWN]:
        print(f"Q: {b['question']}\n   before:   {b['reply'][:100]!r}\n   after:    {a['reply']!r}\n   expected: {a['expected']}")
    run_report.record_eval("heldout_before", before)
    run_report.record_eval("heldout_after", after)
    run_report.record("train_seconds", minutes * 60, unit="s")
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if losses:
        run_report.record("train_loss_last", losses[-1])
    print(f"\nHeld-out score, base model : {before.summary()}")
    print(f"Held-out score, fine-tuned : {after.summary()}")
    print("\nNext: open labs/lab-3.1.1-lora-theory.ipynb and build this LoRA yourself.")


if __name__ == "__main__":
    main()
