"""The CPU loss table: reference vs cpp, forward + backward, at TS2Vec's sizes (B=8, C=320), side by side in one run.

    python bench/cpu_loss.py                       # T in 500, 1000, 3000, 8000, 17984; writes bench/results/
    python bench/cpu_loss.py --lengths 1000,3000   # a subset
    python bench/cpu_loss.py --lengths 1000,3000 --reference-up-to 0 --isa avx512,native   # cpp variants only
    python bench/cpu_loss.py --reference-up-to 0 --other-build ../old   # and another checkout's build, case by case

Each case runs in a fresh subprocess, which reports the call's peak extra memory and its time.  Memory: the
process's peak RSS during the first full-size call minus its RSS before it (inputs, libraries, a small warm-up),
with glibc told to map and unmap every block over 128 KiB, so that temporaries and gradients count, not only
what autograd saves.  Time: the best of a few more calls (3 up to T = 3000, 2 above), after glibc is set as its
own dynamic thresholds settle in a training loop (blocks up to 32 MiB reused from the heap, larger ones mapped
per call), so that a call is timed as it runs at every step of training, not with every page faulted in afresh.
Linux only (/proc, mallopt).  The reference is skipped where its B x 2T x 2T matrices would not fit in this
machine's memory.

The yardstick is the machine's own limit for the work: the three products the reference needs per level and
term (``S = Z Z^T`` and the two gradient products), one ``torch.bmm`` each on random, denormal-free data, summed
over the levels' shapes (row slabs of the largest ones, scaled).  ``time / yardstick`` <= 1 means the fused
kernel computes the loss faster than a BLAS could multiply its matrices.  The machine's peak is measured in
every case's own process, right after its calls: a large square ``torch.mm`` in the case's dtype (best of 3);
``of_matmul`` is the case's GFLOP/s over that, so that both sides of the ratio see the same machine at the same
time (a shared virtual machine's speed drifts by 10-20% within minutes).  With ``--rounds N`` every case is run
N times, the cases of one T interleaved round by round, and the table holds the medians (time, GFLOP/s,
of_matmul; memory from the first round).  The header names the CPU model and the ISA variant in use.
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import torch

B, C = 8, 320
LENGTHS = [500, 1000, 3000, 8000, 17984]
SLAB_ROWS = 1024  # yardstick products of more rows than this are timed on a slab of rows and scaled
MATMUL_N = 4096  # side of the square matmul that measures the machine's peak


def cpu_model():
    """The CPU's model name, for the scripts that import it from here (``arl_fast.info.cpu_model``; imported when
    called, so that a ``--worker`` run with an older checkout's package on PYTHONPATH does not need it)."""
    from arl_fast.info import cpu_model as model

    return model()


def term_shapes(T, what):
    """(groups, rows) of every InfoNCE term the loss computes: temporal (B, 2 T_l) and instance (T_l, 2B)."""
    shapes, level = [], 0
    while T >> level >= 1:
        Tl = T >> level
        if Tl > 1:
            shapes.append((B, 2 * Tl))
        shapes.append((Tl, 2 * B))
        if what == "level 0" or Tl == 1:
            return shapes
        level += 1
    return shapes


def product_flops(T, what):
    """Flops of one product per term: G * R * R * C multiply-adds."""
    return sum(2 * G * R * R * C for G, R in term_shapes(T, what))


def yardstick_seconds(T, what):
    """Time of the reference's three products per term, on denormal-free random data."""
    total = 0.0
    for G, R in term_shapes(T, what):
        rows = min(R, SLAB_ROWS)
        z = torch.randn(G, R, C)
        slab = z[:, :rows]
        d = torch.randn(G, rows, R)
        s_out, dz_out, dzt_out = torch.empty(G, rows, R), torch.empty(G, rows, C), torch.empty(G, R, C)
        torch.bmm(slab, z.transpose(1, 2), out=s_out)  # warm-up
        start = time.perf_counter()
        torch.bmm(slab, z.transpose(1, 2), out=s_out)  # rows of S
        torch.bmm(d, z, out=dz_out)                    # dS Z
        torch.bmm(d.transpose(1, 2), slab, out=dzt_out)  # dS^T Z
        total += (time.perf_counter() - start) * R / rows
    return total


def square_matmul_gflops(dtype, n=MATMUL_N, repeats=3):
    """GFLOP/s of the best of a few n x n x n torch.mm in `dtype` on random data (the machine's matmul peak)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def _mallopt(param, value):
    ctypes.CDLL(None).mallopt(ctypes.c_int(param), ctypes.c_int(value))


def worker(backend, what, T, dtype_name):
    """Run in a fresh process: the peak RSS growth of one forward + backward, then the best time of a few."""
    from arl_fast import hierarchical_contrastive_loss, resolution_loss

    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(T)
    z1, z2 = (torch.randn(B, T, C, generator=g).to(dtype).requires_grad_() for _ in range(2))

    def step(a, b):
        loss = (hierarchical_contrastive_loss(a, b, backend=backend) if what == "all levels"
                else resolution_loss(a, b, 0, backend=backend))
        loss.backward()
        a.grad = b.grad = None

    step(z1[:, :64].detach().requires_grad_(), z2[:, :64].detach().requires_grad_())  # libraries, thread pools
    _mallopt(M_MMAP_THRESHOLD, 1 << 17)  # every large block mapped and unmapped: freed memory leaves the RSS
    _mallopt(M_TRIM_THRESHOLD, 1 << 17)
    ctypes.CDLL(None).malloc_trim(0)  # and what the warm-up freed is returned before the baseline
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    baseline = _status_kib("VmRSS")
    step(z1, z2)
    peak = _status_kib("VmHWM") - baseline
    _mallopt(M_MMAP_THRESHOLD, 32 << 20)  # where glibc's dynamic thresholds end up in a loop of such calls
    _mallopt(M_TRIM_THRESHOLD, 64 << 20)
    times = []  # the first call grows the heap to the call's working set; the best is kept
    for _ in range(3 if T <= 3000 else 2):
        start = time.perf_counter()
        step(z1, z2)
        times.append(time.perf_counter() - start)
    from arl_fast.backends import cpp

    isa = cpp.isa() if hasattr(cpp, "isa") else "single build"  # an older checkout's one -march build
    native = dtype == torch.float32 or cpp.fast_bf16()  # the peak in bf16 only where the CPU multiplies bf16
    print(json.dumps({"time_s": min(times), "peak_extra_MiB": peak / 1024, "isa": isa,
                      "matmul_gflops": square_matmul_gflops(dtype) if native else None}))


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(backend, what, T, dtype, other_build=None):
    """One case in a fresh process; backend "cpp@VARIANT" runs the cpp kernels with ARL_FAST_ISA=VARIANT, and
    `other_build` (a checkout with its extension built in place) is imported instead of this one."""
    env = dict(os.environ)
    if other_build:
        env["PYTHONPATH"] = str(Path(other_build).resolve())
    backend, _, variant = backend.partition("@")
    if variant:
        env["ARL_FAST_ISA"] = variant
    out = subprocess.run([sys.executable, __file__, "--worker", backend, what, str(T), dtype],
                         capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if variant and result["isa"] != variant:
        sys.exit(f"ARL_FAST_ISA={variant} loaded the {result['isa']!r} kernels: that variant is not built or not "
                 "supported by this CPU")
    return result


def reference_fits(T):
    """The reference holds about four B x 2T x 2T float32 matrices at its peak: keep it under 60% of RAM."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 4 * B * (2 * T) ** 2 * 4 < 0.6 * ram


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--bf16-up-to", type=int, default=3000, help="longest T also measured with bf16 inputs")
    parser.add_argument("--reference-up-to", type=int, default=None,
                        help="longest T the reference runs at (default: as far as it fits in memory)")
    parser.add_argument("--isa", default="",
                        help="comma-separated ISA variants of the cpp kernels to time side by side (ARL_FAST_ISA in "
                             "each case's process; e.g. avx512,native); default: the dispatched one only")
    parser.add_argument("--other-build", type=Path, default=None,
                        help="a checkout with its extension built in place: its cpp kernels are timed beside this "
                             "one's, case by case (backend 'cpp (other)')")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every case this many times, interleaved, and report medians (a noisy machine)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cpu_loss.md")
    parser.add_argument("--worker", nargs=4, metavar=("BACKEND", "WHAT", "T", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend, what, T, dtype = args.worker
        return worker(backend, what, int(T), dtype)

    from arl_fast import available_backends
    from arl_fast.info import header as arl_fast_header

    if "cpp" not in available_backends():
        sys.exit("the cpp backend is not built: pip install --no-build-isolation -e .")
    lengths = [int(t) for t in args.lengths.split(",")]
    variants = [f"cpp@{v}" for v in args.isa.split(",") if v]
    command = f"python bench/cpu_loss.py --lengths {args.lengths} --bf16-up-to {args.bf16_up_to}"
    command += "" if args.reference_up_to is None else f" --reference-up-to {args.reference_up_to}"
    command += f" --isa {args.isa}" if args.isa else ""
    command += f" --other-build {args.other_build}" if args.other_build else ""
    command += f" --rounds {args.rounds}" if args.rounds > 1 else ""
    header = f"{arl_fast_header('cpu')}; B={B}, C={C}, forward + backward; command: {command}"
    columns = ["what", "T", "backend", "dtype", "time_s", "peak_extra_MiB", "GFLOP/s", "of_matmul", "yardstick_s",
               "time/yardstick", "speedup_vs_reference", "memory_vs_reference", "bf16_speedup_vs_fp32"]
    rows, peaks = [], {}
    print(header, flush=True)
    for what in ["all levels", "level 0"]:
        for T in lengths:
            yard = yardstick_seconds(T, what)
            done = 2 * product_flops(T, what)  # symmetric tiles: two products' worth (the reference: three)
            with_reference = reference_fits(T) and (args.reference_up_to is None or T <= args.reference_up_to)
            cases = [("reference", "float32")] if with_reference else []
            cases += [("cpp", "float32")] + ([("cpp", "bfloat16")] if T <= args.bf16_up_to else [])
            cases += [(variant, "float32") for variant in variants]
            cases += [("cpp (other)", "float32")] if args.other_build else []
            runs = {case: [] for case in cases}
            for _ in range(args.rounds):
                for backend, dtype in cases:
                    other = backend == "cpp (other)"
                    result = measure("cpp" if other else backend, what, T, dtype,
                                     args.other_build if other else None)
                    flops = (1.5 if backend == "reference" else 1) * done
                    result["GFLOP/s"] = flops / result["time_s"] / 1e9
                    if result["matmul_gflops"]:
                        result["of_matmul"] = result["GFLOP/s"] / result["matmul_gflops"]
                        peaks.setdefault(dtype, []).append(result["matmul_gflops"])
                    runs[backend, dtype].append(result)
            found = {case: {key: median([r[key] for r in results]) for key in ("time_s", "GFLOP/s", "of_matmul")
                            if key in results[0]}
                     | {"peak_extra_MiB": results[0]["peak_extra_MiB"], "isa": results[0]["isa"]}
                     for case, results in runs.items()}
            for backend, dtype in cases:
                result = found[backend, dtype]
                label = f"cpp ({args.other_build}, {result['isa']})" if backend == "cpp (other)" else backend
                row = {"what": what, "T": T, "backend": label, "dtype": dtype, "time_s": result["time_s"],
                       "peak_extra_MiB": result["peak_extra_MiB"], "GFLOP/s": result["GFLOP/s"],
                       "of_matmul": result.get("of_matmul", ""), "yardstick_s": yard,
                       "time/yardstick": result["time_s"] / yard}
                ref = found.get(("reference", "float32"))
                if backend.startswith("cpp") and ref:
                    row["speedup_vs_reference"] = ref["time_s"] / result["time_s"]
                    row["memory_vs_reference"] = result["peak_extra_MiB"] / max(ref["peak_extra_MiB"], 1e-9)
                if dtype == "bfloat16":
                    row["bf16_speedup_vs_fp32"] = found["cpp", "float32"]["time_s"] / result["time_s"]
                rows.append(row)
                print("  ".join(_fmt(row.get(k, "")) for k in columns), flush=True)
    peak = {d: median(v) for d, v in peaks.items()}
    header += (f"\n\nSquare {MATMUL_N}x{MATMUL_N} torch.mm in each case's process after its calls, median over the "
               f"cases: {_peaks(peak)} (range {_ranges(peaks)}); of_matmul = the case's GFLOP/s / its own process's "
               f"square matmul in the case's dtype" + (f"; medians of {args.rounds} rounds" if args.rounds > 1 else ""))
    table = "\n".join([f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]
                      + [f"| {' | '.join(_fmt(row.get(k, '')) for k in columns)} |" for row in rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"{header}\n\n{table}\n")
    print(f"\n{header}\n\n{table}\nwritten to {args.out}")


def _ranges(peaks):
    return ", ".join(f"{d} {min(v):.1f}-{max(v):.1f}" for d, v in peaks.items())


def _peaks(peak):
    return ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in peak.items())


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
