"""The forecasting encode of a whole series, pruned against the plain batched windows, side by side.

TS2Vec's forecasting protocol encodes every timestamp of the series from its own 201-step causal window
(``causal=True, sliding_length=1, sliding_padding=200``).  This times that encode of ETTh1 (17,420 windows,
TS2Vec's default encoder on its 14 input channels) with the pruned computation and with the plain windows, in
one process, one after the other, reports the largest difference of the representations, and, as the machine's
yardstick, the encoder's GFLOP/s on one plain forward pass of a batch of windows.

    python bench/sliding_encode.py [--csv ../shared/data/ETT/ETTh1.csv] [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from arl_fast import TS2Vec
from arl_fast.data import load_forecast_csv
from arl_fast.encoding import PrunedPlan
from arl_fast.info import header

WINDOW, PADDING = 201, 200


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default="../shared/data/ETT/ETTh1.csv")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_forecast_csv(args.csv)
    series = data.data
    model = TS2Vec(series.shape[2], seed=0, device="cpu")  # TS2Vec's default encoder: 64 hidden, 320 out, depth 10
    net = model._averaged

    kwargs = dict(causal=True, sliding_length=1, sliding_padding=PADDING)
    pruned, pruned_time = timed(lambda: model.encode(series, **kwargs))
    plain, plain_time = timed(lambda: model.encode(series, prune=False, **kwargs))
    difference = np.abs(pruned - plain)
    relative = difference.max() / np.abs(plain).max()
    elementwise = (difference / np.maximum(np.abs(plain), 1e-3 * np.abs(plain).max())).max()

    plan = PrunedPlan(net, WINDOW, np.array([WINDOW - 1]))
    pruned_work, plain_work = plan.work(net)
    batch = torch.from_numpy(np.lib.stride_tricks.sliding_window_view(series[0], WINDOW, axis=0)[:326]
                             .transpose(0, 2, 1).copy())
    with torch.no_grad():
        net(batch)  # warm up
        _, forward_time = timed(lambda: net(batch))
    gflops = 2 * plain_work * len(batch) / forward_time / 1e9

    lines = [
        f"# Sliding encode of {Path(args.csv).name}: pruned vs plain windows",
        "",
        f"command: python bench/sliding_encode.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip(),
        header("cpu"),
        f"series: {series.shape[1]} steps x {series.shape[2]} channels -> {series.shape[1]} windows of {WINDOW} steps "
        f"(causal, sliding_length 1, sliding_padding {PADDING}); encoder: TS2Vec's default (hidden 64, output 320, "
        "depth 10, kernel 3)",
        "",
        "| encode | time (s) | windows/s | multiply-adds per window |",
        "| --- | ---: | ---: | ---: |",
        f"| plain windows | {plain_time:.1f} | {series.shape[1] / plain_time:.0f} | {plain_work / 1e6:.1f} M |",
        f"| pruned | {pruned_time:.1f} | {series.shape[1] / pruned_time:.0f} | {pruned_work / 1e6:.1f} M |",
        "",
        f"speed-up: {plain_time / pruned_time:.2f}x (work ratio {plain_work / pruned_work:.1f}x)",
        f"largest difference: {difference.max():.3g} absolute, {relative:.3g} of the largest |value|, "
        f"{elementwise:.3g} relative per element (floor 1e-3 of the largest |value|)",
        f"yardstick: one plain forward pass of {len(batch)} windows x {WINDOW} steps: {forward_time * 1e3:.0f} ms, "
        f"{gflops:.1f} GFLOP/s",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
