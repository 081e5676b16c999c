"""Public loss functions: TS2Vec's hierarchical contrastive loss and its per-resolution parts, on any backend."""

import numbers

from ._validation import check_alpha, check_level, check_pair, check_temporal_unit
from .backends import backend_module, resolve_backend


def num_levels(length):
    """Number of resolutions of a length-``length`` sequence: lengths ``length, length // 2, ..., 1``."""
    if isinstance(length, bool) or not isinstance(length, numbers.Integral):
        raise TypeError(f"length must be an int, got {length!r}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    return int(length).bit_length()


def _prepare(z1, z2, alpha, temporal_unit, backend):
    check_pair(z1, z2)
    check_alpha(alpha)
    check_temporal_unit(temporal_unit)
    return backend_module(resolve_backend(backend, z1.device))


def resolution_loss(z1, z2, level, alpha=0.5, temporal_unit=0, *, backend="auto"):
    """Loss of resolution ``level`` (0 the finest) for ``z1, z2`` of shape (B, T, C), computed alone.

    ``L_level = alpha * instance + (1 - alpha) * temporal`` on ``z`` max-pooled by ``2**level``; the temporal
    term counts only from ``temporal_unit`` on.  Differentiable; the other levels are never computed.
    """
    module = _prepare(z1, z2, alpha, temporal_unit, backend)
    check_level(level, num_levels(z1.shape[1]))
    return module.level_loss(z1, z2, int(level), float(alpha), int(temporal_unit))


def resolution_losses(z1, z2, alpha=0.5, temporal_unit=0, *, backend="auto"):
    """1-D tensor with the loss of every resolution, level 0 the finest; its mean is the hierarchical loss."""
    module = _prepare(z1, z2, alpha, temporal_unit, backend)
    return module.all_level_losses(z1, z2, float(alpha), int(temporal_unit))


def hierarchical_contrastive_loss(z1, z2, alpha=0.5, temporal_unit=0, *, backend="auto"):
    """TS2Vec's hierarchical contrastive loss of ``z1, z2`` (B, T, C): same value and gradient as the original."""
    return resolution_losses(z1, z2, alpha, temporal_unit, backend=backend).mean()
