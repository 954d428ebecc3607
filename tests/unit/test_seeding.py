"""utils.seeding: one call makes Python's, NumPy's and torch's random draws repeat."""

import random

import numpy as np
import torch

from utils.seeding import seed_everything


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist(), torch.nn.Linear(4, 2).weight.tolist()


def test_the_same_seed_gives_the_same_draws_from_every_generator():
    seed_everything(7)
    first = _draws()
    random.random(), np.random.rand(), torch.rand(5)  # move every generator on
    seed_everything(7)
    assert _draws() == first


def test_a_different_seed_changes_every_generator():
    seed_everything(0)
    zero = _draws()
    seed_everything(1)
    one = _draws()
    assert all(a != b for a, b in zip(zero, one)), "a generator ignored the seed"
