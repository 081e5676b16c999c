"""The reference backend against an independent transcription of the original TS2Vec loss."""

import itertools

import pytest
import torch

import arl_fast
from arl_fast import hierarchical_contrastive_loss, num_levels, resolution_loss, resolution_losses

from original_ts2vec import hierarchical_contrastive_loss as original_loss

CASES = list(itertools.product([1, 2, 3, 8], [1, 2, 3, 7, 64, 100], [1, 5]))


def random_pair(B, T, C, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(B, T, C, generator=g, dtype=dtype).requires_grad_()
    z2 = torch.randn(B, T, C, generator=g, dtype=dtype).requires_grad_()
    return z1, z2


def grads(loss, inputs):
    """Gradients of ``loss`` w.r.t. ``inputs``, zeros where the loss is a constant (as the original's can be)."""
    if not loss.requires_grad:
        return tuple(torch.zeros_like(z) for z in inputs)
    return torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True, retain_graph=True)


@pytest.mark.parametrize("B,T,C", CASES)
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temporal_unit", [0, 1, 3])
def test_hierarchical_matches_original(B, T, C, alpha, temporal_unit):
    z1, z2 = random_pair(B, T, C, seed=B * 1000 + T * 10 + C)
    ours = hierarchical_contrastive_loss(z1, z2, alpha, temporal_unit, backend="reference")
    theirs = original_loss(z1, z2, alpha, temporal_unit)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    for g_ours, g_theirs in zip(grads(ours, (z1, z2)), grads(theirs, (z1, z2))):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)


def test_losses_are_not_trivial():
    z1, z2 = random_pair(8, 64, 5)
    loss = hierarchical_contrastive_loss(z1, z2)
    assert loss.item() > 1.0
    assert all(g.abs().sum() > 0 for g in grads(loss, (z1, z2)))


@pytest.mark.parametrize("B,T,C", [(1, 1, 3), (2, 1, 3), (3, 7, 5), (8, 100, 5), (2, 33, 4)])
@pytest.mark.parametrize("temporal_unit", [0, 2])
def test_levels_compose_the_hierarchical_loss(B, T, C, temporal_unit):
    z1, z2 = random_pair(B, T, C)
    per_level = resolution_losses(z1, z2, 0.5, temporal_unit)
    assert per_level.shape == (num_levels(T),)
    torch.testing.assert_close(per_level.mean(), original_loss(z1, z2, 0.5, temporal_unit), rtol=1e-10, atol=1e-12)
    for level in range(num_levels(T)):
        one = resolution_loss(z1, z2, level, 0.5, temporal_unit)
        torch.testing.assert_close(one, per_level[level], rtol=1e-10, atol=1e-12)
        expected = grads(per_level[level], (z1, z2))
        for g_one, g_expected in zip(grads(one, (z1, z2)), expected):
            torch.testing.assert_close(g_one, g_expected, rtol=1e-10, atol=1e-12)


def test_coarse_level_gradient_reaches_only_pooled_maxima():
    z1, z2 = random_pair(2, 8, 3)
    g1, _ = grads(resolution_loss(z1, z2, level=2), (z1, z2))
    # window 4 over length 8: at most one position per window and channel gets a gradient
    assert ((g1 != 0).reshape(2, 2, 4, 3).sum(dim=2) <= 1).all()


def test_num_levels():
    assert [num_levels(t) for t in (1, 2, 3, 4, 7, 8, 100, 1024)] == [1, 2, 2, 3, 3, 4, 7, 11]
    with pytest.raises(ValueError, match="length"):
        num_levels(0)
    with pytest.raises(TypeError, match="length"):
        num_levels(2.5)


@pytest.mark.parametrize("B,T,C", [(8, 64, 5), (3, 7, 1)])
def test_float32_close_to_float64(B, T, C):
    z1, z2 = random_pair(B, T, C)
    exact = hierarchical_contrastive_loss(z1, z2)
    z1f, z2f = (z.detach().float().requires_grad_() for z in (z1, z2))
    single = hierarchical_contrastive_loss(z1f, z2f)
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), exact, rtol=1e-5, atol=1e-6)
    for g_single, g_exact in zip(grads(single, (z1f, z2f)), grads(exact, (z1, z2))):
        torch.testing.assert_close(g_single.double(), g_exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    z1, z2 = random_pair(4, 16, 5, dtype=dtype)
    loss = hierarchical_contrastive_loss(z1, z2)
    assert loss.dtype == torch.float32
    exact = hierarchical_contrastive_loss(*(z.detach().double() for z in (z1, z2)))
    torch.testing.assert_close(loss.double(), exact, rtol=1e-5, atol=1e-6)
    g1, g2 = grads(loss, (z1, z2))
    assert g1.dtype == dtype and torch.isfinite(g1.float()).all()


def test_loss_with_nothing_to_contrast_is_zero_and_differentiable():
    z1, z2 = random_pair(1, 1, 4)
    loss = hierarchical_contrastive_loss(z1, z2)
    assert loss.item() == 0.0
    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    assert (g1 == 0).all() and (g2 == 0).all()


def test_non_contiguous_inputs():
    z1, z2 = random_pair(4, 20, 6)
    t1, t2 = z1.transpose(0, 1).contiguous().transpose(0, 1), z2[:, :, :]
    assert not t1.is_contiguous()
    torch.testing.assert_close(hierarchical_contrastive_loss(t1, t2), original_loss(z1, z2), rtol=1e-10, atol=1e-12)


BAD_PAIRS = [
    (lambda: ([[1.0]], torch.zeros(2, 3, 4)), TypeError, "z1 must be a torch.Tensor"),
    (lambda: (torch.zeros(2, 3), torch.zeros(2, 3)), ValueError, "z1 must be 3-D"),
    (lambda: (torch.zeros(2, 3, 4), torch.zeros(2, 5, 4)), ValueError, "same shape"),
    (lambda: (torch.zeros(2, 3, 4), torch.zeros(2, 3, 4, dtype=torch.float64)), TypeError, "same dtype"),
    (lambda: (torch.zeros(2, 3, 4, dtype=torch.int64), torch.zeros(2, 3, 4, dtype=torch.int64)), TypeError, "floating-point"),
    (lambda: (torch.zeros(0, 3, 4), torch.zeros(0, 3, 4)), ValueError, "B == 0"),
    (lambda: (torch.zeros(2, 0, 4), torch.zeros(2, 0, 4)), ValueError, "T == 0"),
    (lambda: (torch.zeros(2, 3, 4), torch.zeros(2, 3, 4, device="meta")), ValueError, "same device"),
]


@pytest.mark.parametrize("make,error,message", BAD_PAIRS)
def test_bad_inputs_raise_clear_errors(make, error, message):
    z1, z2 = make()
    with pytest.raises(error, match=message):
        hierarchical_contrastive_loss(z1, z2)


def test_bad_arguments_raise_clear_errors():
    z1, z2 = random_pair(2, 8, 3)
    with pytest.raises(ValueError, match=r"level must be in \[0, 3\]"):
        resolution_loss(z1, z2, level=4)
    with pytest.raises(ValueError, match="level"):
        resolution_loss(z1, z2, level=-1)
    with pytest.raises(ValueError, match="alpha"):
        hierarchical_contrastive_loss(z1, z2, alpha=1.5)
    with pytest.raises(TypeError, match="alpha"):
        hierarchical_contrastive_loss(z1, z2, alpha="half")
    with pytest.raises(ValueError, match="temporal_unit"):
        hierarchical_contrastive_loss(z1, z2, temporal_unit=-1)
    with pytest.raises(ValueError, match="unknown backend 'nope'.*reference"):
        hierarchical_contrastive_loss(z1, z2, backend="nope")


def test_environment_overrides_auto(monkeypatch):
    z1, z2 = random_pair(2, 8, 3)
    monkeypatch.setenv("ARL_FAST_BACKEND", "reference")
    torch.testing.assert_close(hierarchical_contrastive_loss(z1, z2), original_loss(z1, z2), rtol=1e-10, atol=1e-12)
    monkeypatch.setenv("ARL_FAST_BACKEND", "bogus")
    with pytest.raises(ValueError, match="ARL_FAST_BACKEND"):
        hierarchical_contrastive_loss(z1, z2)


def test_available_backends_include_the_reference():
    assert "reference" in arl_fast.available_backends()
