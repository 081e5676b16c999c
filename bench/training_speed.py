"""Training speed of TS2Vec end to end: several (backend, loss, build) configurations side by side in one run.

    python bench/training_speed.py --iters 60 --other-build ../before \\
        --runs reference:hierarchical:other,cpp:hierarchical:other,cpp:hierarchical,cpp:adaptive \\
        --out bench/results/training_speed_etth1_epyc.md

Each configuration trains TS2Vec with its defaults (batch 8, max_train_length 3000, AdamW at 1e-3, seed 0) on
the training slice of a forecasting CSV (ETTh1 multivariate by default: 14 channels, two 4,320-step chunks, so
every step is a batch of 2 with crops up to 3,000 steps) for ``--iters`` iterations, in a fresh process, and
reports the seconds and the ratio to the first configuration.  A configuration is ``backend:loss``, followed by
``:bf16`` to train under bfloat16 autocast (``precision="bf16"``), ``:mkl`` to multiply the cpp kernels' bf16
tiles with MKL's gemm instead of their AVX512-BF16 micro-kernel (``ARL_FAST_BF16_GEMM=mkl``), and ``:other`` to
train with the
``--other-build`` checkout (its extension built in place: the step as that checkout trains it).  ``--rounds N``
interleaves the configurations N times and keeps medians.  The adaptive loss probes every level on every 4th
step: ``--iters`` a multiple of 4 counts its probes in proportion.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch



def worker(backend, loss, precision, iters, seed, threads, series_path):
    """Train in this (fresh) process and print the seconds; only ``TS2Vec(...).fit`` is used, so any build runs."""
    torch.set_num_threads(threads)
    import arl_fast
    from arl_fast import TS2Vec

    series = np.load(series_path)
    model = TS2Vec(series.shape[2], loss=loss, backend=backend, batch_size=8, max_train_length=3000, seed=seed,
                   device="cpu", precision=precision)
    start = time.perf_counter()
    model.fit(series, n_iters=iters, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "loss": model.loss_log[-1]["loss"] if model.loss_log else None,
                      "package": str(Path(arl_fast.__file__).parent)}))


def parse_runs(text, other_build):
    """(backend, loss, precision, other, mkl) per comma-separated ``backend:loss[:bf16][:mkl][:other]``."""
    runs = []
    for item in text.split(","):
        backend, _, rest = item.partition(":")
        loss, *flags = rest.split(":")
        if not backend or not loss or any(flag not in ("bf16", "mkl", "other") for flag in flags):
            raise SystemExit(f"--runs: {item!r} is not backend:loss[:bf16][:mkl][:other]")
        if "other" in flags and other_build is None:
            raise SystemExit(f"--runs: {item!r} needs --other-build")
        runs.append((backend, loss, "bf16" if "bf16" in flags else "fp32", "other" in flags, "mkl" in flags))
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ETT/ETTh1.csv",
                        help="forecasting CSV (default: ../shared/data/ETT/ETTh1.csv), multivariate")
    parser.add_argument("--runs", default="reference:hierarchical,cpp:hierarchical,cpp:adaptive",
                        help="comma-separated backend:loss[:bf16][:mkl][:other], the first is the yardstick of the "
                             "ratios")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--other-build", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend, loss, precision, iters, seed, threads, path = args.worker
        return worker(backend, loss, precision, int(iters), int(seed), int(threads), path)

    from arl_fast.data import load_forecast_csv
    from arl_fast.info import cpu_model, header  # here: the workers may import another checkout's arl_fast

    torch.set_num_threads(args.threads)  # what the workers run with, so the header says it
    runs = parse_runs(args.runs, args.other_build)
    data = load_forecast_csv(args.csv)
    series = data.data[:, data.train_slice].astype(np.float32)
    command = "python bench/training_speed.py " + " ".join(sys.argv[1:])
    lines = [f"# Training speed: {command}", "",
             header("cpu", "auto"), "",
             f"CPU: {cpu_model()}, {args.threads} thread(s) per run, torch {torch.__version__}; {args.csv.name} "
             f"training slice {series.shape}, TS2Vec's defaults, {args.iters} iterations, seed {args.seed}, each "
             f"run in a fresh process" + (f", median of {args.rounds} interleaved rounds" if args.rounds > 1 else "")
             + ".", ""]
    print("\n".join(lines), flush=True)
    times = {run: [] for run in runs}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.npy"
        np.save(path, series)
        for _ in range(args.rounds):
            for run in runs:
                backend, loss, precision, other, mkl = run
                env = dict(os.environ)
                if other:
                    env["PYTHONPATH"] = str(args.other_build.resolve())
                if mkl:
                    env["ARL_FAST_BF16_GEMM"] = "mkl"
                out = subprocess.run([sys.executable, __file__, "--worker", backend, loss, precision,
                                      str(args.iters), str(args.seed), str(args.threads), str(path)],
                                     capture_output=True, text=True, env=env, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"{run} failed:\n{out.stderr[-3000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                times[run].append(result["seconds"])
                tiles = " (bf16 tiles by MKL)" if mkl else ""
                print(f"{backend} {loss} {precision}{tiles} ({result['package']}): {result['seconds']:.1f} s",
                      flush=True)
    first = statistics.median(times[runs[0]])
    table = ["| backend | loss | precision | build | training s | s / iteration | speed-up over the first row | "
             "every round (s) |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        backend, loss, precision, other, mkl = run
        seconds = statistics.median(times[run])
        build = (f"other ({args.other_build})" if other else "this") + (", bf16 tiles by MKL" if mkl else "")
        table.append(f"| {backend} | {loss} | {precision} | {build} | {seconds:.1f} | {seconds / args.iters:.3f} | "
                     f"{first / seconds:.2f}x | {', '.join(f'{t:.1f}' for t in times[run])} |")
    lines += table
    print("\n".join(table))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
