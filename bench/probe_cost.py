"""Cost of measuring every level's loss (the adaptive loss's trend probe) against training one or all levels.

Usage: python bench/probe_cost.py [--batch 8] [--length 1000] [--channels 320] [--repeats 3]
Reference backend on CPU; prints the median seconds of each option and its share of the hierarchical loss.
"""

import argparse
import statistics
import time

import torch

from arl_fast import num_levels, resolution_loss, resolution_losses
from arl_fast.info import header


def timed(options, repeats):
    """Median seconds per option, the options interleaved so that load changes hit them alike."""
    times = {name: [] for name in options}
    for repeat in range(repeats + 1):
        for name, fn in options.items():
            start = time.perf_counter()
            fn()
            if repeat:  # the first round is a warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = (args.batch, args.length, args.channels)
    z1 = torch.randn(shape, requires_grad=True)
    z2 = torch.randn(shape, requires_grad=True)
    n = num_levels(args.length)

    def backward(loss):
        loss.backward()
        z1.grad = z2.grad = None

    def probe(fraction=1.0, skip_finest=False):
        b = max(1, round(args.batch * fraction))
        with torch.no_grad():
            d1, d2 = z1.detach()[:b], z2.detach()[:b]
            if skip_finest:
                d1, d2 = d1[:, : args.length // 2 * 2], d2[:, : args.length // 2 * 2]
                return [resolution_loss(d1, d2, k, backend="reference") for k in range(1, n)]
            return resolution_losses(d1, d2, backend="reference")

    options = {
        "hierarchical fwd+bwd": lambda: backward(resolution_losses(z1, z2, backend="reference").mean()),
        "level 0 fwd+bwd": lambda: backward(resolution_loss(z1, z2, 0, backend="reference")),
        "level 1 fwd+bwd": lambda: backward(resolution_loss(z1, z2, 1, backend="reference")),
        f"level {n // 2} fwd+bwd": lambda: backward(resolution_loss(z1, z2, n // 2, backend="reference")),
        "probe all levels, no grad": lambda: probe(),
        "probe all levels, half batch": lambda: probe(0.5),
        "probe all levels, quarter batch": lambda: probe(0.25),
        "probe levels >= 1, no grad": lambda: probe(skip_finest=True),
    }
    results = timed(options, args.repeats)
    base = results["hierarchical fwd+bwd"]
    print(header("cpu", "reference"))
    print(f"B={args.batch} T={args.length} C={args.channels} levels={n} threads={torch.get_num_threads()}")
    for name, seconds in results.items():
        print(f"{name:34s} {seconds:8.3f} s  {seconds / base:6.1%}")


if __name__ == "__main__":
    main()
