"""The bf16 x bf16 -> float32 products of the cpp kernels' bf16 tiles: the AVX512-BF16 micro-kernel against MKL's
bf16 gemm and the float64 product of the same bf16 values, per case.

Both sum float32 products of bf16 pairs in float32, in different orders, so each must be within float32's
accumulation error of the exact product (relative to sum |a| |b|); every transposition the kernels use, tails of
every size, alpha and beta, and beta = 0 ignoring what C held.  The loss itself in bf16 with the micro-kernel is
checked against the float64 reference by test_cpp_loss.py; here it is also checked against the MKL path.
"""

import itertools
import os
import subprocess
import sys

import pytest
import torch

from arl_fast.backends import cpp

if not cpp.is_available("cpu"):
    raise RuntimeError(f"the C++ extension must be built for these tests: {cpp.unavailable_reason('cpu')}")

OWN = "avx512_bf16"
own_runs = pytest.mark.skipif(
    "avx512_bf16" not in open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else True,
    reason="this CPU has no AVX512-BF16: the micro-kernel cannot run here (MKL's gemm does the bf16 tiles)")


def product(a, b, c, transpose_a, transpose_b, alpha, beta, implementation):
    return torch.ops.arl_fast.cpp_bf16_gemm(a, b, c, transpose_a, transpose_b, alpha, beta, implementation)


def exact_and_scale(a, b, c, transpose_a, transpose_b, alpha, beta):
    oa = a.double().t() if transpose_a else a.double()
    ob = b.double().t() if transpose_b else b.double()
    exact = alpha * oa @ ob + beta * c.double()
    scale = abs(alpha) * oa.abs() @ ob.abs() + abs(beta) * c.double().abs()
    return exact, scale


def operands(M, N, K, transpose_a, transpose_b, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    a = (scale * torch.randn((K, M) if transpose_a else (M, K), generator=g)).bfloat16()
    b = (scale * torch.randn((N, K) if transpose_b else (K, N), generator=g)).bfloat16()
    return a, b, torch.randn(M, N, generator=g)


SHAPES = [(1, 1, 1), (1, 17, 2), (5, 7, 3), (12, 32, 2), (13, 33, 5), (24, 48, 1), (37, 300, 64), (100, 17, 31),
          (256, 256, 320), (256, 320, 256), (250, 320, 255), (7, 16, 33)]


@own_runs
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("transpose_a,transpose_b", list(itertools.product([False, True], repeat=2)))
def test_micro_kernel_matches_the_exact_product(M, N, K, transpose_a, transpose_b):
    a, b, c = operands(M, N, K, transpose_a, transpose_b, seed=M * 100 + N + K)
    for alpha, beta in [(1.0, 0.0), (0.7, 1.0), (-2.0, 0.5)]:
        exact, scale = exact_and_scale(a, b, c, transpose_a, transpose_b, alpha, beta)
        bound = (K + 2) * 2.0**-24 * scale + 1e-30  # float32 sums of K exact products, then alpha and beta
        for implementation in (OWN, "mkl"):
            out = product(a, b, c, transpose_a, transpose_b, alpha, beta, implementation)
            assert out.dtype == torch.float32 and out.shape == (M, N)
            error = (out.double() - exact).abs()
            assert (error <= bound).all(), (implementation, alpha, beta, (error / bound).max().item())


@own_runs
def test_beta_zero_never_reads_c():
    a, b, _ = operands(20, 40, 9, False, False, seed=3)
    c = torch.full((20, 40), float("nan"))
    out = product(a, b, c, False, False, 1.0, 0.0, OWN)
    torch.testing.assert_close(out.double(), a.double() @ b.double(), rtol=1e-5, atol=1e-5)


@own_runs
def test_large_and_tiny_values():
    """Softmax tiles hold values down to the float32 normal range, logits go to the thousands: bf16 keeps float32's
    exponent range, so the products must too (no overflow).  vdpbf16ps flushes products and sums below the normal
    range to zero, as the kernels flush their tiles: at most one smallest normal per product lost."""
    tiny = torch.finfo(torch.float32).tiny
    for scale in (1e-18, 1e15):
        a, b, c = operands(33, 64, 40, False, True, seed=5, scale=scale)
        exact, bound = exact_and_scale(a, b, c * 0, False, True, 1.0, 0.0)
        out = product(a, b, c, False, True, 1.0, 0.0, OWN)
        assert torch.isfinite(out).all()
        assert ((out.double() - exact).abs() <= 42 * 2.0**-24 * bound + 2 * 40 * tiny).all()
        assert (out.double() - exact).abs().max() <= 1e-3 * exact.abs().max()


def test_bad_arguments_are_refused():
    a, b, c = operands(4, 4, 4, False, False, seed=1)
    with pytest.raises(RuntimeError, match="bfloat16"):
        product(a.float(), b, c, False, False, 1.0, 0.0, "mkl")
    with pytest.raises(RuntimeError, match="implementation"):
        product(a, b, c, False, False, 1.0, 0.0, "blas")
    with pytest.raises(RuntimeError, match="shapes"):
        product(a, b[:3], c, False, False, 1.0, 0.0, "mkl")


def test_the_kernels_name_their_bf16_products():
    expected = ""
    if cpp.fast_bf16():
        has_amx = "amx_bf16" in open("/proc/cpuinfo").read()
        expected = "avx512_bf16" if cpp.isa() in ("avx512", "native") and not has_amx else "mkl"
    assert cpp.bf16_products() == expected


LOSS_SCRIPT = """
import torch
from arl_fast import resolution_losses
from saturated_cases import saturated_cases
g = torch.Generator().manual_seed(7)
z1 = 40 / 320**0.5 * torch.randn(2, 700, 320, generator=g, dtype=torch.float64)
cases = [(case.name, case.z1, case.z2, case.alpha, case.temporal_unit) for case in saturated_cases()]
cases.append(("tiled_norm40_T700", z1, z1 + 0.05 * torch.randn(2, 700, 320, generator=g, dtype=torch.float64), 0.5, 0))
out = {{}}
for name, z1, z2, alpha, unit in cases:
    a, b = (z.detach().bfloat16().requires_grad_() for z in (z1, z2))
    losses = resolution_losses(a, b, alpha, unit, backend="cpp")
    grads = torch.autograd.grad(losses.sum(), (a, b))
    out[name] = (losses.detach(), [grad.float() for grad in grads])
torch.save((torch.ops.arl_fast.cpp_bf16_gemm_implementation(), out), {path!r})
"""


@own_runs
def test_loss_with_the_micro_kernel_matches_the_mkl_path(tmp_path):
    """The bf16 loss and gradients on training-like inputs (saturated rows, near-duplicates, large norms): the
    micro-kernel and MKL (ARL_FAST_BF16_GEMM=mkl) multiply the same bf16 tiles, so they agree to float32 sums."""
    results = {}
    for implementation in ("auto", "mkl"):
        path = tmp_path / f"{implementation}.pt"
        env = dict(os.environ, ARL_FAST_BF16_GEMM=implementation, PYTHONPATH=os.path.dirname(__file__))
        subprocess.run([sys.executable, "-c", LOSS_SCRIPT.format(path=str(path))], env=env, check=True)
        results[implementation] = torch.load(path)
    assert results["auto"][0] == OWN and results["mkl"][0] == "mkl"
    own, mkl = results["auto"][1], results["mkl"][1]
    assert own.keys() == mkl.keys() and own
    for name in own:
        (own_losses, own_grads), (mkl_losses, mkl_grads) = own[name], mkl[name]
        torch.testing.assert_close(own_losses, mkl_losses, rtol=1e-3, atol=1e-4, msg=name)
        for g_own, g_mkl in zip(own_grads, mkl_grads):
            scale = g_mkl.abs().max().item()
            assert (g_own - g_mkl).abs().max().item() <= 2e-2 * scale + 1e-12, name
