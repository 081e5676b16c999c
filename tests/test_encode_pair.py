"""The two-mask sliding encode (the anomaly score's): the same as two plain encodes and as two pruned encodes on
every option, with the second pass computing only what the masks' difference reaches."""

import numpy as np
import pytest
import torch

from arl_fast import TS2Vec
from arl_fast.encoder import TSEncoder
from arl_fast.encoding import PrunedPlan, encode_pair, pruned_forward, pruned_forward_pair
from tiny_models import trained_looking


@pytest.fixture(scope="module")
def model(one_thread):
    return trained_looking(depth=4)


def series(n=2, T=41, C=3, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, T, C)).astype(np.float32)
    x[0, :4] = np.nan  # a NaN-padded start
    x[-1, 10, 1] = np.nan  # a missing value inside: its window's last step is missing under both masks
    return x


def both(model, x, masks, encoding_window=None, **kwargs):
    return tuple(model.encode(x, encoding_window, mask=mask, **kwargs) for mask in masks)


@pytest.mark.parametrize("encoding_window", [None, 3, "multiscale", "full_series"])
@pytest.mark.parametrize("length, padding, causal", [(1, 20, True), (1, 3, True), (3, 7, False), (2, 1, False),
                                                     (5, 30, True)])
@pytest.mark.parametrize("masks", [("mask_last", "all_true"), ("all_true", "mask_last"), ("all_true", "all_false")])
def test_the_pair_equals_two_pruned_and_two_plain_encodes(model, encoding_window, length, padding, causal, masks):
    x = series()
    kwargs = dict(causal=causal, sliding_length=length, sliding_padding=padding, batch_size=7)
    shared = encode_pair(model._averaged, x, encoding_window, masks=masks, **kwargs)
    pruned = both(model, x, masks, encoding_window, **kwargs)
    plain = both(model, x, masks, encoding_window, prune=False, **kwargs)
    if encoding_window is None:  # the first pass is the pruned encode's own computation
        np.testing.assert_array_equal(shared[0], pruned[0])
    for ours, one, other in zip(shared, pruned, plain):
        assert ours.shape == one.shape == other.shape
        scale = np.abs(other).max()
        np.testing.assert_allclose(ours, one, rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_allclose(ours, other, rtol=1e-5, atol=1e-6 * scale)
    assert not np.allclose(shared[0], shared[1])  # the masks do change the representations compared


def test_the_pair_without_pruning_is_the_plain_encode(model):
    x = series()
    kwargs = dict(causal=True, sliding_length=1, sliding_padding=12)
    ours = encode_pair(model._averaged, x, prune=False, **kwargs)
    for got, expected in zip(ours, both(model, x, ("mask_last", "all_true"), prune=False, **kwargs)):
        np.testing.assert_array_equal(got, expected)


def test_equal_masks_give_one_representation_twice(model):
    x = series()
    first, second = encode_pair(model._averaged, x, masks=("all_true", None), causal=True, sliding_length=1,
                                sliding_padding=12)
    np.testing.assert_array_equal(first, second)


def test_the_difference_reaches_only_the_last_outputs_and_costs_little():
    net = TS2Vec(1, seed=0)._averaged  # TS2Vec's default encoder, the anomaly score's 201-step causal windows
    plan = PrunedPlan(net, 201, np.array([200]))
    differing = plan.differing(net, np.array([200]))
    assert [len(d[0]) for d in differing[:3]] == [1, 3, 7]  # the last step, then its reach through dilations 1, 2
    np.testing.assert_array_equal(differing[-1][2], [200])
    pruned, plain = plan.work(net)
    assert plan.pair_work(net, np.array([200])) < 0.15 * pruned < 0.02 * plain


@pytest.mark.parametrize("kernel_size", [2, 3])  # an even kernel's dilated taps skip the output's own position
@pytest.mark.parametrize("dense_fraction", [0.25, 0.5, 2.0])
def test_the_pair_forward_equals_the_plain_windows(dense_fraction, kernel_size):
    torch.manual_seed(3)
    net = TSEncoder(2, output_dims=12, hidden_dims=8, depth=5, kernel_size=kernel_size).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    x = torch.randn(6, 50, 2)
    x[1, -1] = float("nan")  # the last step missing: both masks see nothing there
    x[2, 40:45, 0] = float("nan")
    masked = torch.ones(50, dtype=torch.bool)
    masked[-1] = False
    seen = torch.ones(50, dtype=torch.bool)
    outputs = np.array([30, 49])
    plan = PrunedPlan(net, 50, outputs, dense_fraction)
    with torch.no_grad():
        first, second = pruned_forward_pair(net, x, (masked, seen), plan)
        torch.testing.assert_close(first, pruned_forward(net, x, masked, plan), rtol=0, atol=0)
        rows = np.searchsorted(plan.outputs, outputs)
        torch.testing.assert_close(first[:, rows], net(x, masked.expand(6, -1))[:, outputs], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(second[:, rows], net(x, seen.expand(6, -1))[:, outputs], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(second[1], first[1])  # a missing last step: masking it changes nothing


@pytest.mark.parametrize("masks, message", [(("mask_last",), "pair of masks"), ("mask_last", "pair of masks"),
                                            (("mask_last", "binomial"), "random training masks"),
                                            (("mask_last", "last"), "mask must be")])
def test_bad_masks(model, masks, message):
    with pytest.raises(ValueError, match=message):
        encode_pair(model._averaged, series(), masks=masks, causal=True, sliding_length=1)
