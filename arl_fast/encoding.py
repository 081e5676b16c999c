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

``encode_pair`` is the sliding encode under two masks, as the anomaly score needs (each window's last step
masked, and seen).  The two passes read the same windows and differ only where the masks do, so pruned, every
activation out of that difference's reach is computed once for both and only what it reaches twice (for the
score's 201-step causal windows, under a tenth of one pass's work).
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


def multiscale_count(length: int) -> int:
    """How many windows ``"multiscale"`` pools a length-``length`` series with: window ``p`` (p = 0, 1, ...) spans
    ``2**(p + 1) + 1`` steps (``2**p`` either side) and is taken while ``2**p + 1 < length``."""
    count = 0
    while (1 << count) + 1 < length:
        count += 1
    return count


def pool(out: torch.Tensor, encoding_window) -> torch.Tensor:
    """Apply TS2Vec's pooling to representations ``out`` (B, T, K); "full_series" is done by the caller."""
    if encoding_window is None or encoding_window == "full_series":
        return out
    length = out.size(1)
    channels_first = out.transpose(1, 2)
    if encoding_window == "multiscale":
        scales = [F.max_pool1d(channels_first, (1 << (p + 1)) + 1, stride=1, padding=1 << p)
                  for p in range(multiscale_count(length))]
        if not scales:
            raise ValueError(f"encoding_window='multiscale' needs windows or series of at least 3 steps, got {length}")
        return torch.cat(scales, dim=1).transpose(1, 2)
    pooled = F.max_pool1d(channels_first, encoding_window, stride=1, padding=encoding_window // 2)
    return pooled[:, :, :length].transpose(1, 2)


def pool_support(encoding_window, length: int) -> int:
    """How far (in steps, either side) the pooling of one output reaches into the representations."""
    if encoding_window == "multiscale":
        return 1 << max(multiscale_count(length) - 1, 0)
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


    def differing(self, net: TSEncoder, changed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Where two passes whose inputs differ at window positions ``changed`` (e.g. two masks) differ.

        Per block: its input positions that differ, the middle positions its differing outputs read, and its
        output positions that differ (among the plan's).  Everything else is the same in both passes."""
        differ = np.intersect1d(changed, self.inputs)
        everywhere = np.arange(self.length)
        out = []
        for block, (_, _, outputs) in zip(net.feature_extractor, self.blocks):
            middle = everywhere[_reads(everywhere, _taps(block.conv1), differ)]
            # an output differs where its conv2 taps read a differing middle, or its residual a differing input
            reached = outputs[_reads(outputs, _taps(block.conv2), middle) | np.isin(outputs, differ)]
            out.append((differ, _reach(reached, _taps(block.conv2), self.length), reached))
            differ = reached
        return out

    def pair_work(self, net: TSEncoder, changed: np.ndarray) -> int:
        """Multiply-adds per window of the second pass of :func:`pruned_forward_pair` (the first is ``work``)."""
        work = net.input_fc.weight.numel() * len(np.intersect1d(changed, self.inputs))
        for block, (_, middle, outputs) in zip(net.feature_extractor, self.differing(net, changed)):
            residual = 0 if block.projector is None else block.projector.weight.numel()
            work += block.conv1.conv.weight.numel() * len(middle)
            work += (block.conv2.conv.weight.numel() + residual) * len(outputs)
        return work


def _reads(positions: np.ndarray, taps: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Which of ``positions`` read one of ``targets`` through ``taps`` (bool per position)."""
    return np.isin(positions[:, None] + taps[None, :], targets).any(axis=1)


def _full(positions: np.ndarray, length: int) -> bool:
    return len(positions) == length


def _tap_index(lookup: np.ndarray, outputs: np.ndarray, conv: SamePadConv, length: int, zero_row: int):
    """(len(outputs), k) rows of a source tensor that ``conv``'s taps read for ``outputs``: ``lookup`` maps a
    window position to its row; taps outside the window read ``zero_row`` (the conv's zero padding)."""
    reached = outputs[:, None] + _taps(conv)[None, :]
    inside = (reached >= 0) & (reached < length)
    return np.where(inside, lookup[np.clip(reached, 0, length - 1)], zero_row)


def _gather_conv(source: torch.Tensor, index: np.ndarray, conv: SamePadConv, gelu: bool = False) -> torch.Tensor:
    """``conv`` at the outputs whose taps read rows ``index`` (n_out, k) of ``source`` (W, n, C_in), a zero row
    appended to ``source`` first, GELU applied to the taps read when ``gelu``: the taps gathered, one matmul."""
    layer = conv.conv
    padded = torch.cat([source, source.new_zeros(source.size(0), 1, source.size(2))], dim=1)
    gathered = padded[:, torch.from_numpy(index).to(source.device)]  # (W, n_out, k, C_in)
    if gelu:
        gathered = F.gelu(gathered)
    weight = layer.weight.permute(2, 1, 0).reshape(-1, layer.out_channels)  # (k * C_in, C_out), tap-major
    flat = gathered.reshape(-1, weight.size(0))
    return torch.addmm(layer.bias, flat, weight).view(source.size(0), len(index), layer.out_channels)


def _lookup(positions: np.ndarray, length: int) -> np.ndarray:
    """Row of each window position in a tensor held at ``positions``; the zero row (``len(positions)``) elsewhere."""
    lookup = np.full(length, len(positions))
    lookup[positions] = np.arange(len(positions))
    return lookup


def _tap_conv(h: torch.Tensor, inputs: np.ndarray, outputs: np.ndarray, conv: SamePadConv, length: int):
    """``conv`` at ``outputs`` from ``h`` (W, len(inputs), C) held at ``inputs``."""
    return _gather_conv(h, _tap_index(_lookup(inputs, length), outputs, conv, length, len(inputs)), conv)


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


def _project(net: TSEncoder, windows: torch.Tensor, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The input projection at ``positions`` of every window (missing steps projected from 0), and which of
    those steps are observed (no NaN)."""
    x = windows[:, torch.from_numpy(positions).to(windows.device)]
    observed = ~x.isnan().any(dim=-1)
    return net.input_fc(x.masked_fill(~observed.unsqueeze(-1), 0.0)), observed


def _masked(h: torch.Tensor, observed: torch.Tensor, keep: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    """``h`` zeroed where a step is missing or ``keep`` (L,) hides it (TS2Vec's masking in the hidden space)."""
    seen = observed & keep[torch.from_numpy(positions).to(keep.device)]
    return h.masked_fill(~seen.unsqueeze(-1), 0.0)


def pruned_forward(net: TSEncoder, windows: torch.Tensor, keep: torch.Tensor, plan: PrunedPlan) -> torch.Tensor:
    """The encoder's outputs (W, len(outputs), K) at the plan's output positions of every window (W, L, C),
    with ``keep`` (L,) the timestamps it sees; the same as ``net(windows, keep)[:, outputs]`` up to rounding."""
    h, observed = _project(net, windows, plan.inputs)
    h = _masked(h, observed, keep, plan.inputs)
    for block, block_plan in zip(net.feature_extractor, plan.blocks):
        h = _pruned_block(block, h, block_plan, plan.length)
    return h


def _differing_block(block: ConvBlock, h: torch.Tensor, other: torch.Tensor, plan, differing, length: int):
    """The second pass's block outputs where they differ from the first's: its inputs are ``other`` at the
    differing input positions and the first pass's ``h`` everywhere else."""
    differ, middle, outputs = differing
    read = np.setdiff1d(np.union1d(_reach(middle, _taps(block.conv1), length), outputs), differ)
    rows = len(read) + len(differ)  # the zero row of the source: the first pass's inputs it reads, then other
    lookup = np.full(length, rows)
    lookup[read] = np.arange(len(read))
    lookup[differ] = len(read) + np.arange(len(differ))
    source = torch.cat([h[:, torch.from_numpy(np.searchsorted(plan[0], read)).to(h.device)], other], dim=1)
    middle_values = _gather_conv(source, _tap_index(lookup, middle, block.conv1, length, rows), block.conv1, True)
    middle_index = _tap_index(_lookup(middle, length), outputs, block.conv2, length, len(middle))
    out = _gather_conv(middle_values, middle_index, block.conv2, True)
    residual = source[:, torch.from_numpy(lookup[outputs]).to(h.device)]
    if block.projector is not None:
        residual = F.linear(residual, block.projector.weight.squeeze(-1), block.projector.bias)
    return out + residual


def pruned_forward_pair(net: TSEncoder, windows: torch.Tensor, keeps: tuple[torch.Tensor, torch.Tensor],
                        plan: PrunedPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pruned_forward` under two keep patterns at once, e.g. the anomaly score's last step masked and
    seen: every activation the two patterns' difference does not reach is computed once, for both; only
    what it reaches is computed a second time.  The first output is exactly ``pruned_forward``'s."""
    keep, other_keep = keeps
    changed = np.flatnonzero((keep != other_keep).cpu().numpy())
    differing = plan.differing(net, changed)
    h, observed = _project(net, windows, plan.inputs)
    differ = differing[0][0]
    rows = np.searchsorted(plan.inputs, differ)
    index = torch.from_numpy(rows).to(windows.device)
    other = _masked(h[:, index], observed[:, index], other_keep, differ)
    h = _masked(h, observed, keep, plan.inputs)
    for block, block_plan, block_differing in zip(net.feature_extractor, plan.blocks, differing):
        if len(block_differing[2]):  # once the difference reaches no output of a block, it reaches none above
            other = _differing_block(block, h, other, block_plan, block_differing, plan.length)
        h = _pruned_block(block, h, block_plan, plan.length)
    reached = differing[-1][2]
    if not len(reached):
        return h, h
    rows = torch.from_numpy(np.searchsorted(plan.outputs, reached)).to(windows.device)
    return h, h.index_copy(1, rows, other)


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


def _sliding(net, x, encoding_window, masks, batch_size, device, causal, sliding_length, padding, prune, progress):
    """The sliding encode of ``x`` under each of ``masks`` (one or two), one representation array each; two
    pruned masks share what their difference does not reach (:func:`pruned_forward_pair`)."""
    n, length, channels = x.shape
    window = padding + sliding_length + (0 if causal else padding)
    n_windows = -(-length // sliding_length)
    right = (n_windows - 1) * sliding_length + window - padding - length
    series = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    padded = F.pad(series.transpose(1, 2), (padding, right), value=float("nan")).transpose(1, 2)
    windows = padded.unfold(1, window, sliding_length).permute(0, 1, 3, 2).reshape(n * n_windows, window, channels)
    kept = np.arange(padding, padding + sliding_length)
    keeps = [mask_pattern(mask, window).to(device) for mask in masks]
    reach = pool_support(encoding_window, window)
    needed = np.unique(np.clip((kept[:, None] + np.arange(-reach, reach + 1)[None, :]).ravel(), 0, window - 1))
    plan = PrunedPlan(net, window, needed) if prune else None
    if batch_size is None:
        batch_size = max(1, _SLIDING_ROWS // window)
    outputs = [[] for _ in masks]
    starts = range(0, len(windows), batch_size)
    for start in tqdm(starts, desc="encode", unit="batch", disable=not progress or len(starts) < 2, leave=False):
        batch = windows[start : start + batch_size].to(device)
        if plan is None:
            outs = [net(batch, keep.expand(batch.size(0), -1)) for keep in keeps]
        elif len(keeps) == 2:
            outs = pruned_forward_pair(net, batch, tuple(keeps), plan)
        else:
            outs = [pruned_forward(net, batch, keep, plan) for keep in keeps]
        for kept_outputs, out in zip(outputs, outs):
            kept_outputs.append(_kept(out, plan, encoding_window, kept).cpu())
    results = []
    for kept_outputs in outputs:
        out = torch.cat(kept_outputs).reshape(n, n_windows * sliding_length, -1)[:, :length]
        results.append(out.amax(dim=1) if encoding_window == "full_series" else out)
    return results


def _kept(out: torch.Tensor, plan: PrunedPlan | None, encoding_window, kept: np.ndarray) -> torch.Tensor:
    """The kept outputs of windows' representations, pooled first: ``out`` holds every window position
    (``plan`` None) or the pruned plan's output positions.  Without pooling the kept rows are read off; with it,
    the pruned outputs are scattered into their windows at -inf (a position not computed lies outside every
    kept output's pooling)."""
    if plan is None:
        return pool(out, encoding_window)[:, kept]
    if encoding_window is None:
        return out[:, torch.from_numpy(np.searchsorted(plan.outputs, kept)).to(out.device)]
    if not _full(plan.outputs, plan.length):
        computed = out
        out = computed.new_full((computed.size(0), plan.length, computed.size(2)), float("-inf"))
        out[:, torch.from_numpy(plan.outputs).to(out.device)] = computed
    return pool(out, encoding_window)[:, kept]


@torch.no_grad()
def encode(net: TSEncoder, x: np.ndarray, encoding_window=None, *, causal=False, sliding_length=None,
           sliding_padding=0, mask=None, batch_size=None, device="cpu", prune=True, progress=False) -> np.ndarray:
    """Representations of series ``x`` (n, T, C) by ``net`` in eval mode (arguments checked by the caller).

    Without ``sliding_length``, ``batch_size`` counts series per forward pass; with it, windows."""
    if sliding_length is None:
        return torch.cat(list(_series_batches(net, x, encoding_window, mask, batch_size, device))).numpy()
    return _sliding(net, x, encoding_window, (mask,), batch_size, device, causal, sliding_length, sliding_padding,
                    prune, progress)[0].numpy()


@torch.no_grad()
def encode_pair(net: TSEncoder, x: np.ndarray, encoding_window=None, *, masks=("mask_last", "all_true"),
                causal=False, sliding_length: int, sliding_padding=0, batch_size=None, device="cpu", prune=True,
                progress=False) -> tuple[np.ndarray, np.ndarray]:
    """The sliding encode of ``x`` under two masks, e.g. the anomaly score's last step masked and seen: the same
    as two calls of :func:`encode`, but pruned the two passes compute once every activation they share (all
    that the masks' difference does not reach).  ``masks`` are checked here, the other arguments by the caller."""
    if not isinstance(masks, (tuple, list)) or len(masks) != 2:
        raise ValueError(f"masks must be a pair of masks, got {masks!r}")
    masks = tuple(check_mask(mask) for mask in masks)
    first, second = _sliding(net, x, encoding_window, masks, batch_size, device, causal, sliding_length,
                             sliding_padding, prune, progress)
    return first.numpy(), second.numpy()
