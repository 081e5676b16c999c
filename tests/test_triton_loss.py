"""The Triton backend against the float64 reference: values and gradients of every level.

Without a GPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1 before
triton is imported); the interpreter is slow, so shapes are small and cases are chosen, not multiplied out.
Float32 inputs must match the float64 reference to ~1e-5 (values) and ~1e-4 (gradients, relative to their
largest entry); half-precision inputs return half-precision gradients, held to that precision.  On saturated
rows (logits in the thousands, tests/saturated_cases.py) float32 is held to twice the float32 reference's own
error, per case.
"""

import os
import subprocess
import sys

import pytest
import torch

from arl_fast import (available_backends, hierarchical_contrastive_loss, num_levels, resolution_loss,
                      resolution_losses)
from arl_fast.backends import reference
from arl_fast.backends import triton as triton_loss
from saturated_cases import assert_within_reference, saturated_cases, uniform_margin_pair

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    raise RuntimeError("tests/conftest.py should have set TRITON_INTERPRET=1 before triton was imported")

TOLERANCES = {  # dtype -> (value rtol, gradient tolerance relative to the largest entry)
    torch.float64: (1e-10, 1e-9),
    torch.float32: (1e-5, 1e-4),
    torch.float16: (1e-5, 2e-3),
    torch.bfloat16: (1e-5, 1.6e-2),
}


def random_pair(B, T, C, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(B, T, C, generator=g, dtype=torch.float64), \
        scale * torch.randn(B, T, C, generator=g, dtype=torch.float64)


def leaf(z, dtype=torch.float32):
    return z.to(DEVICE, dtype).detach().requires_grad_()


def assert_grads_close(ours, expected, tolerance):
    for g, e in zip(ours, expected):
        scale = e.abs().max().item()
        torch.testing.assert_close(g.double().cpu(), e, rtol=tolerance, atol=tolerance * scale + 1e-12)


def check_all_levels(z1, z2, alpha=0.5, temporal_unit=0, dtype=torch.float32, seed=0):
    """Every level's loss, and the gradient of a random mix of the levels, against the float64 reference."""
    value_rtol, grad_tol = TOLERANCES[dtype]
    a, b = leaf(z1, dtype), leaf(z2, dtype)
    # the reference sees exactly the values the kernels see
    ra, rb = a.detach().cpu().double().requires_grad_(), b.detach().cpu().double().requires_grad_()
    losses = resolution_losses(a, b, alpha, temporal_unit, backend="triton")
    expected = reference.all_level_losses(ra, rb, alpha, temporal_unit)
    assert losses.shape == expected.shape == (num_levels(z1.shape[1]),)
    assert losses.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(losses.double().cpu(), expected, rtol=value_rtol, atol=value_rtol)
    mix = torch.rand(len(expected), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.5
    grads = torch.autograd.grad((losses * mix.to(losses)).sum(), (a, b))
    assert all(g.dtype == dtype and g.shape == z1.shape for g in grads)
    if expected.requires_grad:
        assert_grads_close(grads, torch.autograd.grad((expected * mix).sum(), (ra, rb)), grad_tol)
    else:  # no term contributes (B == 1 and T == 1, or alpha == 1 and T == 1): zero gradients
        assert all(g.abs().max() == 0 for g in grads)


# (B, T, C): every B in {1, 2, 3, 8}, odd and tiny T, T past the interpreter's 32-row tiles, C in {1, 3, 17, 40}
SHAPES = [
    (1, 1, 3), (2, 1, 3), (2, 2, 1), (1, 17, 3), (3, 3, 17), (2, 5, 40), (8, 5, 3),
    (8, 17, 17), (3, 33, 3), (2, 70, 3),
]


@pytest.mark.parametrize("B,T,C", SHAPES)
def test_all_levels_match_reference(B, T, C):
    check_all_levels(*random_pair(B, T, C, seed=B * 1000 + T * 10 + C), seed=T)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temporal_unit", [0, 2])
def test_alpha_and_temporal_unit(alpha, temporal_unit):
    check_all_levels(*random_pair(3, 17, 5, seed=7), alpha, temporal_unit)


def test_channels_320():
    """TS2Vec's default width: 320 is not a power of two (pieces of 256 + 64 on a GPU, 64-wide panels here)."""
    check_all_levels(*random_pair(2, 3, 320, seed=3))


@pytest.mark.parametrize("level", range(num_levels(17)))
def test_single_level_matches_reference(level):
    """resolution_loss computes one level alone: value and gradient of that level only."""
    z1, z2 = random_pair(3, 17, 5, seed=11)
    a, b = leaf(z1), leaf(z2)
    ra, rb = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ours = resolution_loss(a, b, level, 0.5, 1, backend="triton")
    expected = reference.level_loss(ra, rb, level, 0.5, 1)
    assert ours.shape == ()
    torch.testing.assert_close(ours.double().cpu(), expected, rtol=1e-5, atol=1e-6)
    assert_grads_close(torch.autograd.grad(ours, (a, b)), torch.autograd.grad(expected, (ra, rb)), 1e-4)


@pytest.mark.parametrize("level", [8, 9])
def test_coarse_levels_of_a_long_series(level):
    """Levels 8 and 9 pool from the materialised level 8, whose gradient flows back through level 4 to level 0."""
    z1, z2 = random_pair(2, 1100, 3, seed=41)
    a, b = leaf(z1), leaf(z2)
    ra, rb = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ours = resolution_loss(a, b, level, 0.5, 0, backend="triton")
    expected = reference.level_loss(ra, rb, level, 0.5, 0)
    torch.testing.assert_close(ours.double().cpu(), expected, rtol=1e-5, atol=1e-6)
    assert_grads_close(torch.autograd.grad(ours, (a, b)), torch.autograd.grad(expected, (ra, rb)), 1e-4)


def test_hierarchical_loss_is_the_mean_of_levels():
    z1, z2 = random_pair(2, 9, 4, seed=5)
    a, b = leaf(z1), leaf(z2)
    ours = hierarchical_contrastive_loss(a, b, backend="triton")
    torch.testing.assert_close(ours.double().cpu(), reference.all_level_losses(z1, z2, 0.5, 0).mean(),
                               rtol=1e-5, atol=1e-6)


def test_non_contiguous_inputs():
    """Channels-first encoder outputs transposed (same strides for both views), and views of different layout."""
    z1, z2 = random_pair(3, 17, 6, seed=13)
    check_all_levels(z1.transpose(1, 2).contiguous().transpose(1, 2), z2.transpose(1, 2).contiguous().transpose(1, 2))
    wide = torch.cat([z1, z2], dim=2)  # both views inside one tensor, interleaved by row
    check_all_levels(wide[:, :, :6], wide[:, :, 6:])
    check_all_levels(z1, z2.transpose(1, 2).contiguous().transpose(1, 2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes(dtype):
    check_all_levels(*random_pair(3, 17, 40, seed=17), dtype=dtype)


def test_peaked_softmax_from_near_duplicate_rows():
    """Positives almost equal to their anchors, and neighbouring timestamps almost equal: softmax rows near one-hot."""
    z1, _ = random_pair(3, 17, 8, seed=19, scale=4.0)
    z1[:, 1::2] = z1[:, 0:-1:2] + 1e-3 * torch.randn_like(z1[:, 1::2])
    z2 = z1 + 1e-3 * torch.randn_like(z1)
    check_all_levels(z1, z2)


def test_large_magnitudes_do_not_overflow():
    """Similarities of several thousand: a naive exp overflows, the online log-sum-exp must not."""
    z1, z2 = random_pair(3, 17, 8, seed=23, scale=30.0)
    assert (z1.flatten(0, 1) @ z1.flatten(0, 1).T).abs().max() > 1000
    check_all_levels(z1, z2)


@pytest.mark.parametrize("case", saturated_cases(), ids=repr)
def test_saturated_rows_within_twice_the_reference_error(case):
    """Logits in the thousands, softmax rows one-hot to float precision: float32 values and gradients within
    twice the float32 reference's own error against float64 (1e-6 floor)."""
    assert_within_reference(case, "triton", DEVICE)


@pytest.mark.parametrize("margin", [10.0, 14.0])
def test_row_loss_below_the_ulp_of_its_logits(margin):
    """Logits ~1600 (float32 ulp 1.2e-4), every row's loss ~3e-4 or ~6e-6: a float32 ``m + log l`` rounds the
    loss away, the kernels keep it; gradients to what float32 cancellation leaves (~0.2% and ~10% here)."""
    z1, z2 = uniform_margin_pair(2, 8, 64, 40.0, margin)
    z1, z2 = z1.float().double(), z2.float().double()
    a, b = leaf(z1), leaf(z2)
    ra, rb = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ours = resolution_loss(a, b, 0, 0.5, 0, backend="triton")
    expected = reference.level_loss(ra, rb, 0, 0.5, 0)
    assert 1e-6 < expected.item() < 1e-3
    torch.testing.assert_close(ours.double().cpu(), expected.detach(), rtol=1e-3, atol=0)
    grads, exact = torch.autograd.grad(ours, (a, b)), torch.autograd.grad(expected, (ra, rb))
    assert_grads_close(grads, exact, 0.02 if margin == 10.0 else 0.25)


def test_ties_route_the_gradient_like_max_pool1d():
    """Few distinct values: pooling windows hold ties, and the gradient goes to the first maximum, as max_pool1d's."""
    g = torch.Generator().manual_seed(29)
    z1, z2 = (torch.randint(-2, 3, (2, 19, 4), generator=g).double() for _ in range(2))
    check_all_levels(z1, z2)


def test_opcheck():
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of the custom op."""
    z1, z2 = (leaf(z) for z in random_pair(2, 5, 3, seed=31))
    for args in [(z1, z2, 0, 2, 0.5, 0), (z1, z2, 1, 1, 0.25, 1)]:
        torch.library.opcheck(torch.ops.arl_fast.triton_level_losses.default, args)


def test_torch_compile_fullgraph():
    z1, z2 = random_pair(2, 9, 4, seed=37)
    a, b = leaf(z1), leaf(z2)

    def loss(x, y):
        """Through the public API, dispatch included."""
        return hierarchical_contrastive_loss(x, y, backend="triton") + resolution_loss(x, y, 1, backend="triton")

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    value = compiled(a, b)
    expected = loss(a, b)
    torch.testing.assert_close(value, expected)
    for g, e in zip(torch.autograd.grad(value, (a, b)), torch.autograd.grad(expected, (a, b))):
        torch.testing.assert_close(g, e)


def test_available_here():
    assert "triton" in available_backends()
    assert triton_loss.is_available(DEVICE) and triton_loss.unavailable_reason(DEVICE) == ""
    assert "CUDA" in triton_loss.unavailable_reason("meta")


def test_cpu_without_interpreter_is_refused():
    """A process without TRITON_INTERPRET=1 cannot run the kernels on CPU tensors, and says how to."""
    script = (
        "import torch, arl_fast\n"
        "from arl_fast import resolution_loss\n"
        "assert ('triton' in arl_fast.available_backends()) == torch.cuda.is_available()\n"
        "z = torch.randn(2, 4, 3)\n"
        "try:\n"
        "    resolution_loss(z, z, 0, backend='triton')\n"
        "except ValueError as e:\n"
        "    assert 'TRITON_INTERPRET=1' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
        "assert resolution_loss(z, z, 0).isfinite()  # auto falls back to the reference\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)


def test_kernels_compile_for_gpus():
    """The kernels, with the tiles the launchers pick, compile to machine code for sm_75, sm_80 and sm_90."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = os.path.join(os.path.dirname(__file__), "triton_compile_check.py")
    subprocess.run([sys.executable, script], env=env, check=True, timeout=600)
