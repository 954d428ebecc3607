"""Supervised fine-tuning on the course task with TRL, sized by the active profile, and every
reader of what the trainer logged (losses, learning rates, step times).

The labs hand-write what they teach (a LoRA layer, a DoRA layer, the NEFTune hook) and leave
the training loop to TRL's SFTTrainer, which the field uses. Examples go in as conversational
prompt/completion pairs, so the loss covers only the assistant's reply (SmolLM2's chat template
has no generation markers, so `assistant_only_loss` cannot be used with it).
"""

from __future__ import annotations

from utils.course_data import CourseExample
from utils.device import use_bf16
from utils.profiles import Profile


def course_dataset(examples: list[CourseExample]):
    """A `datasets.Dataset` in TRL's prompt/completion form."""
    from datasets import Dataset

    return Dataset.from_list([ex.to_prompt_completion() for ex in examples])


def trainer_settings(profile: Profile, output_dir: str, seed: int = 0) -> dict:
    """The settings every course trainer config shares (SFT here, the preference trainers in
    `utils.experiments.preference`): sizes from the profile, the course precision, no checkpoints."""
    import torch

    return dict(
        output_dir=output_dir,
        max_steps=profile.max_steps,
        per_device_train_batch_size=profile.batch_size,
        gradient_accumulation_steps=profile.grad_accum,
        learning_rate=profile.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, profile.max_steps // 20),
        logging_steps=profile.logging_steps,
        max_length=profile.max_seq_length,
        bf16=use_bf16(),
        # Checkpointing trades compute for memory; on CPU the 135M model needs no memory help.
        activation_checkpointing=torch.cuda.is_available(),
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        dataset_num_proc=None,
    )


def sft_config(profile: Profile, output_dir: str, seed: int = 0, **overrides):
    """An SFTConfig from the profile; keyword arguments override any field."""
    from trl import SFTConfig

    return SFTConfig(**{**trainer_settings(profile, output_dir, seed), **overrides})


def reply_token_loss(model, batch: dict):
    """(summed NLL of the reply tokens, their logits, their targets, the model's outputs) for one batch.

    The model runs with `logits_to_keep` set to the positions whose next token is a reply token
    (labels != -100 after the shift), so the vocabulary projection is computed only where it counts.
    """
    import torch
    import torch.nn.functional as F

    labels = batch["labels"]
    scored = torch.zeros_like(labels, dtype=torch.bool)
    scored[:, :-1] = labels[:, 1:] != -100  # position t predicts token t + 1
    targets = labels[:, 1:][scored[:, :-1]]
    forward = {k: v for k, v in batch.items() if k != "labels"}
    outputs = model(**forward, use_cache=False, logits_to_keep=scored)
    logits = outputs.logits.float()  # (scored positions, vocabulary), upcast as transformers' loss does
    return F.cross_entropy(logits, targets, reduction="sum"), logits, targets, outputs


def course_sft_trainer_class():
    """TRL's SFTTrainer with the plain next-token loss, projected onto the vocabulary only where it counts.

    TRL 1.16 computes the loss through a fused, chunked LM head that also returns per-token entropy
    and top-1 hits for its logs, and recomputes the 49k-way vocabulary projection in the backward
    pass. That saves memory on a GPU; on a CPU it makes a SmolLM2 LoRA step markedly slower (the TRL and
    course-trainer rows of the kept `make bench` reports, module-3.1/results/epyc-avx512/). Here the model's
    own forward runs with `logits_to_keep` set to the positions whose next token is a reply token:
    the prompt's ~30 positions of every ~42-token example need no logits, and the LM head is a fifth
    of SmolLM2's compute. The loss is TRL's: the sum of the reply tokens' negative log-likelihoods
    over the tokens in the batch (`num_items_in_batch`, so gradient accumulation weights tokens
    equally). Token accuracy is still logged (`mean_token_accuracy`); entropy is not.
    """
    import torch
    from trl import SFTTrainer

    class CourseSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            total, logits, targets, outputs = reply_token_loss(model, inputs)
            loss = total / (num_items_in_batch if num_items_in_batch is not None else max(len(targets), 1))
            with torch.no_grad():
                hits = (logits.argmax(-1) == targets).sum()
                self._metrics[mode]["mean_token_accuracy"].append((hits / max(len(targets), 1)).item())
            outputs.loss = loss
            return (loss, outputs) if return_outputs else loss

    return CourseSFTTrainer


def train_sft(model, tokenizer, examples: list[CourseExample], profile: Profile, output_dir: str, *, peft_config=None, seed: int = 0, callbacks=None, resume_from_checkpoint=None, eval_examples: list[CourseExample] | None = None, **overrides):
    """Fine-tune `model` in place on `examples` and return the finished trainer.

    `eval_examples` are tokenized exactly as the training examples (`trainer.get_eval_dataloader()`)
    but never scored during training: a lab scores them when it chooses to.
    """
    trainer = course_sft_trainer_class()(
        model=model,
        args=sft_config(profile, output_dir, seed=seed, **overrides),
        train_dataset=course_dataset(examples),
        eval_dataset=course_dataset(eval_examples) if eval_examples else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    restore_full_precision_forward(trainer)
    return trainer


def restore_full_precision_forward(trainer) -> None:
    """Undo accelerate's bf16 autocast wrapper on the trained model's forward.

    With mixed precision, accelerate replaces `model.forward` by an autocast version and leaves
    it there after training, so every later evaluation would silently run in bf16. Evaluations
    and merge checks must compare like with like, in the model's own dtype.
    """
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)


def _logged(trainer, key: str) -> list[dict]:
    return [e for e in trainer.state.log_history if key in e]


def loss_history(trainer) -> tuple[list[int], list[float]]:
    """(steps, training losses) as logged by the trainer."""
    logged = _logged(trainer, "loss")
    return [e["step"] for e in logged], [e["loss"] for e in logged]


def metric_history(trainer, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric the trainer logged, e.g. DPO's "rewards/accuracies" or "rewards/margins"."""
    logged = _logged(trainer, key)
    if not logged:
        keys = sorted({k for e in trainer.state.log_history for k in e})
        raise ValueError(f"the trainer logged no {key!r}; it logged {keys}")
    return [e["step"] for e in logged], [e[key] for e in logged]


def step_losses(trainer) -> dict[int, float]:
    """step -> logged training loss."""
    return dict(zip(*loss_history(trainer)))


def step_learning_rates(trainer) -> dict[int, float]:
    """step -> the learning rate logged with that step's loss."""
    return {e["step"]: e["learning_rate"] for e in _logged(trainer, "loss")}


def logged_training_loss(trainer, last: int = 3) -> float:
    """Mean of the last `last` losses the trainer logged (measured in training mode, noise included)."""
    losses = [e["loss"] for e in _logged(trainer, "loss")]
    if not losses:
        raise ValueError("the trainer logged no training loss (did it train, with logging_steps <= max_steps?)")
    return sum(losses[-last:]) / len(losses[-last:])


def seconds_per_step(trainer) -> float:
    """Mean wall time of one optimizer step, from the trainer's own timing of the run."""
    summary = _logged(trainer, "train_runtime")
    if not summary or not trainer.state.global_step:
        raise ValueError("the trainer has not finished a training run")
    return summary[-1]["train_runtime"] / trainer.state.global_step
