"""Fused Triton backend: the loss of one or all resolutions straight from ``z1, z2`` in O(B*T*C) memory.

Both InfoNCE terms are one computation on different axes: ``2n`` rows (two views of ``n`` items) per group,
scored against each other.  The temporal term has groups = series and rows = pooled timestamps; the instance
term has groups = pooled timestamps and rows = series.  One kernel serves both, told which by a compile-time
flag.  The two views are addressed from ``z1`` with the element distance to ``z2`` as one more stride, so a
tile may hold rows of both.

Pooling: levels 0-3 max-pool every tile they load straight from ``z1, z2`` (windows 1-8); level 4 is
materialised (1/16 of the inputs) and levels 4-7 pool from it on the fly, and so on.  The materialised levels
cost ~7% of the inputs' memory and keep pooling windows short: a window is walked step by step, and 2**level
steps at a coarse level would make the kernel wait on thousands of loads one after the other.

Forward: per block of rows, similarity tiles ``S = Z_I Z_J^T`` (``tl.dot``, C in chunks), an online
log-sum-exp with the diagonal masked inside the tile, the positive read from its tile.  It saves each row's
maximum ``m`` and log-sum ``log l`` apart and never writes ``S``.  Apart, a saturated row keeps its precision:
its logits reach the thousands (raw dot products), where one float32 ``lse = m + log l`` has an ulp of ~1e-4,
larger than the row's loss ``(m - positive) + log l`` and than its softmax's distance from one-hot.  Backward
recomputes each tile, takes ``p = exp((S - m) - log l)`` and, as ``S`` is symmetric, both softmax directions
from it: ``dZ_I = sum_J (softmax_I(S_IJ) + softmax_J(S_JI)^T - 2 * onehot) Z_J`` times the
row weight.  That is the gradient of the pooled level; ``_unpool_kernel`` adds it at the positions
``max_pool1d`` picked (the first maximum of each window), level by level down to ``z1, z2``.

The forward runs two launches per term and materialised level (the level itself, the levels pooled from it).
The backward runs a few launches per level, in order, so that additions into the gradient never race and the
result is deterministic.  On CPU tensors the kernels run in Triton's interpreter when ``TRITON_INTERPRET=1``
was set before this module was imported.
"""

import contextlib
from typing import NamedTuple

import torch

try:
    import triton
    import triton.language as tl
except ImportError as error:  # Triton ships for Linux only
    triton, _IMPORT_ERROR = None, error

_TEMPORAL, _INSTANCE = 0, 1
_BASE_EVERY = 4  # every 4th level is materialised; the 3 above it pool from it on the fly

if triton is not None:
    # The interpreter re-patches triton.language on every call of a jitted device function (about 0.3 ms each),
    # which dominated the tests' time; there the helpers below run as plain Python, with the same semantics.
    _device_function = (lambda fn: fn) if triton.knobs.runtime.interpret else triton.jit

    @_device_function
    def _sizes(level, T, B, TEMPORAL: tl.constexpr):
        """(rows per view, groups) of one term at ``level``."""
        if TEMPORAL:
            return T >> level, B
        return B, T >> level

    @_device_function
    def _strides(s_b, s_t, TEMPORAL: tl.constexpr):
        """(stride between rows, stride between groups), given the stride of one (pooled) time step."""
        if TEMPORAL:
            return s_t, s_b
        return s_b, s_t

    @_device_function
    def _program_count(level, T, B, BLOCK_M: tl.constexpr, TEMPORAL: tl.constexpr):
        n, groups = _sizes(level, T, B, TEMPORAL)
        return groups * tl.cdiv(2 * n, BLOCK_M)

    @_device_function
    def _row_offsets(rows, n, group, s_v, s_row, s_group):
        """Element offsets from ``z`` of each row's first element: rows < n in view 1, the rest in view 2."""
        second = rows >= n
        i = tl.where(second, rows - n, rows).to(tl.int64)
        return second.to(tl.int64) * s_v + i * s_row + group.to(tl.int64) * s_group

    @_device_function
    def _row_block(pid, level, base, T, B, s_v, s_b, s_t, BLOCK_M: tl.constexpr, TEMPORAL: tl.constexpr):
        """The block of rows program ``pid`` owns at ``level`` (pooled on the fly from level ``base``).

        Returns (rows per view, groups, its group, row indices, row mask, each row's positive partner,
        row offsets, row and group strides, pooling window).
        """
        n, groups = _sizes(level, T, B, TEMPORAL)
        s_row, s_group = _strides(s_b, s_t << (level - base), TEMPORAL)
        tiles = tl.cdiv(2 * n, BLOCK_M)
        group = pid // tiles
        rows = (pid % tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < 2 * n
        partner = tl.where(rows < n, rows + n, rows - n)
        row_off = _row_offsets(rows, n, group, s_v, s_row, s_group)
        return n, groups, group, rows, row_ok, partner, row_off, s_row, s_group, 1 << (level - base)

    @_device_function
    def _load_pooled(z, row_off, row_ok, cols, C, s_c, s_t, window, DOT: tl.constexpr, POOL: tl.constexpr):
        """Tile ``[rows, cols]`` of ``z`` max-pooled over ``window`` time steps (if POOL), zero outside the data.

        Without POOL (``window`` is 1) the load is a plain one, which Triton can pipeline.
        """
        ptrs = z + row_off[:, None] + cols[None, :] * s_c
        mask = row_ok[:, None] & (cols < C)[None, :]
        x = tl.load(ptrs, mask=mask, other=0.0).to(DOT)
        if POOL:
            for w in range(1, window):
                x = tl.maximum(x, tl.load(ptrs + w * s_t, mask=mask, other=0.0).to(DOT))
        return x

    @_device_function
    def _similarity(z, row_off, row_ok, col_off, col_ok, C, s_c, s_t, window,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                    DOT: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr, POOL: tl.constexpr):
        """``S = Z_rows Z_cols^T`` for pooled rows, accumulated over C in chunks of ``BLOCK_K``."""
        s = tl.zeros([BLOCK_M, BLOCK_N], ACC)
        for c0 in range(0, C, BLOCK_K):
            cols = c0 + tl.arange(0, BLOCK_K)
            a = _load_pooled(z, row_off, row_ok, cols, C, s_c, s_t, window, DOT, POOL)
            b = _load_pooled(z, col_off, col_ok, cols, C, s_c, s_t, window, DOT, POOL)
            s = tl.dot(a, tl.trans(b), s, input_precision=PRECISION)
        return s

    @triton.jit(do_not_specialize=["T", "B", "base", "first_level", "lse_start", "lse_plane", "sums_first_row",
                                   "sums_row_stride"])
    def _forward_kernel(z, s_v, s_b, s_t, s_c, base, lse_ptr, lse_plane, sums_ptr, T, B, C, first_level, lse_start,
                        sums_first_row, sums_row_stride, TEMPORAL: tl.constexpr, DOT: tl.constexpr,
                        ACC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr, POOL: tl.constexpr):
        """Per-row log-sum-exp of one term at every level from ``first_level`` on, and each program's loss share.

        Row ``r``'s maximum goes to ``lse_ptr[r]``, its ``log l`` (sum of ``exp(S - m)``) to ``lse_ptr[lse_plane + r]``.

        ``z`` (strides ``s_*``, views ``s_v`` apart) holds level ``base``; level ``k`` pools it by
        ``2**(k - base)`` (POOL: the launch's levels are above ``base``).  Programs are numbered level by
        level; each handles ``BLOCK_M`` rows of one group and writes ``sum((m - positive) + log l) / rows_of_the_level``
        over its rows to ``sums[level, program]``.
        """
        pid = tl.program_id(0)
        level = first_level
        lse_offset = lse_start
        while pid >= _program_count(level, T, B, BLOCK_M, TEMPORAL):
            pid -= _program_count(level, T, B, BLOCK_M, TEMPORAL)
            lse_offset += 2 * B * (T >> level)
            level += 1
        n, groups, group, rows, row_ok, partner, row_off, s_row, s_group, window = _row_block(
            pid, level, base, T, B, s_v, s_b, s_t, BLOCK_M, TEMPORAL)

        m_i = tl.full([BLOCK_M], float("-inf"), ACC)
        l_i = tl.zeros([BLOCK_M], ACC)
        positive = tl.zeros([BLOCK_M], ACC)
        for start in range(0, 2 * n, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            col_ok = cols < 2 * n
            col_off = _row_offsets(cols, n, group, s_v, s_row, s_group)
            s = _similarity(z, row_off, row_ok, col_off, col_ok, C, s_c, s_t, window,
                            BLOCK_M, BLOCK_N, BLOCK_K, DOT, ACC, PRECISION, POOL)
            positive += tl.sum(tl.where(cols[None, :] == partner[:, None], s, 0.0), axis=1)
            s = tl.where(col_ok[None, :] & (cols[None, :] != rows[:, None]), s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(s - m_new[:, None]), axis=1)
            m_i = m_new
        log_l = tl.log(l_i)
        row_ptrs = lse_ptr + lse_offset + group * 2 * n + rows
        tl.store(row_ptrs, m_i, mask=row_ok)
        tl.store(row_ptrs + lse_plane, log_l, mask=row_ok)
        # (m - positive) is exact where the positive is the maximum; adding m + log l first would round log l away
        share = tl.sum(tl.where(row_ok, (m_i - positive) + log_l, 0.0)) / (2 * n * groups).to(ACC)
        tl.store(sums_ptr + (sums_first_row + level - first_level) * sums_row_stride + pid, share)

    @_device_function
    def _write_rows(out, out_off, row_ok, cols, C, values, ACCUMULATE: tl.constexpr):
        ptrs = out + out_off[:, None] + cols[None, :]
        mask = row_ok[:, None] & (cols < C)[None, :]
        if ACCUMULATE:
            values += tl.load(ptrs, mask=mask, other=0.0)
        tl.store(ptrs, values, mask=mask)

    @triton.jit(do_not_specialize=["T", "B", "base", "level", "lse_offset", "lse_plane", "grad_index"])
    def _backward_kernel(z, s_v, s_b, s_t, s_c, base, out, o_v, o_b, o_t, lse_ptr, lse_plane, grad_ptr, T, B, C, level,
                         lse_offset, grad_index, TEMPORAL: tl.constexpr, ACCUMULATE: tl.constexpr, DOT: tl.constexpr,
                         ACC: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PANEL_A: tl.constexpr,
                         PANEL_B: tl.constexpr, POOL: tl.constexpr):
        """Gradient of one term with respect to the pooled level, written (or added) to ``out``.

        ``z`` holds level ``base`` and ``lse_ptr`` the rows' maxima and log-sums as in the forward kernel; ``out``
        is laid out like the pooled level, C contiguous.  Program (rows block, panel) accumulates ``dZ``
        for its rows over the channels ``[panel * (PANEL_A + PANEL_B), ...)`` in two power-of-two pieces, so
        C = 320 needs no padding to 512.
        """
        pid = tl.program_id(0)
        first_col = tl.program_id(1) * (PANEL_A + PANEL_B)
        n, groups, group, rows, row_ok, partner, row_off, s_row, s_group, window = _row_block(
            pid, level, base, T, B, s_v, s_b, s_t, BLOCK_M, TEMPORAL)
        lse_base = lse_ptr + lse_offset + group * 2 * n
        m_rows = tl.load(lse_base + rows, mask=row_ok, other=0.0)
        log_l_rows = tl.load(lse_base + lse_plane + rows, mask=row_ok, other=0.0)
        cols_a = first_col + tl.arange(0, PANEL_A)
        acc_a = tl.zeros([BLOCK_M, PANEL_A], ACC)
        if PANEL_B > 0:
            cols_b = first_col + PANEL_A + tl.arange(0, PANEL_B)
            acc_b = tl.zeros([BLOCK_M, PANEL_B], ACC)
        for start in range(0, 2 * n, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            col_ok = cols < 2 * n
            col_off = _row_offsets(cols, n, group, s_v, s_row, s_group)
            m_cols = tl.load(lse_base + cols, mask=col_ok, other=0.0)
            log_l_cols = tl.load(lse_base + lse_plane + cols, mask=col_ok, other=0.0)
            s = _similarity(z, row_off, row_ok, col_off, col_ok, C, s_c, s_t, window,
                            BLOCK_M, BLOCK_N, BLOCK_K, DOT, ACC, PRECISION, POOL)
            keep = row_ok[:, None] & col_ok[None, :] & (cols[None, :] != rows[:, None])
            s = tl.where(keep, s, float("-inf"))
            p_rows = tl.exp((s - m_rows[:, None]) - log_l_rows[:, None])
            p_cols = tl.exp((s - m_cols[None, :]) - log_l_cols[None, :])
            g = (p_rows + p_cols - tl.where(cols[None, :] == partner[:, None], 2.0, 0.0)).to(DOT)
            z_a = _load_pooled(z, col_off, col_ok, cols_a, C, s_c, s_t, window, DOT, POOL)
            acc_a = tl.dot(g, z_a, acc_a, input_precision=PRECISION)
            if PANEL_B > 0:
                z_b = _load_pooled(z, col_off, col_ok, cols_b, C, s_c, s_t, window, DOT, POOL)
                acc_b = tl.dot(g, z_b, acc_b, input_precision=PRECISION)
        weight = tl.load(grad_ptr + grad_index).to(ACC) / (2 * n * groups).to(ACC)
        o_row, o_group = _strides(o_b, o_t, TEMPORAL)
        out_off = _row_offsets(rows, n, group, o_v, o_row, o_group)
        _write_rows(out, out_off, row_ok, cols_a, C, acc_a * weight, ACCUMULATE)
        if PANEL_B > 0:
            _write_rows(out, out_off, row_ok, cols_b, C, acc_b * weight, ACCUMULATE)

    @_device_function
    def _windows(z, s_v, s_b, s_t, s_c, length, B, C, shift, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """This program's block of pooled elements: their flat row (view, series, step), channels, mask, and
        pointers to the first element of each pooling window in ``z``."""
        pooled_length = length >> shift
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        view = rows // (B * pooled_length)
        b = rows // pooled_length % B
        t = (rows % pooled_length).to(tl.int64) << shift
        mask = (rows < 2 * B * pooled_length)[:, None] & (cols < C)[None, :]
        offsets = view.to(tl.int64) * s_v + b.to(tl.int64) * s_b + t * s_t
        return rows, cols, mask, z + offsets[:, None] + cols[None, :] * s_c, view, b, t

    @triton.jit(do_not_specialize=["length", "B", "shift"])
    def _pool_kernel(z, s_v, s_b, s_t, s_c, pooled, length, B, C, shift, ACC: tl.constexpr,
                     BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """``pooled`` (2, B, length >> shift, C), contiguous: ``z`` (both views, ``length`` steps) max-pooled."""
        rows, cols, mask, src, _, _, _ = _windows(z, s_v, s_b, s_t, s_c, length, B, C, shift, BLOCK_R, BLOCK_C)
        best = tl.load(src, mask=mask, other=0.0).to(ACC)
        for w in range(1, 1 << shift):
            best = tl.maximum(best, tl.load(src + w * s_t, mask=mask, other=0.0).to(ACC))
        tl.store(pooled + rows.to(tl.int64)[:, None] * C + cols[None, :], best.to(pooled.dtype.element_ty), mask=mask)

    @triton.jit(do_not_specialize=["length", "B", "shift"])
    def _unpool_kernel(z, s_v, s_b, s_t, s_c, pooled_grad, d, d_v, length, B, C, shift,
                       BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """``d[first maximum of each window] += pooled_grad``: the backward of max-pooling ``z`` by ``2**shift``.

        ``pooled_grad`` is (2, B, length >> shift, C) contiguous; ``d`` is (B, length, C) contiguous per view,
        the views ``d_v`` apart, and receives the gradient with respect to ``z``.
        """
        rows, cols, mask, src, view, b, t = _windows(z, s_v, s_b, s_t, s_c, length, B, C, shift, BLOCK_R, BLOCK_C)
        best = tl.load(src, mask=mask, other=0.0).to(d.dtype.element_ty)
        argmax = tl.zeros([BLOCK_R, BLOCK_C], tl.int32)
        for w in range(1, 1 << shift):
            x = tl.load(src + w * s_t, mask=mask, other=0.0).to(d.dtype.element_ty)
            argmax = tl.where(x > best, w, argmax)
            best = tl.maximum(best, x)
        grad = tl.load(pooled_grad + rows.to(tl.int64)[:, None] * C + cols[None, :], mask=mask, other=0.0)
        dst = d + (view.to(tl.int64) * d_v + (b.to(tl.int64) * length + t) * C)[:, None] + cols[None, :] + argmax * C
        tl.store(dst, tl.load(dst, mask=mask, other=0.0) + grad, mask=mask)


# ---------------------------------------------------------------------------------------------------------------
# availability


def _interpreted():
    """Whether this module's kernels were built for Triton's interpreter (TRITON_INTERPRET=1 at import)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_forward_kernel, InterpretedFunction)


def unavailable_reason(device):
    """Why the Triton backend cannot run on ``device`` in this process, or "" when it can."""
    device = torch.device(device)
    if triton is None:
        return f"Triton cannot be imported ({_IMPORT_ERROR}); it ships for Linux: pip install triton"
    if device.type == "cpu":
        if _interpreted():
            return ""
        return ("the Triton kernels run on CPU tensors only in Triton's interpreter: set TRITON_INTERPRET=1 "
                "before importing arl_fast (slow; meant for testing)")
    if device.type != "cuda":
        return f"the Triton kernels run on CUDA tensors, got a {device.type} device"
    if _interpreted():
        return "TRITON_INTERPRET=1 is set, so the kernels were built for the interpreter (CPU tensors only)"
    if not torch.cuda.is_available():
        return "CUDA is not available in this process"
    capability = torch.cuda.get_device_capability(device)
    if torch.version.cuda is not None and capability < (7, 5):
        return f"Triton needs an NVIDIA GPU of compute capability 7.5 or newer, got {capability[0]}.{capability[1]}"
    return ""


def is_available(device):
    """Whether the Triton kernels can run on ``device`` in this process."""
    return not unavailable_reason(device)


def variant(device):
    """What the kernels are built for on ``device``: "interpreter" (Triton's, on CPU tensors), the GPU's target
    ("sm_90", or the AMD architecture's name); "" where they cannot run."""
    device = torch.device(device)
    if unavailable_reason(device):
        return ""
    if device.type == "cpu":
        return "interpreter"
    if torch.version.hip is not None:
        return torch.cuda.get_device_properties(device).gcnArchName
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def _require_runnable(device):
    reason = unavailable_reason(device)
    if reason:
        raise RuntimeError(f"backend 'triton' cannot run on {device}: {reason}")


# ---------------------------------------------------------------------------------------------------------------
# launch configuration


_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32,
              torch.float64: tl.float64} if triton is not None else {}


class _Config(NamedTuple):
    """Tile sizes of one kernel: rows, columns and channels per step, warps, widest backward panel."""

    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    widest_panel: int


def _capability(device):
    """The GPU's compute capability, or None on CPU (the interpreter)."""
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None


def _accumulator_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _dot_types(dtype, capability, matmul_precision):
    """(operand dtype, input_precision) of ``tl.dot`` for inputs of ``dtype``.

    float32 follows ``torch.get_float32_matmul_precision()``: "highest" is IEEE fp32, otherwise TF32.
    float16/bfloat16 go to the tensor cores as they are, accumulating in fp32.  Where Triton has no such
    tensor-core path (GPUs before Ampere: no TF32, no bf16, fp16 spills) and where bf16 ``tl.dot`` is wrong
    (the interpreter), every dtype is computed in fp32 (IEEE).
    """
    if dtype == torch.float64:
        return tl.float64, "ieee"
    if capability is None:
        return (tl.float16 if dtype == torch.float16 else tl.float32), "ieee"
    if capability < (8, 0):
        return tl.float32, "ieee"
    if dtype in (torch.float16, torch.bfloat16):
        return _TL_DTYPES[dtype], "ieee"
    return tl.float32, ("ieee" if matmul_precision == "highest" else "tf32")


def _next_power_of_2(x):
    return 1 << (x - 1).bit_length()


def _config(term, forward, B, dtype, capability):
    """Tiles for one term and direction on a GPU of ``capability`` (None: the interpreter).

    Chosen so that every kernel compiles without register spills for C = 320 (checked with ptxas for sm_75,
    sm_80 and sm_90); not tuned on hardware.
    """
    if capability is None:  # interpreter: small tiles, so that small tests cross tile and view boundaries
        return _Config(32, 32, 16, 1, 64)
    if dtype == torch.float64:
        return _Config(32, 32, 16, 8, 128)
    block_k = 64 if dtype in (torch.float16, torch.bfloat16) and capability >= (8, 0) else 32
    if term == _INSTANCE:  # 2B rows per timestamp, a few dozen at most in practice
        rows = min(max(_next_power_of_2(2 * B), 16), 32)
        return _Config(rows, rows, block_k, 4, 384)
    if capability >= (9, 0):
        return _Config(128, 64, block_k, 8, 384) if forward else _Config(64, 32, block_k, 8, 384)
    if capability >= (8, 0):
        return _Config(64, 64, block_k, 4, 384) if forward else _Config(32, 64, block_k, 8, 384)
    return _Config(64, 64, block_k, 8, 384) if forward else _Config(64, 32, block_k, 8, 384)


def _panels(C, widest):
    """Split the C output channels of the backward into panels of two power-of-two pieces.

    Returns (piece a, piece b or 0, number of panels): C = 320 gives one panel of 256 + 64.
    """
    padded = max(16, -(-C // 16) * 16)
    if padded > widest:
        a = 1 << (widest.bit_length() - 1)
        return a, 0, -(-C // a)
    a = 1 << (padded.bit_length() - 1)
    rest = padded - a
    return a, (_next_power_of_2(rest) if rest else 0), 1


def _term_levels(term, B, T, level_lo, level_hi, alpha, temporal_unit):
    """The levels in [level_lo, level_hi] where ``term`` contributes to the loss."""
    if term == _TEMPORAL:
        if alpha == 1:
            return range(0)
        last_with_two_steps = T.bit_length() - 2  # length T >> level >= 2
        return range(max(level_lo, temporal_unit), min(level_hi, last_with_two_steps) + 1)
    if alpha == 0 or B == 1:
        return range(0)
    return range(level_lo, level_hi + 1)


def _lse_offset(B, T, level_lo, level):
    """Offset of ``level``'s rows in the saved log-sum-exp: every level has 2 * B * (T >> level) rows."""
    return sum(2 * B * (T >> k) for k in range(level_lo, level))


def _programs(term, B, T, level, block_m):
    n, groups = (T >> level, B) if term == _TEMPORAL else (B, T >> level)
    return groups * -(-2 * n // block_m)


def _same_strides(z1, z2):
    """The kernels address both views with one set of strides; copy only when the views' layouts differ."""
    if z1.stride() != z2.stride():
        return z1.contiguous(), z2.contiguous()
    return z1, z2


def _view_stride(first, second):
    """Distance in elements from ``first`` to ``second``: the kernels address both views from ``first``."""
    distance = second.data_ptr() - first.data_ptr()
    assert distance % first.element_size() == 0, "both views must be aligned to their element size"
    return distance // first.element_size()


def _elementwise_blocks(capability):
    """(BLOCK_R, BLOCK_C) of the pooling and unpooling kernels: pooled rows by channels."""
    return (16, 16) if capability is None else (32, 64)


def _device_guard(device):
    """Launch on the tensors' GPU, whatever the current device is."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _check_levels(T, level_lo, level_hi):
    if not 0 <= level_lo <= level_hi < T.bit_length():
        raise ValueError(f"levels must satisfy 0 <= level_lo <= level_hi < {T.bit_length()}, "
                         f"got {level_lo} and {level_hi}")


# ---------------------------------------------------------------------------------------------------------------
# forward and backward launches


def _base(level):
    """The materialised level that ``level`` pools from on the fly: windows of at most 2**(_BASE_EVERY - 1)."""
    return level - level % _BASE_EVERY


def _pyramid(z1, z2, top):
    """The sources of levels 0..top: {base: (tensor of view 1, distance to view 2, strides)}.

    Level 0 is ``z1, z2`` themselves; every ``_BASE_EVERY``-th level is max-pooled from the previous one
    into a (2, B, T >> base, C) tensor, about 7% of the inputs' memory in all.
    """
    B, T, C = z1.shape
    sources = {0: (z1, _view_stride(z1, z2), *z1.stride())}
    block_r, block_c = _elementwise_blocks(_capability(z1.device))
    for base in range(_BASE_EVERY, _base(top) + 1, _BASE_EVERY):
        length = T >> (base - _BASE_EVERY)
        pooled = torch.empty(2, B, T >> base, C, dtype=z1.dtype, device=z1.device)
        grid = (triton.cdiv(2 * B * (T >> base), block_r), triton.cdiv(C, block_c))
        _pool_kernel[grid](*sources[base - _BASE_EVERY], pooled, length, B, C, _BASE_EVERY,
                           ACC=_TL_DTYPES[_accumulator_dtype(z1.dtype)], BLOCK_R=block_r, BLOCK_C=block_c)
        sources[base] = (pooled, *pooled.stride())  # views, series, steps, channels
    return sources


def _kernel_meta(term, forward, B, C, dtype, capability, matmul_precision):
    """(tile config, compile-time arguments) of the forward or backward kernel for one term."""
    config = _config(term, forward, B, dtype, capability)
    dot, input_precision = _dot_types(dtype, capability, matmul_precision)
    meta = dict(TEMPORAL=term == _TEMPORAL, DOT=dot, ACC=_TL_DTYPES[_accumulator_dtype(dtype)],
                PRECISION=input_precision, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
                BLOCK_K=config.block_k, num_warps=config.num_warps)
    if not forward:
        meta["PANEL_A"], meta["PANEL_B"], _ = _panels(C, config.widest_panel)
    return config, meta


def _forward(z1, z2, level_lo, level_hi, alpha, temporal_unit):
    """Losses of levels level_lo..level_hi and the per-row log-sum-exp of both terms (saved for backward).

    The log-sum-exp is (2 terms, 2, rows): each row's maximum, then its log-sum.
    """
    _require_runnable(z1.device)
    z1, z2 = _same_strides(z1, z2)
    B, T, C = z1.shape
    _check_levels(T, level_lo, level_hi)
    capability, precision = _capability(z1.device), torch.get_float32_matmul_precision()
    acc = _accumulator_dtype(z1.dtype)
    metas = {term: _kernel_meta(term, True, B, C, z1.dtype, capability, precision) for term in (_TEMPORAL, _INSTANCE)}
    lse = torch.zeros(2, 2, _lse_offset(B, T, level_lo, level_hi + 1), dtype=acc, device=z1.device)
    widest = max(_programs(term, B, T, level_lo, config.block_m) for term, (config, _) in metas.items())
    sums = torch.zeros(2, level_hi - level_lo + 1, widest, dtype=acc, device=z1.device)
    with _device_guard(z1.device):
        sources = _pyramid(z1, z2, level_hi)
        for term, (config, meta) in metas.items():
            levels = _term_levels(term, B, T, level_lo, level_hi, alpha, temporal_unit)
            # one launch per source, the source's own level apart: it needs no pooling
            for base, pool in sorted({(_base(level), level != _base(level)) for level in levels}):
                group = [level for level in levels if _base(level) == base and (level != base) == pool]
                grid = (sum(_programs(term, B, T, level, config.block_m) for level in group),)
                _forward_kernel[grid](
                    *sources[base], base, lse[term], lse.shape[2], sums[term], T, B, C, group[0],
                    _lse_offset(B, T, level_lo, group[0]), group[0] - level_lo, widest, POOL=pool, **meta,
                )
    per_term = sums.sum(-1)
    losses = (1 - alpha) * per_term[_TEMPORAL] + alpha * per_term[_INSTANCE]
    return losses.to(torch.promote_types(z1.dtype, torch.float32)), lse


def _backward(grad, z1, z2, lse, level_lo, level_hi, alpha, temporal_unit):
    """Gradients of ``sum(grad * losses)`` with respect to ``z1`` and ``z2``.

    Levels are visited from the coarsest.  A level's gradient goes to the gradient of its base (directly,
    or through a buffer and ``_unpool_kernel`` when it is pooled from the base); a finished base's gradient
    is unpooled into the base below it, down to ``d1, d2``.
    """
    _require_runnable(z1.device)
    dtype = z1.dtype
    z1, z2 = _same_strides(z1, z2)
    B, T, C = z1.shape
    capability, precision = _capability(z1.device), torch.get_float32_matmul_precision()
    acc = _accumulator_dtype(dtype)
    metas = {term: _kernel_meta(term, False, B, C, dtype, capability, precision) for term in (_TEMPORAL, _INSTANCE)}
    weights = {_TEMPORAL: (grad * (1 - alpha)).to(acc).contiguous(), _INSTANCE: (grad * alpha).to(acc).contiguous()}
    d1 = torch.zeros(B, T, C, dtype=acc, device=z1.device)
    d2 = torch.zeros_like(d1)
    off_base = [level for level in range(level_lo, level_hi + 1) if level != _base(level)]
    pooled = torch.empty(2 * B * (T >> off_base[0]) * C if off_base else 0, dtype=acc, device=z1.device)
    block_r, block_c = _elementwise_blocks(capability)
    with _device_guard(z1.device):
        sources = _pyramid(z1, z2, level_hi)
        grads = {0: (d1, _view_stride(d1, d2))}
        for base in range(_BASE_EVERY, _base(level_hi) + 1, _BASE_EVERY):
            grads[base] = (torch.zeros(2, B, T >> base, C, dtype=acc, device=z1.device), B * (T >> base) * C)
        for base in sorted(sources, reverse=True):
            for level in range(min(base + _BASE_EVERY - 1, level_hi), max(base, level_lo) - 1, -1):
                length = T >> level
                if level == base:
                    out = (grads[base][0], grads[base][1], length * C, C)
                else:
                    out = (pooled, B * length * C, length * C, C)
                written = False
                for term, (config, meta) in metas.items():
                    if level not in _term_levels(term, B, T, level_lo, level_hi, alpha, temporal_unit):
                        continue
                    n_panels = _panels(C, config.widest_panel)[2]
                    _backward_kernel[(_programs(term, B, T, level, config.block_m), n_panels)](
                        *sources[base], base, *out, lse[term], lse.shape[2], weights[term], T, B, C, level,
                        _lse_offset(B, T, level_lo, level), level - level_lo,
                        ACCUMULATE=written or level == base, POOL=level != base, **meta,
                    )
                    written = True
                if written and level != base:
                    grid = (triton.cdiv(2 * B * length, block_r), triton.cdiv(C, block_c))
                    _unpool_kernel[grid](*sources[base], pooled, *grads[base], T >> base, B, C, level - base,
                                         BLOCK_R=block_r, BLOCK_C=block_c)
            if base > 0:
                below = base - _BASE_EVERY
                grid = (triton.cdiv(2 * B * (T >> base), block_r), triton.cdiv(C, block_c))
                _unpool_kernel[grid](*sources[below], grads[base][0], *grads[below], T >> below, B, C,
                                     _BASE_EVERY, BLOCK_R=block_r, BLOCK_C=block_c)
    return d1.to(dtype), d2.to(dtype)


# ---------------------------------------------------------------------------------------------------------------
# operators: opaque to torch.compile, with shapes for tracing and a registered backward


@torch.library.custom_op("arl_fast::triton_level_losses", mutates_args=())
def _level_losses_op(z1: torch.Tensor, z2: torch.Tensor, level_lo: int, level_hi: int, alpha: float,
                     temporal_unit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(losses of levels level_lo..level_hi, per-row log-sum-exp kept for the backward)."""
    return _forward(z1, z2, level_lo, level_hi, alpha, temporal_unit)


@_level_losses_op.register_fake
def _(z1, z2, level_lo, level_hi, alpha, temporal_unit):
    B, T, _ = z1.shape
    losses = z1.new_empty(level_hi - level_lo + 1, dtype=torch.promote_types(z1.dtype, torch.float32))
    rows = sum(2 * B * (T // 2**k) for k in range(level_lo, level_hi + 1))
    return losses, z1.new_empty(2, 2, rows, dtype=_accumulator_dtype(z1.dtype))


@torch.library.custom_op("arl_fast::triton_level_losses_backward", mutates_args=())
def _level_losses_backward_op(grad: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, lse: torch.Tensor,
                              level_lo: int, level_hi: int, alpha: float,
                              temporal_unit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``sum(grad * losses)`` with respect to z1 and z2."""
    return _backward(grad, z1, z2, lse, level_lo, level_hi, alpha, temporal_unit)


@_level_losses_backward_op.register_fake
def _(grad, z1, z2, lse, level_lo, level_hi, alpha, temporal_unit):
    return torch.empty_like(z1, memory_format=torch.contiguous_format), torch.empty_like(
        z2, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    z1, z2, *ctx.arguments = inputs
    ctx.save_for_backward(z1, z2, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward_rule(ctx, grad_losses, _grad_lse):
    z1, z2, lse = ctx.saved_tensors
    d1, d2 = _level_losses_backward_op(grad_losses, z1, z2, lse, *ctx.arguments)
    return d1, d2, None, None, None, None


_level_losses_op.register_autograd(_backward_rule, setup_context=_setup_context)


# ---------------------------------------------------------------------------------------------------------------
# backend interface (inputs already validated by arl_fast.losses)


def level_loss(z1, z2, level, alpha, temporal_unit):
    """Loss of one level, computed from ``z1, z2`` (B, T, C) without the other levels."""
    return _level_losses_op(z1, z2, level, level, alpha, temporal_unit)[0][0]


def all_level_losses(z1, z2, alpha, temporal_unit):
    """1-D tensor of every level's loss, level 0 the finest, from one forward launch per term and base level."""
    return _level_losses_op(z1, z2, 0, int(z1.shape[1]).bit_length() - 1, alpha, temporal_unit)[0]
