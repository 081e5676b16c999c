"""The C++ backend against the float64 reference: values and gradients of every level, every dtype.

float64 must match the reference to ~1e-10; float32 must be within twice the float32 reference's own error
against float64 (FlashAttention's rule); bfloat16 within bfloat16's precision.  Shapes cover the packed path
(2n <= 256 rows), the tiled path with one and several blocks per view, and pooled levels of long series.
"""

import os
import subprocess
import sys

import pytest
import torch

from arl_fast import available_backends, hierarchical_contrastive_loss, num_levels, resolution_loss, resolution_losses
from arl_fast.backends import cpp, reference
from saturated_cases import assert_within_reference, saturated_cases

if "cpp" not in available_backends():
    raise RuntimeError(f"the C++ extension must be built for these tests: {cpp.unavailable_reason('cpu')}")


def random_pair(B, T, C, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(B, T, C, generator=g, dtype=torch.float64),
            scale * torch.randn(B, T, C, generator=g, dtype=torch.float64))


def leaves(*tensors, dtype=torch.float64):
    return [t.detach().to(dtype).requires_grad_() for t in tensors]


def losses_and_grads(fn, z1, z2, mix):
    """Every level's loss and the gradient of a fixed random mix of them."""
    losses = fn(z1, z2)
    grads = torch.autograd.grad((losses * mix.to(losses)).sum(), (z1, z2), allow_unused=True)
    return losses, [torch.zeros_like(z1) if g is None else g for g, z1 in zip(grads, (z1, z2))]


def max_error(ours, exact):
    return max((o.double() - e).abs().max().item() for o, e in zip(ours, exact))


def check_all_levels(z1, z2, alpha=0.5, temporal_unit=0, dtype=torch.float32):
    """cpp in `dtype` vs the float64 reference on the same (rounded) inputs."""
    rounded = [z.to(dtype).double() for z in (z1, z2)]
    mix = torch.rand(num_levels(z1.shape[1]), generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5

    def ours(a, b):
        return resolution_losses(a, b, alpha, temporal_unit, backend="cpp")

    def spec(a, b):
        return reference.all_level_losses(a, b, alpha, temporal_unit)

    exact_losses, exact_grads = losses_and_grads(spec, *leaves(*rounded), mix)
    losses, grads = losses_and_grads(ours, *leaves(*rounded, dtype=dtype), mix)
    assert losses.shape == exact_losses.shape
    assert losses.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert all(g.dtype == dtype and g.shape == z1.shape for g in grads)
    scale = max(max(g.abs().max().item() for g in exact_grads), 1e-30)
    if dtype == torch.float64:
        torch.testing.assert_close(losses, exact_losses, rtol=1e-10, atol=1e-10)
        assert max_error(grads, exact_grads) <= 1e-10 * scale + 1e-14
    elif dtype == torch.float32:
        ref_losses, ref_grads = losses_and_grads(spec, *leaves(*rounded, dtype=dtype), mix)
        loss_floor = 1e-6 * exact_losses.abs().max().item() + 1e-7
        assert max_error([losses], [exact_losses]) <= 2 * max_error([ref_losses], [exact_losses]) + loss_floor
        assert max_error(grads, exact_grads) <= 2 * max_error(ref_grads, exact_grads) + 1e-6 * scale
    else:  # bfloat16: products of bf16 values accumulated in float32, gradients rounded to bf16
        torch.testing.assert_close(losses.double(), exact_losses, rtol=1e-2, atol=1e-2)
        assert max_error(grads, exact_grads) <= 1.6e-2 * scale


SHAPES = [  # (B, T, C): packed groups (2n <= 256), one block per view (n <= 256), several blocks per view
    (1, 1, 3), (2, 1, 3), (1, 2, 1), (2, 2, 1), (3, 3, 17), (8, 5, 3), (2, 17, 40), (8, 17, 17), (3, 33, 3),
    (1, 40, 5), (8, 100, 17), (2, 100, 320), (2, 129, 320), (3, 300, 7), (8, 64, 1), (2, 200, 3), (1, 1100, 3),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("B,T,C", SHAPES)
def test_all_levels_match_reference(B, T, C, dtype):
    check_all_levels(*random_pair(B, T, C, seed=B * 1000 + T * 10 + C), dtype=dtype)


@pytest.mark.parametrize("B", [1, 2, 3, 8])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temporal_unit", [0, 2])
def test_alpha_and_temporal_unit(B, alpha, temporal_unit):
    check_all_levels(*random_pair(B, 150, 5, seed=7 + B), alpha, temporal_unit, dtype=torch.float64)


@pytest.mark.parametrize("T,level", [(17, 0), (17, 2), (17, 4), (300, 1), (1100, 8), (1100, 10)])
def test_single_level_matches_reference(T, level):
    """resolution_loss computes one level alone: value and gradient of that level only."""
    z1, z2 = random_pair(3, T, 5, seed=11)
    a, b = leaves(z1, z2)
    ra, rb = leaves(z1, z2)
    ours = resolution_loss(a, b, level, 0.5, 1, backend="cpp")
    expected = reference.level_loss(ra, rb, level, 0.5, 1)
    assert ours.shape == ()
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)
    ga, ge = torch.autograd.grad(ours, (a, b)), torch.autograd.grad(expected, (ra, rb))
    assert max_error(ga, ge) <= 1e-10 * max(g.abs().max().item() for g in ge)


def test_hierarchical_loss_is_the_mean_of_levels():
    z1, z2 = random_pair(2, 9, 4, seed=5)
    ours = hierarchical_contrastive_loss(z1, z2, backend="cpp")
    torch.testing.assert_close(ours, reference.all_level_losses(z1, z2, 0.5, 0).mean(), rtol=1e-12, atol=1e-12)


def test_non_contiguous_inputs():
    z1, z2 = random_pair(3, 150, 6, seed=13)
    check_all_levels(z1.transpose(1, 2).contiguous().transpose(1, 2), z2.transpose(1, 2).contiguous().transpose(1, 2))
    wide = torch.cat([z1, z2], dim=2)  # both views inside one tensor
    check_all_levels(wide[:, :, :6], wide[:, :, 6:])


@pytest.mark.parametrize("B,T,C", [(3, 17, 40), (2, 150, 16)])
def test_bfloat16_and_float16_inputs(B, T, C):
    z1, z2 = random_pair(B, T, C, seed=17)
    check_all_levels(z1, z2, dtype=torch.bfloat16)
    a, b = leaves(z1, z2, dtype=torch.float16)  # float16 runs in float32, gradients back in float16
    losses = resolution_losses(a, b, backend="cpp")
    assert losses.dtype == torch.float32
    assert all(g.dtype == torch.float16 for g in torch.autograd.grad(losses.sum(), (a, b)))


@pytest.mark.parametrize("B,T,C", [(3, 17, 40), (2, 300, 16)])
def test_bfloat16_tiles(B, T, C):
    """The bf16 x bf16 -> fp32 gemm path the op takes on CPUs with native bf16 (called directly on any CPU)."""
    z1, z2 = random_pair(B, T, C, seed=43)
    a, b = leaves(z1, z2, dtype=torch.bfloat16)
    levels = num_levels(T)
    losses, _ = torch.ops.arl_fast.cpp_level_losses(a, b, 0, levels, 0.5, 0)
    assert losses.dtype == torch.float32
    ra, rb = leaves(a.double(), b.double())
    expected = reference.all_level_losses(ra, rb, 0.5, 0)
    torch.testing.assert_close(losses.double(), expected, rtol=1e-2, atol=1e-2)
    grads = torch.autograd.grad(losses.sum(), (a, b))
    exact = torch.autograd.grad(expected.sum(), (ra, rb))
    assert all(g.dtype == torch.bfloat16 for g in grads)
    assert max_error(grads, exact) <= 1.6e-2 * max(g.abs().max().item() for g in exact)


def test_peaked_softmax_from_near_duplicate_rows():
    """Positives almost equal to their anchors, neighbouring timestamps almost equal: softmax rows near one-hot."""
    z1, _ = random_pair(3, 150, 8, seed=19, scale=4.0)
    z1[:, 1::2] = z1[:, 0:-1:2] + 1e-3 * torch.randn_like(z1[:, 1::2])
    z2 = z1 + 1e-3 * torch.randn_like(z1)
    check_all_levels(z1, z2)
    check_all_levels(z1, z2, dtype=torch.float64)


def test_large_magnitudes_do_not_overflow():
    """Similarities of several thousand: a naive exp overflows, the online log-sum-exp must not."""
    z1, z2 = random_pair(3, 150, 8, seed=23, scale=30.0)
    assert (z1.flatten(0, 1) @ z1.flatten(0, 1).T).abs().max() > 1000
    check_all_levels(z1, z2)
    check_all_levels(z1, z2, dtype=torch.float64)


def test_ties_route_the_gradient_like_max_pool1d():
    """Few distinct values: pooling windows hold ties, the gradient goes to the first maximum, as max_pool1d's."""
    g = torch.Generator().manual_seed(29)
    z1, z2 = (torch.randint(-2, 3, (2, 150, 4), generator=g).double() for _ in range(2))
    check_all_levels(z1, z2, dtype=torch.float64)


def reference_loss_error(z1, z2, level, alpha, temporal_unit):
    """The float32 reference's error on a level's loss, term by term: alpha |e_instance| + (1 - alpha) |e_temporal|.

    A level's loss is the sum of two terms whose float32 errors (~1e-5 each at logits of ~1e3) may cancel in the
    sum; a kernel whose terms are each more accurate than the reference's could still miss twice the sum's error."""
    exact = [reference.pool(z, level) for z in (z1, z2)]
    rounded = [z.float() for z in exact]
    error = 0.0
    if alpha != 0:
        instance = [reference.instance_contrastive(*zs).item() for zs in (rounded, exact)]
        error += alpha * abs(instance[0] - instance[1])
    if alpha != 1 and level >= temporal_unit:
        temporal = [reference.temporal_contrastive(*zs).item() for zs in (rounded, exact)]
        error += (1 - alpha) * abs(temporal[0] - temporal[1])
    return error


def check_each_level(z1, z2, alpha=0.5, temporal_unit=0, levels=None):
    """float32 cpp vs the float32 reference, both against float64, level by level: loss and gradient of each level
    alone, so that a saturated level's small gradient is not measured against another level's large one.

    The loss is held to twice the reference's error term by term (reference_loss_error) plus the usual floor.
    Besides the usual floor, the gradient is allowed float64's own rounding, 2**-49 max|z|: a saturated row's
    gradient sums terms of the size of z to nearly zero, and where float64 rounds it to 0 the cpp kernel's
    ~1e-34 (it folds the positive into the probabilities) is closer to the truth than the float64 "exact" one."""
    rounded = [z.float().double() for z in (z1, z2)]
    float64_floor = 2.0**-49 * max(z.abs().max().item() for z in rounded)
    for level in range(num_levels(z1.shape[1])) if levels is None else levels:
        results = {}
        for name, dtype in [("exact", torch.float64), ("reference", torch.float32), ("cpp", torch.float32)]:
            a, b = leaves(*rounded, dtype=dtype)
            backend = "cpp" if name == "cpp" else "reference"
            loss = resolution_loss(a, b, level, alpha, temporal_unit, backend=backend)
            results[name] = (loss, torch.autograd.grad(loss, (a, b), allow_unused=True))
        exact_loss, exact_grads = results["exact"]
        exact_grads = [torch.zeros_like(z) if g is None else g for g, z in zip(exact_grads, rounded)]
        scale = max(max(g.abs().max().item() for g in exact_grads), 1e-30)
        loss_floor = 1e-6 * exact_loss.abs().item() + 1e-7
        errors = {}
        for name in ["reference", "cpp"]:
            loss, grads = results[name]
            grads = [torch.zeros_like(z) if g is None else g for g, z in zip(grads, rounded)]
            errors[name] = (abs(loss.double() - exact_loss).item(), max_error(grads, exact_grads))
        reference_terms = reference_loss_error(*rounded, level, alpha, temporal_unit)
        where = (f"level {level}: cpp (loss, grad) errors {errors['cpp']}, reference {errors['reference']} "
                 f"(loss, term by term: {reference_terms:.3g}), grad scale {scale:.3g}")
        assert errors["cpp"][0] <= 2 * reference_terms + loss_floor, where
        assert errors["cpp"][1] <= 2 * errors["reference"][1] + 1e-6 * scale + float64_floor, where


def near_identical_views(B, T, C, seed, scale=2.0, noise=0.4):
    """z1 ~ scale N(0, 1), z2 = z1 + noise N(0, 1): logits ~ scale^2 C, positives ahead by ~ (scale^2 - noise^2) C
    scale, most softmax rows saturated (loss ~0)."""
    g = torch.Generator().manual_seed(seed)
    z1 = scale * torch.randn(B, T, C, generator=g, dtype=torch.float64)
    return z1, z1 + noise * torch.randn(B, T, C, generator=g, dtype=torch.float64)


SATURATED = [  # (B, T, C, scale, noise, alpha, temporal_unit): packed groups, one and several blocks per view, each
    # level on its own (the shared cases are sized for Triton's interpreter: mostly packed groups)
    (1, 6, 320, 2.0, 0.4, 0.5, 0),
    (7, 130, 33, 2.0, 0.4, 0.5, 1),
    (8, 20, 320, 2.0, 0.4, 0.5, 0),
    (2, 257, 64, 3.0, 0.1, 0.5, 0),
    (2, 300, 96, 3.6, 0.4, 0.5, 0),   # logits ~1200, two blocks per view
    (4, 40, 320, 1.0, 0.5, 0.5, 0),   # partly saturated: log l from ~1e-6 to ~1, where m + log l rounds worst
    (2, 270, 100, 1.6, 1.0, 0.5, 0),
    (3, 64, 320, 8.0, 0.4, 0.5, 0),   # logits ~2e4
    (5, 50, 320, 2.0, 0.4, 0.0, 0),
    (5, 50, 320, 2.0, 0.4, 1.0, 0),
    (3, 100, 100, 2.0, 0.4, 0.5, 2),
    (2, 40, 320, 2.0, 0.0, 0.5, 0),   # identical views: the positive logit is the row's own norm
]


@pytest.mark.parametrize("case", saturated_cases(), ids=lambda case: case.name)
def test_saturated_cases(case):
    """The shared saturated cases (tests/saturated_cases.py), the rule of every fused backend."""
    assert_within_reference(case, "cpp")


@pytest.mark.parametrize("B,T,C,scale,noise,alpha,temporal_unit", SATURATED)
def test_saturated_rows_match_reference(B, T, C, scale, noise, alpha, temporal_unit):
    z1, z2 = near_identical_views(B, T, C, seed=B * 1000 + T + C, scale=scale, noise=noise)
    check_each_level(z1, z2, alpha, temporal_unit)


@pytest.mark.parametrize("B,T,C", [(3, 40, 320), (2, 264, 32)])
def test_saturated_rows_with_near_duplicates_and_ties(B, T, C):
    """Saturated rows whose neighbours are near-copies (a second logit within ~1e-3 of the positive) and exact copies
    (tied logits: p = 1/2 for both), packed and tiled; every level at once, as the shared cases (level by level, the
    coarsest levels' few unsaturated rows leave the gemm's rounding of their largest negative, ~1e-5 at logits of
    ~1e3, which a 4-row reference may happen to beat)."""
    z1, z2 = near_identical_views(B, T, C, seed=53 + T, scale=2.0, noise=0.4)
    jitter = torch.randn(z1[:, 1::4].shape, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    z1[:, 1::4] = z1[:, 0:-1:4] + 1e-3 * jitter
    z1[:, 2::4] = z1[:, 0:-2:4]
    z2[:, 2::4] = z2[:, 0:-2:4]
    check_all_levels(z1, z2)
    check_all_levels(z1, z2, dtype=torch.float64)


def test_saturated_rows_float64_exact():
    z1, z2 = near_identical_views(2, 300, 96, seed=59, scale=3.6)
    check_all_levels(z1, z2, dtype=torch.float64)


def run_with_threads(threads, z1, z2):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = leaves(z1, z2, dtype=torch.float32)
        losses = resolution_losses(a, b, backend="cpp")
        return [losses.detach(), *torch.autograd.grad(losses.sum(), (a, b))]
    finally:
        torch.set_num_threads(previous)


def test_deterministic_and_thread_count_independent():
    z1, z2 = random_pair(8, 600, 32, seed=47)
    one, two, again = run_with_threads(1, z1, z2), run_with_threads(2, z1, z2), run_with_threads(2, z1, z2)
    for x, y in zip(two, again):
        assert torch.equal(x, y)  # same bits run to run
    for x, y in zip(one, two):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6 * x.abs().max().item())


def test_opcheck():
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of the custom op."""
    z1, z2 = leaves(*random_pair(2, 5, 3, seed=31), dtype=torch.float32)
    for args in [(z1, z2, 0, 3, 0.5, 0), (z1, z2, 1, 1, 0.25, 1)]:
        torch.library.opcheck(torch.ops.arl_fast.cpp_level_losses.default, args)


def test_torch_compile_fullgraph():
    a, b = leaves(*random_pair(2, 9, 4, seed=37), dtype=torch.float32)

    def loss(x, y):
        """Through the public API, dispatch included."""
        return hierarchical_contrastive_loss(x, y, backend="cpp") + resolution_loss(x, y, 1, backend="cpp")

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    value, expected = compiled(a, b), loss(a, b)
    torch.testing.assert_close(value, expected)
    for g, e in zip(torch.autograd.grad(value, (a, b)), torch.autograd.grad(expected, (a, b))):
        torch.testing.assert_close(g, e)


def test_auto_picks_cpp_on_cpu():
    from arl_fast.backends import resolve_backend

    assert resolve_backend("auto", "cpu") == "cpp"
    assert "CPU" in cpp.unavailable_reason("meta")


# A process in which no variant of the extension can be imported, as where no compiler was found at install time.
MISSING_EXTENSION = "import sys\n" + "".join(f"sys.modules['{cpp.module_name(v)}'] = None\n" for v in cpp.VARIANTS)


def test_fallback_when_the_extension_is_missing():
    script = MISSING_EXTENSION + (
        "import torch, arl_fast\n"
        "from arl_fast.backends import cpp, resolve_backend\n"
        "assert 'cpp' not in arl_fast.available_backends()\n"
        "assert 'arl_fast._C_default' in cpp.unavailable_reason('cpu')\n"
        "assert cpp.isa() == ''\n"
        "assert resolve_backend('auto', 'cpu') == 'reference'\n"
        "z = torch.randn(2, 4, 3)\n"
        "assert arl_fast.hierarchical_contrastive_loss(z, z).isfinite()\n"
        "try:\n"
        "    arl_fast.resolution_loss(z, z, 0, backend='cpp')\n"
        "except ValueError as e:\n"
        "    assert 'arl_fast._C_default' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != cpp.REQUIRE_ENV_VAR}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)


def test_required_extension_missing_is_an_error():
    env = {**os.environ, cpp.REQUIRE_ENV_VAR: "1"}
    result = subprocess.run([sys.executable, "-c", MISSING_EXTENSION + "import arl_fast\n"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "ARL_FAST_REQUIRE_EXT=1" in result.stderr and "arl_fast._C_default" in result.stderr
