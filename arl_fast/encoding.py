"""Inference-time encoding with TS2Vec's options: pooling, timestamp masks, sliding (causal) windows.

``encode`` is what :meth:`arl_fast.TS2Vec.encode` runs.  Without ``sliding_length`` the encoder sees each series
whole.  With it, each window ``[t - padding, t + sliding_length + (0 if causal else padding))`` is encoded on its
own, NaN-padded outside the series, and only its middle part ``[padding, padding + sliding_length)`` is kept:
forecasting encodes every timestamp from its 200 past steps this way (``causal=True, sliding_length=1``).

Windows are batched, many per forward pass.  By default the sliding encode is *pruned*: a kept output depends on
few positions of the upper layers (a dilated conv only reaches the taps that fall inside the window), so the
positions each layer needs are found by going down the layers from the kept outputs, and each layer is computed at
those positions alone (the taps gathered, one matmul).  The representations are those of the plain windows up to
float rounding, for a fraction of the work; ``prune=False`` runs the plain windows.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .encoder import ConvBlock, SamePadConv, TSEncoder

MASKS = ("all_true", "all_false", "mask_last")
# Rows (windows x window length) per forward pass of a sliding encode when batch_size is not given.
_SLIDING_ROWS = 1 << 16


def mask_pattern(mask: str | None, length: int) -> torch.Tensor:
    """The timestamps the encoder sees (True) in a window or series of ``length`` steps under ``mask``."""
    keep = torch.full((length,), mask != "all_false", dtype=torch.bool)
    if mask == "mask_last":
        keep[-1] = False
    return keep


def check_mask(mask) -> str:
    if mask is None:
        return "all_true"
    if mask in ("binomial", "continuous"):
        raise ValueError(f"mask={mask!r} is one of TS2Vec's random training masks; encode takes a fixed mask: "
                         f"one of {', '.join(MASKS)}")
    if mask not in MASKS:
        raise ValueError(f"mask must be None or one of {', '.join(MASKS)}, got {mask!r}")
    return mask


def pool(out: torch.Tensor, encoding_window) -> torch.Tensor:
    """Apply TS2Vec's pooling to representations ``out`` (B, T, K); "full_series" is done by the caller."""
    if encoding_window is None or encoding_window == "full_series":
        return out
    length = out.size(1)
    channels_first = out.transpose(1, 2)
    if encoding_window == "multiscale":
        scales, p = [], 0
        while (1 << p) + 1 < length:
            scales.append(F.max_pool1d(channels_first, (1 << (p + 1)) + 1, stride=1, padding=1 << p))
            p += 1
        if not scales:
            raise ValueError(f"encoding_window='multiscale' needs windows or series of at least 3 steps, got {length}")
        return torch.cat(scales, dim=1).transpose(1, 2)
    pooled = F.max_pool1d(channels_first, encoding_window, stride=1, padding=encoding_window // 2)
    return pooled[:, :, :length].transpose(1, 2)


def pool_support(encoding_window, length: int) -> int:
    """How far (in steps, either side) the pooling of one output reaches into the representations."""
    if encoding_window == "multiscale":
        p = 0
        while (1 << (p + 1)) + 1 < length:
            p += 1
        return 1 << p
    if isinstance(encoding_window, int):
        return encoding_window // 2
    return 0


# ---------------------------------------------------------------------------------------------- pruned windows


def _taps(conv: SamePadConv) -> np.ndarray:
    """Offsets of the inputs a "same" dilated conv reads for one output position."""
    layer = conv.conv
    return np.arange(layer.kernel_size[0]) * layer.dilation[0] - layer.padding[0]


def _reach(positions: np.ndarray, taps: np.ndarray, length: int) -> np.ndarray:
    """The positions inside ``[0, length)`` that outputs at ``positions`` read through ``taps``."""
    reached = (positions[:, None] + taps[None, :]).ravel()
    return np.unique(reached[(reached >= 0) & (reached < length)])


class PrunedPlan:
    """Per block, the input, middle (after conv1) and output positions a set of kept outputs needs."""

    def __init__(self, net: TSEncoder, length: int, outputs: np.ndarray, dense_fraction: float = 0.5):
        self.length = length
        self.blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        needed = np.unique(outputs)
        for block in reversed(net.feature_extractor):
            middle = _reach(needed, _taps(block.conv2), length)
            inputs = np.union1d(_reach(middle, _taps(block.conv1), length), needed)
            self.blocks.append((inputs, middle, needed))
            needed = inputs
        self.blocks.reverse()
        # The lowest blocks need most positions: there a plain conv over the whole window beats gathering taps.
        everything = np.arange(length)
        for i, (_, middle, outputs) in enumerate(self.blocks):
            if len(middle) < dense_fraction * length:
                if i > 0:  # the block above the plain ones reads their outputs at every position
                    self.blocks[i] = (everything, middle, outputs)
                break
            self.blocks[i] = (everything, everything, everything)
        self.inputs = self.blocks[0][0]
        self.outputs = self.blocks[-1][2]

    def work(self, net: TSEncoder) -> tuple[int, int]:
        """Multiply-adds per window of the pruned and of the plain computation."""
        projection = net.input_fc.weight.numel()
        pruned, plain = projection * len(self.inputs), projection * self.length
        for block, (_, middle, outputs) in zip(net.feature_extractor, self.blocks):
            conv1, conv2 = block.conv1.conv.weight.numel(), block.conv2.conv.weight.numel()
            residual = 0 if block.projector is None else block.projector.weight.numel()
            pruned += conv1 * len(middle) + (conv2 + residual) * len(outputs)
            plain += (conv1 + conv2 + residual) * self.length
        return pruned, plain


def _full(positions: np.ndarray, length: int) -> bool:
    return len(positions) == length


def _tap_conv(h: torch.Tensor, inputs: np.ndarray, outputs: np.ndarray, conv: SamePadConv, length: int):
    """``conv`` at ``outputs`` from ``h`` (W, len(inputs), C) held at ``inputs``: gather the taps, one matmul."""
    layer = conv.conv
    lookup = np.full(length, len(inputs))  # taps outside the window read the zero row (the conv's zero padding)
    lookup[inputs] = np.arange(len(inputs))
    reached = outputs[:, None] + _taps(conv)[None, :]
    inside = (reached >= 0) & (reached < length)
    index = np.where(inside, lookup[np.clip(reached, 0, length - 1)], len(inputs))
    padded = torch.cat([h, h.new_zeros(h.size(0), 1, h.size(2))], dim=1)
    gathered = padded[:, torch.from_numpy(index).to(h.device)]  # (W, n_out, k, C_in)
    weight = layer.weight.permute(2, 1, 0).reshape(-1, layer.out_channels)  # (k * C_in, C_out), tap-major
    flat = gathered.reshape(-1, weight.size(0))
    return torch.addmm(layer.bias, flat, weight).view(h.size(0), len(outputs), -1)


def _pruned_block(block: ConvBlock, h: torch.Tensor, plan, length: int) -> torch.Tensor:
    inputs, middle, outputs = plan
    if _full(inputs, length) and _full(middle, length) and _full(outputs, length):
        return block(h.transpose(1, 2)).transpose(1, 2)
    middle_values = _tap_conv(F.gelu(h), inputs, middle, block.conv1, length)
    out = _tap_conv(F.gelu(middle_values), middle, outputs, block.conv2, length)
    residual = h[:, torch.from_numpy(np.searchsorted(inputs, outputs)).to(h.device)]
    if block.projector is not None:
        weight = block.projector.weight.squeeze(-1)
        residual = F.linear(residual, weight, block.projector.bias)
    return out + residual


def pruned_forward(net: TSEncoder, windows: torch.Tensor, keep: torch.Tensor, plan: PrunedPlan) -> torch.Tensor:
    """The encoder's outputs (W, len(outputs), K) at the plan's output positions of every window (W, L, C),
    with ``keep`` (L,) the timestamps it sees; the same as ``net(windows, keep)[:, outputs]`` up to rounding."""
    length = plan.length
    x = windows[:, torch.from_numpy(plan.inputs).to(windows.device)]
    observed = ~x.isnan().any(dim=-1)
    h = net.input_fc(x.masked_fill(~observed.unsqueeze(-1), 0.0))
    seen = observed & keep[torch.from_numpy(plan.inputs).to(keep.device)]
    h = h.masked_fill(~seen.unsqueeze(-1), 0.0)
    for block, block_plan in zip(net.feature_extractor, plan.blocks):
        h = _pruned_block(block, h, block_plan, length)
    return h


# ---------------------------------------------------------------------------------------------- the encode


def _series_batches(net, x, encoding_window, mask, batch_size, device):
    keep = mask_pattern(mask, x.shape[1]).to(device)
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)).to(device)
        out = net(batch, keep.expand(batch.size(0), -1))
        if encoding_window == "full_series":
            yield out.amax(dim=1).cpu()
        else:
            yield pool(out, encoding_window).cpu()


def _sliding(net, x, encoding_window, mask, batch_size, device, causal, sliding_length, padding, prune, progress):
    n, length, channels = x.shape
    window = padding + sliding_length + (0 if causal else padding)
    n_windows = -(-length // sliding_length)
    right = (n_windows - 1) * sliding_length + window - padding - length
    series = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    padded = F.pad(series.transpose(1, 2), (padding, right), value=float("nan")).transpose(1, 2)
    windows = padded.unfold(1, window, sliding_length).permute(0, 1, 3, 2).reshape(n * n_windows, window, channels)
    kept = np.arange(padding, padding + sliding_length)
    keep = mask_pattern(mask, window).to(device)
    reach = pool_support(encoding_window, window)
    needed = np.unique(np.clip((kept[:, None] + np.arange(-reach, reach + 1)[None, :]).ravel(), 0, window - 1))
    plan = PrunedPlan(net, window, needed) if prune else None
    if batch_size is None:
        batch_size = max(1, _SLIDING_ROWS // window)
    outputs = []
    starts = range(0, len(windows), batch_size)
    for start in tqdm(starts, desc="encode", unit="batch", disable=not progress or len(starts) < 2, leave=False):
        batch = windows[start : start + batch_size].to(device)
        if plan is None:
            out = net(batch, keep.expand(batch.size(0), -1))
        else:
            computed = pruned_forward(net, batch, keep, plan)
            if _full(plan.outputs, window):
                out = computed
            else:  # scatter into the window; what is not computed is outside every kept output's pooling
                out = computed.new_full((batch.size(0), window, computed.size(2)), float("-inf"))
                out[:, torch.from_numpy(plan.outputs).to(device)] = computed
        outputs.append(pool(out, encoding_window)[:, padding : padding + sliding_length].cpu())
    out = torch.cat(outputs).reshape(n, n_windows * sliding_length, -1)[:, :length]
    return [out.amax(dim=1)] if encoding_window == "full_series" else [out]


@torch.no_grad()
def encode(net: TSEncoder, x: np.ndarray, encoding_window=None, *, causal=False, sliding_length=None,
           sliding_padding=0, mask=None, batch_size=None, device="cpu", prune=True, progress=False) -> np.ndarray:
    """Representations of series ``x`` (n, T, C) by ``net`` in eval mode (arguments checked by the caller).

    Without ``sliding_length``, ``batch_size`` counts series per forward pass; with it, windows."""
    if sliding_length is None:
        parts = _series_batches(net, x, encoding_window, mask, batch_size, device)
    else:
        parts = _sliding(net, x, encoding_window, mask, batch_size, device, causal, sliding_length,
                         sliding_padding, prune, progress)
    return torch.cat(list(parts)).numpy()
