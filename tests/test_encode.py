"""TS2Vec.encode's options against direct transcriptions of their definitions, and the pruned sliding encode
against the plain windows."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arl_fast import TS2Vec
from arl_fast.encoding import PrunedPlan, pruned_forward
from tiny_models import trained_looking


@pytest.fixture(scope="module")
def model(one_thread):
    return trained_looking(depth=3)


def series(n=2, T=23, C=3, seed=0, missing=True):
    x = np.random.default_rng(seed).normal(size=(n, T, C)).astype(np.float32)
    if missing:
        x[0, :4] = np.nan  # a NaN-padded start
        x[-1, 10, 1] = np.nan  # a missing value inside
    return x


def net_output(model, x, mask=None):
    """The averaged encoder on whole series, with a (T,) keep pattern."""
    batch = torch.from_numpy(x)
    keep = None if mask is None else mask.expand(batch.size(0), -1)
    with torch.no_grad():
        return model._averaged(batch, keep)


def window_by_hand(x, t, length, padding, causal):
    """Series steps [t - padding, t + length + (0 if causal else padding)), NaN outside the series."""
    left, right = t - padding, t + length + (0 if causal else padding)
    window = np.full((x.shape[0], right - left, x.shape[2]), np.nan, np.float32)
    for j, step in enumerate(range(left, right)):
        if 0 <= step < x.shape[1]:
            window[:, j] = x[:, step]
    return window


def sliding_by_hand(model, x, length, padding, causal, mask="all_true", pooling=None):
    """Every window encoded alone, its middle part kept, concatenated and cut to the series' length."""
    kept = []
    for t in range(0, x.shape[1], length):
        window = window_by_hand(x, t, length, padding, causal)
        keep = torch.ones(window.shape[1], dtype=torch.bool)
        if mask == "mask_last":
            keep[-1] = False
        out = net_output(model, window, keep)
        if isinstance(pooling, int):
            out = F.max_pool1d(out.transpose(1, 2), pooling, 1, pooling // 2).transpose(1, 2)[:, : window.shape[1]]
        kept.append(out[:, padding : padding + length])
    return torch.cat(kept, dim=1)[:, : x.shape[1]].numpy()


def test_plain_encode_keeps_its_results(model):
    x = series()
    out = net_output(model, x).numpy()
    np.testing.assert_array_equal(model.encode(x), out)
    np.testing.assert_array_equal(model.encode(x, "full_series"), out.max(axis=1))
    pooled = F.max_pool1d(torch.from_numpy(out).transpose(1, 2), 4, 1, 2).transpose(1, 2)[:, :23].numpy()
    np.testing.assert_array_equal(model.encode(x, 4), pooled)


def test_multiscale_concatenates_max_pools_over_growing_windows(model):
    x = series(T=20)
    out = net_output(model, x).numpy()
    got = model.encode(x, "multiscale")
    # 2**p + 1 < 20 for p = 0..4: windows 3, 5, 9, 17, 33, each centred
    assert got.shape == (2, 20, 5 * 6)
    for p in range(5):
        half = 1 << p
        for t in (0, 7, 19):
            expected = out[:, max(0, t - half) : t + half + 1].max(axis=1)
            np.testing.assert_allclose(got[:, t, p * 6 : (p + 1) * 6], expected, rtol=0, atol=0)


def test_mask_last_masks_the_last_timestamp_in_the_hidden_space(model):
    x = series(missing=False)
    masked = model.encode(x, mask="mask_last")
    hidden_nan = x.copy()
    hidden_nan[:, -1] = np.nan  # a missing step is masked the same way: zero in the hidden space
    np.testing.assert_allclose(masked, net_output(model, hidden_nan).numpy(), atol=1e-6)
    assert not np.allclose(masked[:, -1], model.encode(x)[:, -1])
    all_false = model.encode(x, mask="all_false")
    np.testing.assert_allclose(all_false, net_output(model, np.full_like(x, np.nan)).numpy(), atol=1e-6)


@pytest.mark.parametrize("prune", [True, False])
@pytest.mark.parametrize(
    "length, padding, causal, mask",
    [(1, 8, True, "all_true"), (1, 8, True, "mask_last"), (1, 30, True, "all_true"), (3, 5, False, "all_true"),
     (4, 0, False, "mask_last"), (5, 6, True, "all_true"), (2, 7, False, "mask_last"), (30, 2, False, "all_true")],
)
def test_sliding_windows_match_their_definition(model, length, padding, causal, mask, prune):
    x = series()
    got = model.encode(x, causal=causal, sliding_length=length, sliding_padding=padding, mask=mask, prune=prune,
                       batch_size=7)
    expected = sliding_by_hand(model, x, length, padding, causal, mask)
    assert got.shape == expected.shape == (2, 23, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prune", [True, False])
def test_sliding_windows_with_pooling(model, prune):
    x = series()
    kwargs = dict(causal=True, sliding_length=2, sliding_padding=9, prune=prune)
    np.testing.assert_allclose(model.encode(x, 3, **kwargs), sliding_by_hand(model, x, 2, 9, True, pooling=3), rtol=1e-5,
                               atol=1e-5)
    full = model.encode(x, "full_series", **kwargs)
    np.testing.assert_allclose(full, sliding_by_hand(model, x, 2, 9, True).max(axis=1), rtol=1e-5, atol=1e-5)
    assert model.encode(x, "multiscale", **kwargs).shape == (2, 23, 4 * 6)  # windows of 11 steps: p = 0..3


@pytest.mark.parametrize("encoding_window", [None, 5, "multiscale", "full_series"])
def test_pruned_sliding_encode_equals_the_plain_windows(encoding_window):
    model = TS2Vec(4, output_dims=16, hidden_dims=8, depth=6, seed=1, device="cpu")
    x = series(n=3, T=70, C=4, seed=2)
    for length, padding, causal in ((1, 40, True), (3, 20, False), (1, 63, True)):
        kwargs = dict(causal=causal, sliding_length=length, sliding_padding=padding, mask="mask_last")
        pruned = model.encode(x, encoding_window, **kwargs)
        plain = model.encode(x, encoding_window, prune=False, **kwargs)
        np.testing.assert_allclose(pruned, plain, rtol=1e-5, atol=1e-6 * np.abs(plain).max())


def test_the_pruned_plan_reaches_few_positions_of_the_upper_layers():
    net = TS2Vec(7, seed=0)._averaged  # TS2Vec's default encoder: 10 blocks of dilation 1..512, a final 1024
    plan = PrunedPlan(net, 201, np.array([200]), dense_fraction=2.0)  # nothing computed densely
    outputs = [len(outputs) for _, _, outputs in plan.blocks]
    assert outputs[-4:] == [1, 1, 1, 1]  # dilations 128 (its output), 256, 512 and the final block: one position
    assert outputs[-5] == 2 and outputs[-6] == 4
    pruned, plain = plan.work(net)
    assert plain / pruned > 10
    x = torch.randn(5, 201, 7)
    keep = torch.ones(201, dtype=torch.bool)
    with torch.no_grad():
        for dense_fraction in (0.25, 0.5, 2.0):
            ours = pruned_forward(net, x, keep, PrunedPlan(net, 201, np.array([200]), dense_fraction))
            torch.testing.assert_close(ours, net(x)[:, 200:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [(dict(mask="binomial"), ValueError, "random training masks"), (dict(mask="last"), ValueError, "mask must be"),
     (dict(causal=True), ValueError, "give sliding_length"), (dict(sliding_padding=3), ValueError, "sliding_length"),
     (dict(sliding_length=0), ValueError, "sliding_length must be >= 1"),
     (dict(sliding_length=2, sliding_padding=-1), ValueError, "sliding_padding must be >= 0"),
     (dict(sliding_length=1.5), TypeError, "sliding_length must be an int"),
     (dict(causal="yes", sliding_length=1), TypeError, "causal must be"),
     (dict(encoding_window="multi"), ValueError, "encoding_window must be"),
     (dict(sliding_length=1, batch_size=0), ValueError, "batch_size must be >= 1")],
)
def test_bad_encode_options(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        model.encode(series(), **kwargs)
