"""A TS2Vec small enough to train in a test, and random series to train it on."""

import numpy as np
import torch

from arl_fast import TS2Vec


def tiny(input_dims=2, **kwargs):
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("device", "cpu")
    return TS2Vec(input_dims, output_dims=8, hidden_dims=8, depth=1, **kwargs)


def series(n=8, length=16, channels=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, length, channels)).astype(np.float32)


def trained_looking(depth, seed=0):
    """A small TS2Vec (3 channels in, 6 out) whose averaged encoder's weights are scaled up 3x, so that no weight
    stays at its small initial scale: what the encode tests compare on."""
    model = TS2Vec(3, output_dims=6, hidden_dims=5, depth=depth, seed=seed, device="cpu")
    with torch.no_grad():
        for p in model._averaged.parameters():
            p.mul_(3.0)
    return model
