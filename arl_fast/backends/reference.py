"""Pure-PyTorch reference of TS2Vec's hierarchical contrastive loss: the spec every backend is held to.

Each InfoNCE term scores ``2n`` rows (two views of ``n`` items) against each other; row ``i``'s positive is
row ``i + n`` and vice versa, its negatives every other row.  The loss of a row is
``logsumexp(off-diagonal similarities) - positive`` and the term is the mean over rows and groups.
Half-precision inputs are computed in float32.
"""

import torch
import torch.nn.functional as F


def _compute_dtype(z):
    return torch.float32 if z.dtype in (torch.float16, torch.bfloat16) else z.dtype


def pool(z, level):
    """Max-pool ``z`` (B, T, C) along time with window and stride ``2**level`` (floor, as ``max_pool1d``)."""
    if level == 0:
        return z
    window = 2**level
    return F.max_pool1d(z.transpose(1, 2), kernel_size=window, stride=window).transpose(1, 2)


def _info_nce(z):
    """Mean InfoNCE over groups ``z`` (G, 2n, C) whose rows ``i`` and ``i + n`` are positives."""
    n = z.shape[1] // 2
    sim = torch.matmul(z, z.transpose(1, 2))
    diagonal = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    log_normaliser = torch.logsumexp(sim.masked_fill(diagonal, float("-inf")), dim=-1)
    positive = (z[:, :n] * z[:, n:]).sum(-1)
    return log_normaliser.mean() - positive.mean()


def _zero(z1, z2):
    """A zero that stays connected to the graph, so backward gives zero gradients instead of an error."""
    return z1[:, :0].sum() + z2[:, :0].sum()


def instance_contrastive(z1, z2):
    """Instance-wise InfoNCE: at each timestamp, each series against the other ``2B - 1``; 0 when ``B == 1``."""
    if z1.shape[0] == 1:
        return _zero(z1, z2)
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)
    return _info_nce(z.to(_compute_dtype(z)))


def temporal_contrastive(z1, z2):
    """Temporal-wise InfoNCE: in each series, each timestamp against the other ``2T - 1``; 0 when ``T == 1``."""
    if z1.shape[1] == 1:
        return _zero(z1, z2)
    z = torch.cat([z1, z2], dim=1)
    return _info_nce(z.to(_compute_dtype(z)))


def _pooled_level_loss(p1, p2, level, alpha, temporal_unit):
    loss = _zero(p1, p2).to(_compute_dtype(p1))
    if alpha != 0:
        loss = loss + alpha * instance_contrastive(p1, p2)
    if alpha != 1 and level >= temporal_unit:
        loss = loss + (1 - alpha) * temporal_contrastive(p1, p2)
    return loss


def level_loss(z1, z2, level, alpha, temporal_unit):
    """Loss of one level, pooled straight from ``z1, z2`` without computing the finer levels."""
    return _pooled_level_loss(pool(z1, level), pool(z2, level), level, alpha, temporal_unit)


def all_level_losses(z1, z2, alpha, temporal_unit):
    """1-D tensor of every level's loss, level 0 the finest, pooling each level from the previous one."""
    losses = []
    level = 0
    while True:
        losses.append(_pooled_level_loss(z1, z2, level, alpha, temporal_unit))
        if z1.shape[1] == 1:
            return torch.stack(losses)
        z1, z2 = pool(z1, 1), pool(z2, 1)
        level += 1


def is_available(device):
    """The reference runs wherever PyTorch does."""
    return True


def unavailable_reason(device):
    return ""
