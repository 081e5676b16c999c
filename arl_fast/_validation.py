"""Input checks shared by every loss entry point, so bad input fails loudly and early."""

import numbers

import torch


def check_pair(z1, z2):
    """Check that ``z1`` and ``z2`` are matching ``(B, T, C)`` floating-point tensors."""
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, T, C), got {type(z).__name__}")
        if z.dim() != 3:
            raise ValueError(f"{name} must be 3-D (B, T, C), got shape {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"{name} must have a floating-point dtype, got {z.dtype}")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.device != z2.device:
        raise ValueError(f"z1 and z2 must be on the same device, got {z1.device} and {z2.device}")
    if z1.dtype != z2.dtype:
        raise TypeError(f"z1 and z2 must have the same dtype, got {z1.dtype} and {z2.dtype}")
    for axis, size in zip("BTC", z1.shape):
        if size == 0:
            raise ValueError(f"z1 and z2 must be non-empty, got {axis} == 0 in shape {tuple(z1.shape)}")


def check_alpha(alpha):
    """Check that ``alpha`` is a real number in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number in [0, 1], got {alpha!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def check_temporal_unit(temporal_unit):
    """Check that ``temporal_unit`` is a non-negative integer."""
    if isinstance(temporal_unit, bool) or not isinstance(temporal_unit, numbers.Integral):
        raise TypeError(f"temporal_unit must be a non-negative int, got {temporal_unit!r}")
    if temporal_unit < 0:
        raise ValueError(f"temporal_unit must be >= 0, got {temporal_unit}")


def check_level(level, n_levels):
    """Check that ``level`` indexes one of the ``n_levels`` levels."""
    if isinstance(level, bool) or not isinstance(level, numbers.Integral):
        raise TypeError(f"level must be an int, got {level!r}")
    if not 0 <= level < n_levels:
        raise ValueError(f"level must be in [0, {n_levels - 1}] for this sequence length, got {level}")
