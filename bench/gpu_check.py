"""Check the Triton backend against the reference on this GPU, then time both: one script, a few minutes.

Usage: python bench/gpu_check.py [--train-epoch] [--data-dir DIR] [--lengths 500 1000 ...]

1. Correctness: values and gradients (of a random mix of the levels) of the Triton kernels against the
   reference computed in float64, on random inputs of several shapes, levels, dtypes and matmul precisions.
2. Benchmark: forward + backward of one level (level 0) and of all levels, B = 8, C = 320, for each length,
   at matmul precision "high" (TF32 allowed) and "highest" (IEEE fp32): time, peak memory
   (``torch.cuda.max_memory_allocated``, inputs included) and achieved TFLOP/s, with the reference where it fits.
3. ``--train-epoch``: one TS2Vec training epoch on MotorImagery (length 3000) with each backend.

Everything printed is also written to ``bench/results/gpu_check_<gpu name>.txt``.  Needs a CUDA GPU and
nothing beyond the package's own dependencies.
"""

import argparse
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from arl_fast import num_levels, resolution_loss, resolution_losses
from arl_fast.backends import reference
from arl_fast.backends import triton as triton_loss
from arl_fast.info import header

B, C = 8, 320
LENGTHS = [500, 1000, 3000, 8000, 17984]
RESULTS = Path(__file__).resolve().parent / "results"
# Datasheet dense peaks, TFLOP/s, of float32 matrix work: "high" = TF32 tensor cores, "highest" = fp32 FMA.
PEAK_TFLOPS = {"H100 PCIe": (378, 51), "H100": (495, 67), "H200": (495, 67), "A100": (156, 19.5), "L4": (60, 30),
               "T4": (8.1, 8.1)}
_LINES = []


def say(line=""):
    print(line, flush=True)
    _LINES.append(line)


def loss_flops(B, T, C, levels, alpha=0.5, temporal_unit=0):
    """Matrix-multiply FLOPs of forward + backward: per group of 2n rows, S = Z Z^T and dZ = (G + G^T) Z.

    Counted as three products of 2 * (2n)^2 * C, what both backends compute (the reference: S, then the
    two operands' gradients; the kernels: S, S again in backward, then dZ).
    """
    total = 0
    for level in levels:
        n = T >> level
        if alpha != 1 and level >= temporal_unit and n > 1:
            total += 3 * 2 * B * (2 * n) ** 2 * C
        if alpha != 0 and B > 1:
            total += 3 * 2 * n * (2 * B) ** 2 * C
    return total


def random_inputs(B, T, C, dtype=torch.float32, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(B, T, C, device="cuda", generator=g).to(dtype).requires_grad_() for _ in range(2)]


def loss_fn(backend, level):
    """Forward of one level (an int) or of every level (None) on ``backend``, as a scalar to backpropagate."""
    if level is None:
        return lambda z1, z2: resolution_losses(z1, z2, backend=backend).mean()
    return lambda z1, z2: resolution_loss(z1, z2, level, backend=backend)


# ---------------------------------------------------------------------------------------------------------------
# 1. correctness

TOLERANCES = {  # (dtype, precision) -> (value rtol, gradient tolerance relative to the largest entry)
    (torch.float32, "highest"): (1e-5, 1e-4),
    (torch.float32, "high"): (3e-3, 3e-2),  # TF32 rounds the operands to 10 mantissa bits
    (torch.float16, "highest"): (1e-5, 2e-3),
    (torch.bfloat16, "highest"): (1e-5, 1.6e-2),
}
CHECKS = [  # (B, T, C, dtype, matmul precision, level or None for all)
    (8, 500, 320, torch.float32, "highest", None),
    (8, 500, 320, torch.float32, "high", None),
    (3, 1000, 64, torch.float32, "highest", 3),
    (2, 4097, 17, torch.float32, "highest", None),
    (1, 300, 320, torch.float32, "highest", None),
    (33, 70, 40, torch.float32, "highest", None),
    (5, 777, 40, torch.float16, "highest", None),
    (5, 777, 40, torch.bfloat16, "highest", None),
    (8, 3000, 320, torch.float32, "highest", 0),
]


def max_relative_error(ours, expected):
    return ((ours.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def check_case(B, T, C, dtype, precision, level, seed):
    torch.set_float32_matmul_precision(precision)
    z1, z2 = random_inputs(B, T, C, dtype, seed)
    r1, r2 = (z.detach().double().requires_grad_() for z in (z1, z2))
    if level is None:
        ours, expected = resolution_losses(z1, z2, backend="triton"), reference.all_level_losses(r1, r2, 0.5, 0)
    else:
        ours, expected = resolution_loss(z1, z2, level, backend="triton"), reference.level_loss(r1, r2, level, 0.5, 0)
    mix = torch.rand(expected.shape, device="cuda", dtype=torch.float64) + 0.5
    grads = torch.autograd.grad((ours * mix).sum(), (z1, z2))
    expected_grads = torch.autograd.grad((expected * mix).sum(), (r1, r2))
    value_error = max_relative_error(ours, expected)
    grad_error = max(max_relative_error(g, e) for g, e in zip(grads, expected_grads))
    value_tol, grad_tol = TOLERANCES[(dtype, "highest" if dtype != torch.float32 else precision)]
    ok = value_error <= value_tol and grad_error <= grad_tol
    what = "all levels" if level is None else f"level {level}"
    say(f"  {'ok  ' if ok else 'FAIL'} B={B:<3} T={T:<5} C={C:<4} {str(dtype)[6:]:<8} {precision:<8} {what:<10} "
        f"value error {value_error:.1e} (tol {value_tol:.0e}), gradient error {grad_error:.1e} (tol {grad_tol:.0e})")
    return ok


def check_correctness():
    say("1. Triton against the float64 reference (relative to the largest entry)")
    results = [check_case(*case, seed=i) for i, case in enumerate(CHECKS)]
    torch.set_float32_matmul_precision("highest")
    return all(results)


# ---------------------------------------------------------------------------------------------------------------
# 2. benchmark


def measure(fn, z1, z2, repeats):
    """(median seconds of forward + backward, peak bytes allocated during it, inputs included)."""
    def step():
        fn(z1, z2).backward()
        z1.grad = z2.grad = None

    step()  # compile and warm up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times), torch.cuda.max_memory_allocated()


def benchmark_row(T, level, precision, repeats):
    torch.set_float32_matmul_precision(precision)
    levels = range(num_levels(T)) if level is None else [level]
    flops = loss_flops(B, T, C, levels)
    row = {}
    for backend in ("triton", "reference"):
        z1, z2 = random_inputs(B, T, C)
        try:
            seconds, peak = measure(loss_fn(backend, level), z1, z2, repeats)
            row[backend] = (seconds, peak, flops / seconds / 1e12)
        except torch.cuda.OutOfMemoryError:
            row[backend] = None
        del z1, z2
        torch.cuda.empty_cache()
    return row


def peak_tflops(precision):
    """The GPU's datasheet peak for float32 matrix work at ``precision``, or None if unknown."""
    name = torch.cuda.get_device_name()
    peaks = next((p for key, p in PEAK_TFLOPS.items() if key in name), None)
    return None if peaks is None else peaks[0 if precision == "high" else 1]


def print_benchmark(lengths, repeats):
    say(f"2. forward + backward, B={B}, C={C}, alpha=0.5: median of {repeats}; peak memory includes the inputs;")
    say("   TFLOP/s counts the three matrix products per level (S, then dZ as two products); % peak is the")
    say(f"   Triton kernels' share of the datasheet peak (TF32 for 'high', fp32 for 'highest'): {PEAK_TFLOPS}")
    header = (f"  {'T':>6} {'levels':<10} {'precision':<9} {'triton ms':>10} {'GiB':>7} {'TFLOP/s':>8} "
              f"{'reference ms':>13} {'GiB':>7} {'TFLOP/s':>8} {'speed-up':>9} {'memory':>8} {'% peak':>7}")
    say(header)
    for T in lengths:
        for level in (0, None):
            for precision in ("high", "highest"):
                row = benchmark_row(T, level, precision, repeats)
                cells = []
                for backend in ("triton", "reference"):
                    if row[backend] is None:
                        cells.append(f"{'out of memory':>{(10 if backend == 'triton' else 13) + 17}}")
                    else:
                        seconds, peak, tflops = row[backend]
                        width = 10 if backend == "triton" else 13
                        cells.append(f"{seconds * 1e3:>{width}.2f} {peak / 2**30:>7.3f} {tflops:>8.1f}")
                if row["triton"] and row["reference"]:
                    speedup = row["reference"][0] / row["triton"][0]
                    memory = row["reference"][1] / row["triton"][1]
                    ratios = f"{speedup:>8.2f}x {memory:>7.1f}x"
                else:
                    ratios = f"{'-':>9} {'-':>8}"
                peak = peak_tflops(precision)
                share = f"{100 * row['triton'][2] / peak:>6.1f}%" if peak and row["triton"] else f"{'-':>7}"
                what = "level 0" if level == 0 else "all"
                say(f"  {T:>6} {what:<10} {precision:<9} {cells[0]} {cells[1]} {ratios} {share}")
    torch.set_float32_matmul_precision("highest")


# ---------------------------------------------------------------------------------------------------------------
# 3. one training epoch


def train_epoch(data_dir):
    say("3. one TS2Vec training epoch on MotorImagery (defaults: batch 8, output 320, crops up to 3000)")
    try:
        from arl_fast.data import load_uea
        from arl_fast.ts2vec import TS2Vec
    except ImportError as error:
        say(f"  skipped: {error}")
        return
    roots = [data_dir] if data_dir else [Path("../shared/data/UEA"), Path("shared/data/UEA")]
    root = next((r for r in roots if (Path(r) / "MotorImagery").is_dir()), None)
    if root is None:
        say(f"  skipped: MotorImagery not found in {', '.join(map(str, roots))}")
        return
    data = load_uea("MotorImagery", data_dir=root, download=False)
    say(f"  {len(data.X_train)} series of length {data.X_train.shape[1]}, {data.X_train.shape[2]} channels")
    for precision in ("high", "highest"):
        torch.set_float32_matmul_precision(precision)
        for backend in ("reference", "triton"):
            model = TS2Vec(data.X_train.shape[2], device="cuda", backend=backend, seed=0)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                log = model.fit(data.X_train, n_epochs=1, progress=False)
            except torch.cuda.OutOfMemoryError:
                say(f"  {precision:<8} {backend:<10} out of memory")
                continue
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            peak = torch.cuda.max_memory_allocated() / 2**30
            last = log[-1] if log else "-"
            say(f"  {precision:<8} {backend:<10} {seconds:7.2f} s, peak {peak:.2f} GiB, last record {last}")
    torch.set_float32_matmul_precision("highest")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-epoch", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding MotorImagery/ (UEA .ts files)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check needs a CUDA GPU")
    if not triton_loss.is_available("cuda"):
        sys.exit(f"the Triton backend cannot run here: {triton_loss.unavailable_reason('cuda')}")
    name = torch.cuda.get_device_name()
    started = time.perf_counter()
    import triton

    say(header("cuda"))
    say(f"{name}, compute capability {'.'.join(map(str, torch.cuda.get_device_capability()))}, "
        f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB; torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, triton {triton.__version__}, Python {platform.python_version()}")
    try:
        passed = check_correctness()
        print_benchmark(args.lengths, args.repeats)
        if args.train_epoch:
            train_epoch(args.data_dir)
        say(f"correctness: {'all passed' if passed else 'FAILURES above'}; "
            f"total {time.perf_counter() - started:.0f} s")
    finally:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"gpu_check_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}.txt"
        path.write_text("\n".join(_LINES) + "\n")
        print(f"written to {path}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
