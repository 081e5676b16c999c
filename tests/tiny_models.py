"""A TS2Vec small enough to train in a test, and random series to train it on."""

import numpy as np

from arl_fast import TS2Vec


def tiny(input_dims=2, **kwargs):
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("device", "cpu")
    return TS2Vec(input_dims, output_dims=8, hidden_dims=8, depth=1, **kwargs)


def series(n=8, length=16, channels=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, length, channels)).astype(np.float32)
