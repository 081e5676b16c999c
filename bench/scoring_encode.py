"""The anomaly score's encode of NAB: one shared pruned pass, two pruned passes and two plain passes, side by side.

TS2Vec's anomaly score encodes every point of every scored series twice from its 201-step causal window, the
window's last step masked and seen (2 x 173,074 windows on NAB's 36 scored series).  This times that whole
encode, per thread count, three ways in one process: ``encode_pair`` (pruned, computing once what the two passes
share), two pruned ``encode`` calls, and two plain ``encode`` calls (``prune=False``); it reports the largest
difference of the scores from the plain ones and the multiply-adds per window of each way.  The encoder is
TS2Vec's default, untrained (the time does not depend on the weights).  ``--series N`` times the first N scored
series only, for a short check; ``--plain-series N`` times the plain way on the first N of them only (it is
about 20 times slower than the others: NAB's whole plain encode takes over an hour per thread count on 2 cores),
and compares the ways by time per window.

    python bench/scoring_encode.py --data-dir ../shared/data/NAB --threads 1 2 \\
        --out bench/results/scoring_encode_nab.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from arl_fast import TS2Vec
from arl_fast.encoding import PrunedPlan
from arl_fast.tasks import anomaly

from arl_fast.info import cpu_model, header

WINDOW = anomaly.SLIDING_PADDING + 1


def scores_twice(model, values, prune):
    """The score from two separate encodes, masked last and seen."""
    x = np.asarray(values, np.float32).reshape(1, -1, 1)
    options = dict(causal=True, sliding_length=1, sliding_padding=anomaly.SLIDING_PADDING,
                   batch_size=anomaly.ENCODE_BATCH, prune=prune)
    masked = model.encode(x, mask="mask_last", **options)[0]
    seen = model.encode(x, mask="all_true", **options)[0]
    return np.abs(seen - masked).sum(axis=1)


WAYS = {
    "plain, twice": lambda model, values: scores_twice(model, values, prune=False),
    "pruned, twice": lambda model, values: scores_twice(model, values, prune=True),
    "pruned, shared": anomaly.representation_scores,
}


def timed_scores(way, model, series):
    start = time.perf_counter()
    scores = [WAYS[way](model, values) for values in series]
    return time.perf_counter() - start, scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/NAB")
    parser.add_argument("--dataset", default="NAB")
    parser.add_argument("--series", type=int, default=None, help="time the first N scored series only")
    parser.add_argument("--plain-series", type=int, default=None,
                        help="time the plain way on the first N of the series only (the ratios compare time per window)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.series is not None and args.series < 1:
        parser.error(f"--series must be >= 1, got {args.series}")
    if args.plain_series is not None and args.plain_series < 1:
        parser.error(f"--plain-series must be >= 1, got {args.plain_series}")
    if any(t < 1 for t in args.threads):
        parser.error(f"--threads must be >= 1, got {args.threads}")

    data = anomaly.load(args.dataset, args.data_dir)
    scored = data.scored[: args.series]
    series = [np.concatenate([s.train, s.test]) for s in scored]
    windows = sum(len(v) for v in series)
    plain_series = series[: args.plain_series]
    counts = {way: windows for way in WAYS}
    counts["plain, twice"] = sum(len(v) for v in plain_series)
    model = TS2Vec(1, seed=0, device="cpu")  # TS2Vec's default encoder: 64 hidden, 320 out, depth 10
    net = model._averaged
    plan = PrunedPlan(net, WINDOW, np.array([WINDOW - 1]))
    pruned_work, plain_work = plan.work(net)
    second_work = plan.pair_work(net, np.array([WINDOW - 1]))
    work = {"plain, twice": 2 * plain_work, "pruned, twice": 2 * pruned_work,
            "pruned, shared": pruned_work + second_work}

    rows, differences = [], {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        times, scores = {}, {}
        for way in WAYS:
            times[way], scores[way] = timed_scores(way, model, plain_series if way == "plain, twice" else series)
            print(f"{threads} thread(s), {way}: {times[way]:.1f} s", flush=True)
        per_window = {way: times[way] / counts[way] for way in WAYS}
        for way in WAYS:
            rows.append(f"| {threads} | {way} | {counts[way]} | {times[way]:.1f} | {2 / per_window[way]:.0f} | "
                        f"{work[way] / 1e6:.1f} M | {per_window['plain, twice'] / per_window[way]:.2f}x | "
                        f"{per_window['pruned, twice'] / per_window[way]:.2f}x |")
        for way in ("pruned, twice", "pruned, shared"):
            difference = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(scores[way], scores["plain, twice"]))
            differences[way] = max(differences.get(way, 0.0), difference)

    command = "python bench/scoring_encode.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"# The anomaly score's encode of {args.dataset}: shared pruned pass vs two pruned vs two plain",
        "",
        f"command: {command.rstrip()}",
        header("cpu", "auto"),
        f"CPU: {cpu_model()}; torch {torch.__version__}",
        f"series: {len(scored)} of {len(data.scored)} scored, {windows} points -> 2 x {windows} causal windows of "
        f"{WINDOW} steps (last step masked, and seen), {anomaly.ENCODE_BATCH} windows per pass; encoder: TS2Vec's "
        "default (hidden 64, output 320, depth 10, kernel 3)",
        "",
        "| threads | encode | points encoded | time (s) | windows/s | multiply-adds per window pair | vs plain (time "
        "per window) | vs pruned twice |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"largest difference of the scores from the plain ones (on the {len(plain_series)} series both ran), per "
        "series over its largest score: "
        + ", ".join(f"{way} {value:.3g}" for way, value in differences.items()),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
