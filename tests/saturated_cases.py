"""Inputs on which the softmax of many rows saturates, as in training, and the rule the fused backends meet there.

TS2Vec's logits are raw dot products: with C = 320 and representations of norm ~40 they reach the thousands,
and once training separates the positives most rows' softmax is one-hot to float precision (their loss ~0).
There a float32 kernel is held to the float32 reference's own error against float64: per case, its losses
and the gradients of a fixed random mix of the levels must be within twice the reference's error, plus a
floor of 1e-6 of the largest exact loss / gradient entry (+1e-7 for losses), the floor of the C++ tests.

Used by tests/test_cpp_loss.py and tests/test_triton_loss.py::

    @pytest.mark.parametrize("case", saturated_cases(), ids=lambda case: case.name)
    def test_saturated(case):
        assert_within_reference(case, "cpp")
"""

from dataclasses import dataclass

import torch

from arl_fast import num_levels, resolution_loss, resolution_losses

LOSS_FLOOR = (1e-6, 1e-7)  # (relative to the largest exact loss, absolute)
GRAD_FLOOR = 1e-6  # relative to the largest exact gradient entry


@dataclass(frozen=True, eq=False)
class SaturatedCase:
    """One input pair (float64, CPU) and the loss to take of it: one level, or every level when ``level`` is None."""

    name: str
    z1: torch.Tensor
    z2: torch.Tensor
    level: int | None = None
    alpha: float = 0.5
    temporal_unit: int = 0

    def __repr__(self):
        return self.name


def _randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def uniform_margin_pair(B, T, C, norm, margin, seed=0):
    """Views whose temporal rows all have the same margin: each row ``c_b + sqrt(margin) e_t`` (orthonormal
    ``c_b / norm, e_t``), ``z2 = z1`` up to 1e-3 noise, so every row's positive beats its ``2T - 2`` negatives by
    ``margin`` and its loss is ``log(1 + (2T - 2) exp(-margin))``: at logits ~``norm**2`` and a margin of ~10,
    a loss below float32's ulp of the logits."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(_randn(g, C, B * (T + 1)))[0].T.reshape(B, T + 1, C)
    z1 = norm * basis[:, :1] + margin**0.5 * basis[:, 1:]
    return z1, z1 + 1e-3 * _randn(g, B, T, C)


def saturated_cases():
    """The saturated inputs, small enough for Triton's interpreter; the same tensors on every call."""
    g = torch.Generator().manual_seed(1717)
    cases = []

    def view_pair(B, T, C, scale, noise):
        z1 = scale * _randn(g, B, T, C)
        return z1, z1 + noise * _randn(g, B, T, C)

    # z1 ~ 2 N(0, 1), z2 = z1 + 0.4 N(0, 1): one series at C = 320, and seven long ones at C = 33
    cases.append(SaturatedCase("T6_C320_level1", *view_pair(1, 6, 320, 2.0, 0.4), level=1))
    cases.append(SaturatedCase("B7_T130_C33_level0", *view_pair(7, 130, 33, 2.0, 0.4), level=0, temporal_unit=1))
    # norm ~40 at C = 320 (logits ~1600), every level, views from close to nearly identical
    for noise in (0.4, 0.05, 1e-3):
        cases.append(SaturatedCase(f"norm40_C320_noise{noise:g}", *view_pair(2, 5, 320, 40 / 320**0.5, noise)))
    # partly saturated rows: per-row losses from ~1 down to ~1e-9, where log l is tiny but not 0
    cases.append(SaturatedCase("C64_partly_saturated", *view_pair(4, 33, 64, 1.2, 0.5), alpha=0.25,
                               temporal_unit=1))
    # near-duplicate rows: neighbouring timestamps almost equal, so a row's largest negatives rival its positive
    z1 = 2.0 * _randn(g, 3, 17, 64)
    z1[:, 1::2] = z1[:, 0:-1:2] + 0.05 * _randn(g, 3, 8, 64)
    cases.append(SaturatedCase("C64_near_duplicate_rows", z1, z1 + 0.05 * _randn(g, 3, 17, 64)))
    # every temporal row's loss ~3e-4 at logits ~1600 (ulp 1.2e-4)
    cases.append(SaturatedCase("C64_uniform_margin10", *uniform_margin_pair(2, 8, 64, 40.0, 10.0), level=0))
    # ties: integer values, identical views, repeated rows: exact ties in pooling windows and among logits
    z1 = 6.0 * torch.randint(-2, 3, (2, 19, 16), generator=g).double()
    z1[:, 1::3] = z1[:, 0:-1:3]
    cases.append(SaturatedCase("C16_ties_identical_views", z1, z1.clone()))
    return cases


def _losses(case, backend, a, b):
    """1-D tensor of the case's losses (every level, or its one level) for ``a, b``."""
    if case.level is None:
        return resolution_losses(a, b, case.alpha, case.temporal_unit, backend=backend)
    return resolution_loss(a, b, case.level, case.alpha, case.temporal_unit, backend=backend)[None]


def _losses_and_grads(case, backend, z1, z2, dtype, device):
    """The case's losses and the gradients of a fixed random mix of them, for leaves of ``dtype`` on ``device``."""
    a, b = (z.to(device, dtype).detach().requires_grad_() for z in (z1, z2))
    losses = _losses(case, backend, a, b)
    count = num_levels(z1.shape[1]) if case.level is None else 1
    mix = torch.rand(count, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
    grads = torch.autograd.grad((losses * mix.to(losses)).sum(), (a, b), allow_unused=True)
    grads = [torch.zeros_like(z) if d is None else d for d, z in zip(grads, (a, b))]
    return losses.detach().cpu().double(), [d.cpu().double() for d in grads]


def _max_error(ours, exact):
    return max((o - e).abs().max().item() for o, e in zip(ours, exact))


@dataclass(frozen=True)
class Errors:
    """Largest absolute errors against float64 of one backend and of the reference in the same dtype."""

    loss: float
    grad: float
    reference_loss: float
    reference_grad: float
    loss_bound: float
    grad_bound: float

    def within(self):
        return self.loss <= self.loss_bound and self.grad <= self.grad_bound


def measure(case, backend, device="cpu", dtype=torch.float32):
    """``backend``'s errors on ``case`` (inputs of ``dtype`` on ``device``), the reference's, and the bounds.

    Every computation sees the same inputs, rounded to ``dtype``; float64 is the reference on them.
    """
    rounded = [z.to(dtype).double() for z in (case.z1, case.z2)]
    exact_losses, exact_grads = _losses_and_grads(case, "reference", *rounded, torch.float64, "cpu")
    ref_losses, ref_grads = _losses_and_grads(case, "reference", *rounded, dtype, "cpu")
    losses, grads = _losses_and_grads(case, backend, *rounded, dtype, device)
    reference_loss, reference_grad = _max_error([ref_losses], [exact_losses]), _max_error(ref_grads, exact_grads)
    loss_floor = LOSS_FLOOR[0] * exact_losses.abs().max().item() + LOSS_FLOOR[1]
    grad_floor = GRAD_FLOOR * max(d.abs().max().item() for d in exact_grads)
    return Errors(_max_error([losses], [exact_losses]), _max_error(grads, exact_grads), reference_loss,
                  reference_grad, 2 * reference_loss + loss_floor, 2 * reference_grad + grad_floor)


def assert_within_reference(case, backend, device="cpu", dtype=torch.float32):
    """Assert ``backend`` is within twice the reference's own error (plus the floor) on ``case``; returns Errors."""
    errors = measure(case, backend, device, dtype)
    assert errors.loss <= errors.loss_bound, f"{case.name}: loss error {errors}"
    assert errors.grad <= errors.grad_bound, f"{case.name}: gradient error {errors}"
    return errors
