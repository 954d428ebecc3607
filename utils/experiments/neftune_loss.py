"""Lab 3.1.3: the loss of a finished SFT run on its training set (noise on or off) and on held-out questions.

What a trainer logs as "loss" is measured during training, in training mode: with NEFTune that
includes the noise on the embeddings (and any dropout), and it averages over weights that were
still changing. `training_set_loss` re-runs the trainer's own training batches (same
tokenization, same completion-only labels) through the finished model, either in eval mode,
where forward hooks that check `module.training` and dropout are inactive, or in training mode
(noise on, if a hook is still registered), so the two differ only in the noise.
"""

from __future__ import annotations


def training_set_loss(trainer, max_batches: int | None = None, train_mode: bool = False) -> float:
    """Mean completion-token cross-entropy over the training set (or its first `max_batches` batches).

    train_mode=False scores the clean model (eval mode); True keeps training-time noise on. No
    gradients either way.
    """
    return _mean_reply_loss(trainer, trainer.get_train_dataloader(), max_batches, train_mode)


def held_out_loss(trainer, max_batches: int | None = None) -> float:
    """The same loss, noise off, on the held-out examples the trainer was given (`train_sft(..., eval_examples=...)`).

    The training-set losses say how tightly a model fits what it saw; this one says how well that
    fit carries to questions worded differently, which is what NEFTune claims to help.
    """
    if trainer.eval_dataset is None:
        raise ValueError("the trainer has no held-out examples: pass eval_examples=... to train_sft")
    return _mean_reply_loss(trainer, trainer.get_eval_dataloader(), max_batches, train_mode=False)


def _mean_reply_loss(trainer, dataloader, max_batches: int | None, train_mode: bool) -> float:
    import torch

    from utils.training import reply_token_loss

    model = trainer.model
    was_training = model.training
    model.train(train_mode)
    total, tokens = 0.0, 0
    try:
        with torch.no_grad():
            for i, batch in enumerate(dataloader):
                if max_batches is not None and i >= max_batches:
                    break
                batch = {k: v.to(model.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}
                summed, _, targets, _ = reply_token_loss(model, batch)
                total += summed.item()
                tokens += len(targets)
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ValueError("no completion tokens to score (every label is -100)")
    return total / tokens
