"""What the preference-loss tests (Labs 3.1.7-3.1.9) share when they hold a solution to TRL's trainers:
one tiny random Llama with the course tokenizer's vocabulary, and gradients compared up to fp32 order."""

import torch


def tiny_llama(vocab_size: int):
    """A two-layer Llama small enough to run a TRL trainer's batch in a second (seeded: the same every call)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))


def grads(model, loss) -> dict:
    """name -> gradient of `loss` for every parameter that gets one."""
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_grads_close(ours: dict, theirs: dict, rtol: float):
    """Equal gradients up to fp32 summation order.

    TRL runs chosen and rejected through one padded forward, the check through two, so a handful of the
    1.5M embedding entries differ by ~1e-6 at a large beta. Tolerance: `rtol` of each entry plus 1e-5 of
    the tensor's largest entry; a wrong loss is off by O(1) of that.
    """
    assert theirs.keys() == ours.keys()
    for name, g in theirs.items():
        torch.testing.assert_close(ours[name], g, rtol=rtol, atol=1e-5 * g.abs().max().item(),
                                   msg=lambda m, name=name: f"{name}: {m}")
