"""The cpp kernels' bf16 tile products: the AVX512-BF16 micro-kernel against MKL's bf16 gemm, side by side.

    python bench/bf16_gemm.py --out bench/results/bf16_gemm_epyc.md

At the shapes the loss multiplies (256-row tiles, C = 320 representation channels): the similarity tile
S = Z_I Z_J^T (k = C) and the two gradient products dZ += A Z (k = 256 rows), each through
``torch.ops.arl_fast.cpp_bf16_gemm`` with ``"avx512_bf16"`` and with ``"mkl"``; the yardsticks are torch's own
float32 and bf16 matmuls at the same shape (MKL sgemm and oneDNN), all in this process, one thread.  GFLOP/s count
2 m n k; each figure is the best of ``--repeats`` timings of ``--calls`` calls (the op copies C once per call, as
a small share of the time).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

from arl_fast.backends import cpp
from arl_fast.info import cpu_model, header

# (name, M, N, K, transpose_a, transpose_b): row-major op(a) (M x K) @ op(b) (K x N), the kernel's three calls
SHAPES = [
    ("similarity S = Z_I Z_J^T", 256, 256, 320, False, True),
    ("dZ_I += A Z_J", 256, 320, 256, False, False),
    ("dZ_J += A^T Z_I", 256, 320, 256, True, False),
]


def rate(fn, flops, calls, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return flops / best / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not cpp.is_available("cpu"):
        raise SystemExit(f"the cpp kernels are not available: {cpp.unavailable_reason('cpu')}")
    if cpp.bf16_products() != "avx512_bf16":
        raise SystemExit("this CPU or build does not run the AVX512-BF16 micro-kernel (arl-fast info says why)")
    op = torch.ops.arl_fast.cpp_bf16_gemm
    lines = [f"# bf16 tile products: python bench/{Path(__file__).name} {' '.join(sys.argv[1:])}", "",
             header("cpu", "cpp"), "",
             f"CPU: {cpu_model()}, 1 thread; GFLOP/s (2 m n k per product), best of {args.repeats} x {args.calls} "
             "calls.", "",
             "| product | m x n x k | micro-kernel | MKL bf16 gemm | micro-kernel / MKL | torch fp32 mm | "
             "torch bf16 mm (oneDNN) |", "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    g = torch.Generator().manual_seed(0)
    for name, M, N, K, ta, tb in SHAPES:
        a = torch.randn((K, M) if ta else (M, K), generator=g).bfloat16()
        b = torch.randn((N, K) if tb else (K, N), generator=g).bfloat16()
        c = torch.zeros(M, N)
        flops = 2 * M * N * K
        own = rate(lambda: op(a, b, c, ta, tb, 1.0, 1.0, "avx512_bf16"), flops, args.calls, args.repeats)
        mkl = rate(lambda: op(a, b, c, ta, tb, 1.0, 1.0, "mkl"), flops, args.calls, args.repeats)
        a2, b2 = (a.t() if ta else a), (b.t() if tb else b)
        fa, fb = a2.float().contiguous(), b2.float().contiguous()
        ba, bb = a2.contiguous(), b2.contiguous()
        fp32 = rate(lambda: torch.mm(fa, fb), flops, args.calls, args.repeats)
        bf16 = rate(lambda: torch.mm(ba, bb), flops, args.calls, args.repeats)
        row = (f"| {name} | {M} x {N} x {K} | {own:.0f} | {mkl:.0f} | {own / mkl:.2f}x | {fp32:.0f} | {bf16:.0f} |")
        lines.append(row)
        print(row, flush=True)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
